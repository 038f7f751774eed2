"""The FastAPI application: the page, ``POST /api/restore`` and ``GET /api/health``.

A restore reads and writes files with ``image_io`` and runs ``restore_tensor`` with the
defaults of ``airnet restore``, so the PNG it returns has the pixels that ``airnet restore
FILE --ext png`` writes. Every error is JSON ``{"error": ...}``.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import threading
import time
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from PIL import Image, UnidentifiedImageError
from starlette.exceptions import HTTPException

from airnet_restore.errors import AirNetError
from airnet_restore.image_io import output_dtype, read_image, write_image
from airnet_restore.inference.blend import Blend, resolve_blend
from airnet_restore.inference.pipeline import model_device, restore_pixels_blended
from airnet_restore.inspection import Inspection, model_inspector
from airnet_restore.models.airnet import AirNet
from airnet_restore.web import Limits
from airnet_restore.web.jobs import JobCancelled, JobQueue
from airnet_restore.web.upload import UploadError, receive_image

STATIC = Path(__file__).parent / "static"
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob:; object-src 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@dataclass
class Result:
    """A finished restore: the PNG bytes and what was detected (JSON line) if anything."""

    png: bytes
    detected: str | None


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The JSON error every failure answers with."""
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def check_pixel_count(path: Path, max_pixels: int) -> None:
    """A 413 ``UploadError`` when the file's header (nothing decoded) declares more than ``max_pixels``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                width, height = im.size
    except Image.DecompressionBombError:
        assert Image.MAX_IMAGE_PIXELS is not None  # Pillow checks for bombs only while it has a limit
        raise UploadError(413, f"over Pillow's decompression-bomb limit of {2 * Image.MAX_IMAGE_PIXELS:,} pixels") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return  # read_image gives the reason
    if width * height > max_pixels:
        raise UploadError(413, f"{width}x{height} = {width * height:,} pixels is over the limit of {max_pixels:,} (--max-pixels)")


def detection_header(found: Inspection | None, blend: Blend) -> str | None:
    """What the weights' prototypes found and the blend applied, as one line of JSON (None: nothing found)."""
    if found is None:
        return None
    fields = {"type": found.type, "confidence": round(found.confidence, 3), "sigma": found.sigma,
              "haze_density": found.haze_density, "strength": round(blend.strength, 3), "anchor": round(blend.anchor, 3),
              "denoised_first": blend.first or None}
    return json.dumps({k: v for k, v in fields.items() if v is not None})


def restore_file(model: AirNet, src: Path, dst: Path, max_pixels: int) -> tuple[int, str | None]:
    """Restore ``src`` into the PNG ``dst`` as ``airnet restore`` does (strength and anchor auto); returns the pixel
    count and the detection header.

    A file that is not a readable image is a 400 ``UploadError``, one over ``max_pixels`` a 413.
    """
    check_pixel_count(src, max_pixels)
    try:
        data = read_image(src, max_pixels=max_pixels)
    except AirNetError as e:
        raise UploadError(400, str(e).removeprefix(f"{src}: ")) from None
    # The path `airnet restore` takes for a file, so the pixels are the CLI's exactly.
    blend, found = resolve_blend(model, data.pixels)
    pixels, blend = restore_pixels_blended(model, data.pixels, output_dtype(data.dtype, dst.suffix), blend=blend)
    write_image(dst, data, pixels)
    return data.pixels.shape[0] * data.pixels.shape[1], detection_header(found, blend)


def create_app(model: AirNet, model_name: str, limits: Limits = Limits()) -> FastAPI:
    """The web app over ``model`` (loaded once, shared by every request) within ``limits``."""
    root = Path(tempfile.mkdtemp(prefix="airnet-serve-"))  # mode 0700: private to this user
    jobs = JobQueue(model, limits.workers, limits.queue)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        jobs.close()
        shutil.rmtree(root, ignore_errors=True)

    app = FastAPI(title="airnet-restore", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.jobs, app.state.upload_root = jobs, root

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        return error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def internal_error(_request: Request, exc: Exception) -> JSONResponse:
        return error(500, f"internal error ({type(exc).__name__}); see the server's log")

    @app.get("/api/health")
    def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "model": model_name,
            "device": str(model_device(model)),
            "jobs": jobs.pending,
            "capacity": jobs.capacity,
            "workers": limits.workers,
            "max_bytes": limits.max_bytes,
            "max_pixels": limits.max_pixels,
            "timeout_s": limits.timeout,
            "seconds_per_megapixel": jobs.seconds_per_megapixel,
            "detects_corruption": model_inspector(model) is not None,
        }

    @app.post("/api/restore")
    async def restore_upload(request: Request) -> Response:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limits.max_bytes:
            return error(413, f"upload of {int(declared):,} bytes is over the limit of {limits.max_bytes:,} (--max-upload-mb)")
        if not jobs.try_admit():
            wait = jobs.retry_after()
            return error(503, f"busy: {jobs.capacity} jobs running or waiting; retry in {wait} s", {"Retry-After": str(wait)})
        deadline = time.monotonic() + limits.timeout
        folder = Path(tempfile.mkdtemp(dir=root))
        try:
            upload = await asyncio.wait_for(
                receive_image(request.stream(), request.headers.get("content-type"), folder, limits.max_bytes),
                limits.timeout,
            )
        except BaseException as e:
            jobs.release()
            shutil.rmtree(folder, ignore_errors=True)
            if isinstance(e, asyncio.TimeoutError):
                return error(408, f"the upload did not finish within {limits.timeout:g} s (--timeout)")
            if isinstance(e, UploadError):
                return error(e.status, str(e))
            raise

        def job() -> Result:
            start = time.perf_counter()
            pixels, detected = restore_file(model, upload.path, folder / "restored.png", limits.max_pixels)
            jobs.record(pixels, time.perf_counter() - start)
            return Result((folder / "restored.png").read_bytes(), detected)

        cancel = threading.Event()
        future = jobs.submit(job, cancel)
        future.add_done_callback(lambda _: shutil.rmtree(folder, ignore_errors=True))
        try:
            result = await _wait(request, future, cancel, deadline)
        except UploadError as e:
            return error(e.status, str(e))
        except JobCancelled:
            return error(499, "the client went away")
        except AirNetError as e:
            return error(500, str(e))
        except MemoryError:
            return error(500, "out of memory while restoring; lower --max-pixels or the number of --workers")
        headers = {"Content-Disposition": f'attachment; filename="{upload.download_name}"', "Cache-Control": "no-store"}
        if result.detected:
            headers["X-Airnet-Detected"] = result.detected
        return Response(result.png, media_type="image/png", headers=headers)

    @app.get("/")
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers=PAGE_HEADERS)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


async def _wait(request: Request, future: Any, cancel: threading.Event, deadline: float) -> Result:
    """The job's result; cancels it when the client disconnects or the deadline passes (504)."""
    job = asyncio.wrap_future(future)
    job.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved even when abandoned
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        done, _ = await asyncio.wait({job, gone}, timeout=max(0.0, deadline - time.monotonic()),
                                     return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    if job in done:
        return job.result()
    cancel.set()
    if gone in done:
        raise JobCancelled
    raise UploadError(504, "restoring took longer than the server's limit (--timeout); try a smaller image")


async def _disconnected(request: Request) -> None:
    """Returns when the client closes the connection (the body has been read already)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass

