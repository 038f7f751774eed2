"""The FastAPI application: the page, ``POST /api/restore`` and ``GET /api/health``.

A restore reads and writes files with ``image_io`` and runs ``restore_tensor`` with the
defaults of ``airnet restore``, so the PNG it returns has the pixels that ``airnet restore
FILE --ext png`` writes. Every error is JSON ``{"error": ...}``.

A request from another site or for another Host name is refused first (``hosts``). An upload
is received whole, within ``max_bytes`` and ``read_timeout``, and its declared image size
checked, before it takes a job slot: a slow or oversized sender never holds one.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from airnet_restore.errors import AirNetError, ImageTooLarge
from airnet_restore.image_io import check_size, declared_size, output_dtype, read_image, write_image
from airnet_restore.inference.pipeline import Model, restore_image
from airnet_restore.inspection import Inspection
from airnet_restore.loading import as_descriptor
from airnet_restore.postfilter import Blend, Choice, check_choice
from airnet_restore.web import Access, Limits
from airnet_restore.web.hosts import refusal
from airnet_restore.web.jobs import JobCancelled, JobQueue
from airnet_restore.web.upload import Upload, UploadError, receive_image

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


def client_error(e: AirNetError, path: Path) -> UploadError:
    """The client's error for a file the reader refused: 413 when over the size limit, else 400; the
    server's path left out."""
    return UploadError(413 if isinstance(e, ImageTooLarge) else 400, str(e).removeprefix(f"{path}: "))


def check_declared_size(path: Path, max_pixels: int) -> None:
    """An ``UploadError`` (413 over ``max_pixels``, 400 unreadable) from the file's header alone, nothing decoded."""
    try:
        check_size(path, *declared_size(path), max_pixels)
    except AirNetError as e:
        raise client_error(e, path) from None


def detection_header(found: Inspection | None, blend: Blend) -> str | None:
    """What the weights' prototypes found and the blend applied, as one line of JSON (None: nothing found)."""
    if found is None:
        return None
    fields = {"type": found.type, "confidence": round(found.confidence, 3), "sigma": found.sigma,
              "haze_density": found.haze_density, "strength": round(blend.strength, 3), "anchor": round(blend.anchor, 3),
              "denoised_first": blend.first or None, "streaks": round(blend.rain, 3) or None,
              "dehazed": round(blend.haze, 3) or None}
    return json.dumps({k: v for k, v in fields.items() if v is not None})


def restore_file(model: Model, src: Path, dst: Path, max_pixels: int, postfilter: Choice = "auto") -> tuple[int, str | None]:
    """Restore ``src`` into the PNG ``dst`` as ``airnet restore`` does (``postfilter``, strength and anchor auto);
    returns the pixel count and the detection header.

    A file that is not a readable image is a 400 ``UploadError``, one over ``max_pixels`` a 413.
    """
    try:
        data = read_image(src, max_pixels=max_pixels)
    except AirNetError as e:
        raise client_error(e, src) from None
    # The path `airnet restore` takes for a file, so the pixels are the CLI's exactly.
    done = restore_image(model, data.pixels, output_dtype(data.dtype, dst.suffix), postfilter=postfilter)
    write_image(dst, data, done.pixels)
    found, blend = done.found, done.blend
    return data.pixels.shape[0] * data.pixels.shape[1], detection_header(found, blend)


class RefuseForeign:
    """ASGI middleware: a request for a Host name the server does not answer to, or from another site's
    page, gets a JSON 400/403 before any route sees it (``hosts.refusal`` says which)."""

    def __init__(self, app: ASGIApp, access: Access) -> None:
        self.app, self.access = app, access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers: dict[str, str] = {}
            duplicated = None
            for raw_name, raw_value in scope["headers"]:
                name = raw_name.decode("latin-1").lower()
                if name in headers and name in ("host", "origin", "sec-fetch-site"):
                    duplicated = name
                headers[name] = raw_value.decode("latin-1")
            refused = (400, f"more than one {duplicated} header") if duplicated else refusal(
                self.access, scope["method"], scope.get("scheme", "http"), headers, scope.get("server"))
            if refused:
                await error(*refused)(scope, receive, send)
                return
        await self.app(scope, receive, send)


class Stopping:
    """Requests waiting on an upload or a restore; ``stop`` (the server shutting down) ends them with 503.

    Each waiter is a future of the running loop, so ``stop`` must be called on that loop.
    """

    def __init__(self) -> None:
        self.stopped = False
        self._waiters: set[asyncio.Future[None]] = set()

    @contextmanager
    def watch(self) -> Iterator[asyncio.Future[None]]:
        """A future that is done once the server stops (at once if it has)."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.stopped:
            waiter.set_result(None)
        self._waiters.add(waiter)
        try:
            yield waiter
        finally:
            self._waiters.discard(waiter)

    def stop(self) -> None:
        """Wake every waiting request, now and later."""
        self.stopped = True
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)


SHUTTING_DOWN = "the server is shutting down; retry when it is back"


def create_app(model: Model, model_name: str, limits: Limits = Limits(), access: Access | None = None) -> FastAPI:
    """The web app over ``model`` (loaded once, shared by every request) within ``limits``, answering only
    as ``access`` allows (default: loopback names and this server's own page).

    ``app.state.stop()``, called on the server's loop when it begins to shut down, answers every request
    in flight 503 and cancels the restores, so none is cut off with a traceback.
    """
    root = Path(tempfile.mkdtemp(prefix="airnet-serve-"))  # mode 0700: private to this user
    model = as_descriptor(model)
    jobs = JobQueue(model.network, limits.workers, limits.queue)
    stopping = Stopping()
    receiving = 0  # uploads being received now (at most limits.uploads)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        jobs.close()
        shutil.rmtree(root, ignore_errors=True)

    def stop() -> None:
        stopping.stop()
        jobs.cancel_all()

    app = FastAPI(title="airnet-restore", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.jobs, app.state.upload_root, app.state.stop = jobs, root, stop
    app.add_middleware(RefuseForeign, access=access or Access())

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
            "device": str(model.device),
            "jobs": jobs.pending,
            "capacity": jobs.capacity,
            "receiving": receiving,
            "workers": limits.workers,
            "max_bytes": limits.max_bytes,
            "max_pixels": limits.max_pixels,
            "timeout_s": limits.timeout,
            "read_timeout_s": limits.read_timeout,
            "seconds_per_megapixel": jobs.seconds_per_megapixel,
            "detects_corruption": model.detects,
        }

    def busy() -> JSONResponse:
        wait = jobs.retry_after()
        return error(503, f"busy: {jobs.capacity} jobs running or waiting; retry in {wait} s", {"Retry-After": str(wait)})

    async def receive(request: Request, folder: Path) -> Upload:
        """The upload, received whole within the byte limit and ``read_timeout``, its declared size checked."""
        nonlocal receiving
        receiving += 1
        try:
            reading = asyncio.ensure_future(
                receive_image(request.stream(), request.headers.get("content-type"), folder, limits.max_bytes))
            with stopping.watch() as stopped:
                waiting: set[asyncio.Future[Any]] = {reading, stopped}
                done, _ = await asyncio.wait(waiting, timeout=limits.read_timeout,
                                             return_when=asyncio.FIRST_COMPLETED)
            if reading not in done:
                reading.cancel()
                with suppress(asyncio.CancelledError):
                    await reading
                if stopped in done:
                    raise UploadError(503, SHUTTING_DOWN)
                raise UploadError(408, f"the upload did not arrive within {limits.read_timeout:g} s (--read-timeout)")
            upload = reading.result()
        except ClientDisconnect:
            raise UploadError(499, "the client went away during the upload") from None
        finally:
            receiving -= 1
        await asyncio.to_thread(check_declared_size, upload.path, limits.max_pixels)
        return upload

    @app.post("/api/restore")
    async def restore_upload(request: Request) -> Response:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limits.max_bytes:
            return error(413, f"upload of {int(declared):,} bytes is over the limit of {limits.max_bytes:,} (--max-upload-mb)")
        if stopping.stopped:
            return error(503, SHUTTING_DOWN)
        postfilter = request.query_params.get("postfilter", "auto")
        try:
            check_choice(postfilter)
        except AirNetError as e:
            return error(400, str(e))
        if jobs.full():  # no use receiving an upload that cannot be admitted
            return busy()
        if receiving >= limits.uploads:
            return error(503, f"busy: {limits.uploads} uploads arriving (--uploads); retry in a few seconds", {"Retry-After": "5"})
        folder = Path(tempfile.mkdtemp(dir=root))
        try:
            upload = await receive(request, folder)
        except UploadError as e:
            shutil.rmtree(folder, ignore_errors=True)
            return error(e.status, str(e))
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        if not jobs.try_admit():
            shutil.rmtree(folder, ignore_errors=True)
            return busy()
        deadline = time.monotonic() + limits.timeout

        def job() -> Result:
            start = time.perf_counter()
            pixels, detected = restore_file(model, upload.path, folder / "restored.png", limits.max_pixels,
                                            postfilter)  # type: ignore[arg-type]  # checked above
            jobs.record(pixels, time.perf_counter() - start)
            return Result((folder / "restored.png").read_bytes(), detected)

        cancel = threading.Event()
        future = jobs.submit(job, cancel)
        future.add_done_callback(lambda _: shutil.rmtree(folder, ignore_errors=True))
        try:
            result = await _wait(request, future, cancel, deadline, stopping)
        except UploadError as e:
            return error(e.status, str(e))
        except JobCancelled:
            return error(503, SHUTTING_DOWN) if stopping.stopped else error(499, "the client went away")
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


async def _wait(request: Request, future: Any, cancel: threading.Event, deadline: float, stopping: Stopping) -> Result:
    """The job's result; cancels it when the client disconnects (``JobCancelled``), the deadline passes (504)
    or the server stops (503)."""
    job = asyncio.wrap_future(future)
    job.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved even when abandoned
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        with stopping.watch() as stopped:
            done, _ = await asyncio.wait({job, gone, stopped}, timeout=max(0.0, deadline - time.monotonic()),
                                         return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    if job in done:
        return job.result()
    cancel.set()
    if stopping.stopped:
        raise UploadError(503, SHUTTING_DOWN)
    if gone in done:
        raise JobCancelled
    raise UploadError(504, "restoring took longer than the server's limit (--timeout); try a smaller image")


async def _disconnected(request: Request) -> None:
    """Returns when the client closes the connection (the body has been read already)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
