"""`airnet serve`: the HTTP API on a real loopback server with a tiny model, limits and abuse cases."""

from __future__ import annotations

import http.client
import io
import json
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
import zlib
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import pytest
import uvicorn
from PIL import Image

from airnet_restore.cli import main
from airnet_restore.errors import AirNetError
from airnet_restore.inference.blend import Blend
from airnet_restore.inspection import Inspection
from airnet_restore.variants import load_model
from airnet_restore.web import Limits
from airnet_restore.web.app import create_app, detection_header
from airnet_restore.web.server import exposure_warning, listen
from airnet_restore.web.upload import download_name
from airnet_restore.weights import save_weights
from tests.conftest import make_tiny

LIMITS = Limits(max_bytes=2**20, max_pixels=100_000, workers=1, queue=1, timeout=60)


@contextmanager
def running(app):
    """Serve ``app`` on a free loopback port in a thread; yields the port."""
    sock = listen("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(30)


def multipart(parts: list[tuple[str, str | None, bytes]]) -> tuple[bytes, str]:
    """A multipart/form-data body of (field, filename or None, data) parts, and its Content-Type."""
    boundary = uuid.uuid4().hex
    body = b""
    for field, filename, data in parts:
        name = f'; filename="{filename}"' if filename is not None else ""
        body += f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"{name}\r\n\r\n'.encode() + data + b"\r\n"
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def request(port: int, method: str, path: str, body: bytes | None = None, content_type: str | None = None,
            chunked: bool = False) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of one request; a server that stops reading early is fine."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Content-Type": content_type} if content_type else {}
    payload = iter([body[i : i + 65536] for i in range(0, len(body), 65536)]) if chunked and body else body
    try:
        conn.request(method, path, body=payload, headers=headers, encode_chunked=chunked)
    except (BrokenPipeError, ConnectionResetError):
        pass
    response = conn.getresponse()
    result = response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    conn.close()
    return result


def post_image(port: int, data: bytes, filename: str = "photo.png", field: str = "image") -> tuple[int, dict[str, str], bytes]:
    return request(port, "POST", "/api/restore", *multipart([(field, filename, data)]))


def png_bytes(pixels: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", pixels)
    assert ok
    return buf.tobytes()


def photo(h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((h, w, 3)) * 255).astype(np.uint8)


def crafted_png(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` with next to no data: a decompression bomb's shape."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    save_weights(make_tiny().eval(), path)
    return path


@pytest.fixture(scope="module")
def server(weights):
    app = create_app(load_model(str(weights), device="cpu"), "tiny", LIMITS)
    with running(app) as port:
        yield port, app


def error_of(status_headers_body) -> str:
    status, headers, body = status_headers_body
    assert headers["content-type"] == "application/json", (status, body[:200])
    return json.loads(body)["error"]


def test_health_names_the_model_and_the_limits(server):
    port, _ = server
    status, _, body = request(port, "GET", "/api/health")
    health = json.loads(body)
    assert status == 200 and health["model"] == "tiny" and health["device"] == "cpu"
    assert health["max_bytes"] == LIMITS.max_bytes and health["max_pixels"] == LIMITS.max_pixels


def test_results_have_the_pixels_of_airnet_restore_at_full_depth(server, weights, tmp_path):
    port, _ = server
    rng = np.random.default_rng(1)
    files = {
        "rgb8.png": photo(),
        "grey16.png": (rng.random((40, 52)) * 65535).astype(np.uint16),
        "rgba16.png": (rng.random((33, 47, 4)) * 65535).astype(np.uint16),
        "photo.jpg": photo(50, 70, seed=2),
    }
    for name, pixels in files.items():
        cv2.imwrite(str(tmp_path / name), pixels)
    assert main(["restore", *(str(tmp_path / n) for n in files), "-o", str(tmp_path / "cli"), "--ext", "png",
                 "--weights", str(weights), "--device", "cpu", "-q"]) == 0
    for name in files:
        status, headers, body = post_image(port, (tmp_path / name).read_bytes(), filename=name)
        assert status == 200 and headers["content-type"] == "image/png", body[:200]
        assert headers["content-disposition"] == f'attachment; filename="{Path(name).stem}_restored.png"'
        served = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_UNCHANGED)
        expected = cv2.imread(str(tmp_path / "cli" / f"{Path(name).stem}.png"), cv2.IMREAD_UNCHANGED)
        assert served.dtype == expected.dtype and served.shape == expected.shape
        np.testing.assert_array_equal(served, expected)
    assert cv2.imdecode(np.frombuffer(post_image(port, png_bytes(files["grey16.png"]))[2], np.uint8), -1).dtype == np.uint16


@pytest.mark.parametrize("width, height", [(100_000, 100_000), (20_000, 20_000), (400, 300)])
def test_decompression_bombs_are_refused_with_413_before_decoding(server, width, height):
    port, _ = server
    start = time.perf_counter()
    result = post_image(port, crafted_png(width, height))
    expected = "decompression-bomb limit" if width * height > 2 * Image.MAX_IMAGE_PIXELS else f"{width * height:,} pixels is over"
    assert result[0] == 413 and expected in error_of(result)
    assert time.perf_counter() - start < 5


def test_a_real_bomb_of_zeros_is_refused_at_its_pixel_count(server):
    port, _ = server
    buf = io.BytesIO()
    Image.new("L", (4000, 4000)).save(buf, format="PNG")  # 16 MP of zeros in a few kB
    assert len(buf.getvalue()) < 50_000
    result = post_image(port, buf.getvalue())
    assert result[0] == 413 and "16,000,000 pixels is over the limit of 100,000" in error_of(result)


@pytest.mark.parametrize("data, reason", [
    (png_bytes(photo())[:300], "truncated"),
    (b"not an image at all", "not an image"),
    (b"", "empty file"),
])
def test_bad_files_are_400_with_a_reason(server, data, reason):
    result = post_image(server[0], data)
    assert result[0] == 400 and reason in error_of(result)


@pytest.mark.parametrize("chunked", [False, True])
def test_a_huge_upload_is_413_and_the_server_goes_on(server, chunked):
    port, _ = server
    result = request(port, "POST", "/api/restore", *multipart([("image", "big.png", b"\0" * 8 * 2**20)]), chunked=chunked)
    assert result[0] == 413 and "over the limit of 1,048,576" in error_of(result)
    assert post_image(port, png_bytes(photo()))[0] == 200


@pytest.mark.parametrize("body_type, reason", [
    ("wrong field", "no file in the multipart field 'image'"),
    ("two images", "more than one 'image' part"),
    ("not multipart", "multipart/form-data in the field 'image'"),
    ("broken multipart", "malformed multipart body"),
])
def test_malformed_requests_are_400(server, body_type, reason):
    good = png_bytes(photo())
    if body_type == "wrong field":
        args = multipart([("file", "photo.png", good), ("note", None, b"hello")])
    elif body_type == "two images":
        args = multipart([("image", "a.png", good), ("image", "b.png", good)])
    elif body_type == "not multipart":
        args = (good, "image/png")
    else:
        args = (b"--x\r\nContent-Disposition: form-data; name=image\r\n\r\n" + good, "multipart/form-data; boundary=y")
    result = request(server[0], "POST", "/api/restore", *args)
    assert result[0] == 400 and reason in error_of(result)


@pytest.mark.parametrize("filename, offered", [
    ("../../escape.png", "escape_restored.png"),
    ("/etc/passwd", "passwd_restored.png"),
    ("..\\..\\windows\\evil.png", "evil_restored.png"),
    ('a"quote;.png', "a_quote_restored.png"),
    ("....", "image_restored.png"),
])
def test_path_like_filenames_only_name_the_download(server, tmp_path, monkeypatch, filename, offered):
    port, app = server
    monkeypatch.chdir(tmp_path)
    status, headers, _ = post_image(port, png_bytes(photo()), filename=filename)
    assert status == 200 and headers["content-disposition"] == f'attachment; filename="{offered}"'
    assert list(tmp_path.iterdir()) == [] and not Path("/escape.png").exists()
    assert list(app.state.upload_root.iterdir()) == [] and app.state.upload_root.stat().st_mode & 0o777 == 0o700


def test_download_names_keep_safe_characters_only():
    assert download_name("Holiday 2024 (1).JPG") == "Holiday_2024_1_restored.png"
    assert download_name(None) == "image_restored.png"
    assert download_name("x" * 300 + ".png") == "x" * 100 + "_restored.png"


def test_errors_are_json_everywhere(server):
    port, _ = server
    assert error_of(request(port, "GET", "/nope")) == "Not Found"
    assert request(port, "GET", "/api/restore")[0] == 405


def test_the_page_is_local_and_locked_down(server):
    port, _ = server
    status, headers, body = request(port, "GET", "/")
    assert status == 200 and b'<input id="file" type="file"' in body
    assert "default-src 'self'" in headers["content-security-policy"]
    static = Path(__file__).parents[1] / "src/airnet_restore/web/static"
    for name in ("app.js", "style.css", "index.html"):
        assert request(port, "GET", f"/static/{name}" if name != "index.html" else "/")[0] == 200
        assert "http://" not in (static / name).read_text() and "https://" not in (static / name).read_text()


class Gate:
    """Holds every call of the model it is put on until opened (or ``seconds`` pass); counts calls and finished ones."""

    def __init__(self, model, seconds: float = 20) -> None:
        self.event, self.seconds, self.calls, self.finished = threading.Event(), seconds, 0, 0
        model.register_forward_pre_hook(self.hold)
        model.register_forward_hook(self.count)

    def hold(self, module, args) -> None:
        self.calls += 1
        self.event.wait(self.seconds)

    def count(self, module, args, output) -> None:
        self.finished += 1


def wait_until(condition, seconds: float = 10) -> bool:
    end = time.monotonic() + seconds
    while not condition() and time.monotonic() < end:
        time.sleep(0.02)
    return condition()


def test_a_full_queue_answers_503_with_retry_after_and_loses_nothing(monkeypatch):
    model = make_tiny().eval()
    gate = Gate(model)
    found = Inspection("noise", 0.9, 25.0, None, {"noise": 0.97, "rain": 0.01})
    monkeypatch.setattr("airnet_restore.web.app.resolve_blend", lambda model, pixels: (Blend(0.97, 0.5), found))
    app = create_app(model, "gated", LIMITS)
    results: list = []
    with running(app) as port:
        threads = [threading.Thread(target=lambda: results.append(post_image(port, png_bytes(photo())))) for _ in range(2)]
        for admitted, thread in enumerate(threads, start=1):  # one restoring, one waiting
            thread.start()
            assert wait_until(lambda n=admitted: app.state.jobs.pending == n)
        busy = post_image(port, png_bytes(photo()))
        assert busy[0] == 503 and int(busy[1]["retry-after"]) >= 1 and "busy" in error_of(busy)
        gate.event.set()
        for t in threads:
            t.join(30)
    assert [r[0] for r in results] == [200, 200]
    assert json.loads(results[0][1]["x-airnet-detected"]) == {"type": "noise", "confidence": 0.9, "sigma": 25.0, "strength": 0.97,
                                                             "anchor": 0.5}


def test_a_timeout_is_504_and_frees_the_worker():
    model = make_tiny().eval()
    gate = Gate(model, seconds=1.5)
    app = create_app(model, "slow", Limits(max_bytes=2**20, max_pixels=100_000, timeout=0.5))
    with running(app) as port:
        start = time.perf_counter()
        result = post_image(port, png_bytes(photo()))
        assert result[0] == 504 and "--timeout" in error_of(result) and time.perf_counter() - start < 1.4
        assert wait_until(lambda: app.state.jobs.pending == 0)  # cancelled at the next model call
        assert wait_until(lambda: list(app.state.upload_root.iterdir()) == [])
    assert gate.calls == 1 and gate.finished == 0


def test_a_stalled_upload_is_408_and_frees_its_slot():
    app = create_app(make_tiny().eval(), "tiny", Limits(max_bytes=2**20, timeout=0.5))
    with running(app) as port, socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST /api/restore HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                     b"Content-Length: 1000\r\n\r\n--b\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 408")
        assert app.state.jobs.pending == 0 and list(app.state.upload_root.iterdir()) == []


def test_a_client_that_leaves_cancels_its_job():
    model = make_tiny().eval()
    gate = Gate(model)
    app = create_app(model, "gated", LIMITS)
    with running(app) as port:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        body, content_type = multipart([("image", "a.png", png_bytes(photo()))])
        conn.request("POST", "/api/restore", body=body, headers={"Content-Type": content_type})
        assert wait_until(lambda: gate.calls == 1)
        conn.close()
        time.sleep(0.2)
        gate.event.set()
        assert wait_until(lambda: app.state.jobs.pending == 0)
    assert gate.calls == 1 and gate.finished == 0


def test_detected_corruption_is_one_json_line_or_nothing():
    assert detection_header(None, Blend()) is None
    found = Inspection("haze+noise", 0.81234, 12.5, 0.4, {"haze": 0.9, "noise": 0.8, "rain": 0.1}, file="x.png")
    assert json.loads(detection_header(found, Blend(0.9, 0.09, 12.5, first=True))) == {
        "type": "haze+noise", "confidence": 0.812, "sigma": 12.5, "haze_density": 0.4, "strength": 0.9, "anchor": 0.09,
        "denoised_first": True}
    assert "\n" not in detection_header(found, Blend(0.9))



def test_only_loopback_is_quiet():
    assert all(exposure_warning(h) is None for h in ("127.0.0.1", "localhost", "::1", "127.0.0.2"))
    assert all("no authentication" in exposure_warning(h) for h in ("0.0.0.0", "192.168.1.20", "::", "myhost"))


def test_a_port_in_use_is_one_clear_line():
    with listen("127.0.0.1", 0) as taken:
        with pytest.raises(AirNetError, match=r"cannot listen on 127\.0\.0\.1:.*choose another --port"):
            listen("127.0.0.1", taken.getsockname()[1])


def test_bad_limits_are_refused_before_anything_loads(capsys):
    assert main(["serve", "--workers", "0"]) == 2
    assert "must be positive" in capsys.readouterr().err


def test_airnet_help_imports_no_web_stack():
    code = "import sys, airnet_restore.cli as c; c.build_parser(); print(sorted(m for m in ('fastapi', 'uvicorn', 'torch') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr
