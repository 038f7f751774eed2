"""`airnet serve`: the HTTP API on a real loopback server with a tiny model, limits and abuse cases."""

from __future__ import annotations

import http.client
import io
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from airnet_restore.cli import main
from airnet_restore.errors import AirNetError
from airnet_restore.inspection import Inspection
from airnet_restore.loading import load_model
from airnet_restore.postfilter import Blend
from airnet_restore.web import Limits
from airnet_restore.web.app import create_app, detection_header
from airnet_restore.web.server import exposure_warning, listen
from airnet_restore.web.upload import download_name
from airnet_restore.weights import save_weights
from tests.conftest import make_tiny
from tests.web.serving import Gate, crafted_png, error_of, multipart, photo, png_bytes, post_image, request, running, wait_until

LIMITS = Limits(max_bytes=2**20, max_pixels=100_000, workers=1, queue=1, timeout=60)


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
    message = error_of(result)
    bomb = width * height > 2 * Image.MAX_IMAGE_PIXELS and "decompression-bomb limit" in message  # Pillow's words
    assert result[0] == 413 and (f"{width * height:,} pixels is over the limit of 100,000" in message or bomb), message
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
    static = Path(__file__).parents[2] / "src/airnet_restore/web/static"
    for name in ("app.js", "style.css", "index.html"):
        assert request(port, "GET", f"/static/{name}" if name != "index.html" else "/")[0] == 200
        assert "http://" not in (static / name).read_text() and "https://" not in (static / name).read_text()


def test_a_full_queue_answers_503_with_retry_after_and_loses_nothing(monkeypatch):
    model = make_tiny().eval()
    gate = Gate(model)
    found = Inspection("noise", 0.9, 25.0, None, {"noise": 0.97, "rain": 0.01})
    monkeypatch.setattr("airnet_restore.inference.pipeline._plan", lambda *a: (Blend(0.97, 0.5), found))
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


def test_a_stalled_upload_is_408_and_never_held_a_slot():
    app = create_app(make_tiny().eval(), "tiny", Limits(max_bytes=2**20, read_timeout=0.5))
    with running(app) as port, socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"POST /api/restore HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n".encode()
                     + b"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 1000\r\n\r\n--b\r\n")
        assert wait_until(lambda: json.loads(request(port, "GET", "/api/health")[2])["receiving"] == 1)
        assert app.state.jobs.pending == 0
        assert sock.recv(4096).startswith(b"HTTP/1.1 408")
        assert wait_until(lambda: list(app.state.upload_root.iterdir()) == [])


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
    bands = json.loads(detection_header(found, Blend(0.9, rain=0.8, haze=0.25)))  # the output bands' confidences
    assert bands["streaks"] == 0.8 and bands["dehazed"] == 0.25 and "denoised_first" not in bands



def test_only_loopback_is_quiet():
    assert all(exposure_warning(h) is None for h in ("127.0.0.1", "localhost", "::1", "127.0.0.2"))
    assert all("no authentication" in exposure_warning(h) for h in ("0.0.0.0", "192.168.1.20", "::", "myhost"))


def test_a_port_in_use_is_one_clear_line():
    with listen("127.0.0.1", 0) as taken:
        with pytest.raises(AirNetError, match=r"cannot listen on 127\.0\.0\.1:.*choose another --port"):
            listen("127.0.0.1", taken.getsockname()[1])


@pytest.mark.parametrize("option, value, words", [
    ("--workers", "0", "workers (--workers) must be a whole number of at least 1, not 0"),
    ("--queue", "-1", "queue (--queue) must be a whole number of at least 0"),
    ("--uploads", "0", "uploads (--uploads)"),
    ("--max-upload-mb", "0", "max_bytes (--max-upload-mb)"),
    ("--max-pixels", "-5", "max_pixels (--max-pixels)"),
    ("--timeout", "nan", "timeout (--timeout) must be a finite number of seconds above 0, not nan"),
    ("--timeout", "0", "timeout (--timeout)"),
    ("--read-timeout", "inf", "read_timeout (--read-timeout)"),
    ("--port", "-5", "--port must be a whole number from 0 to 65535 (0 picks a free one), not -5"),
    ("--port", "70000", "not 70000"),
    ("--allow-host", "a b", "--allow-host 'a b' is not a host name"),
    ("--allow-origin", "example.com", "--allow-origin 'example.com' is not an origin"),
])
def test_bad_settings_are_one_line_before_anything_loads(capsys, monkeypatch, option, value, words):
    monkeypatch.setattr("airnet_restore.loading.load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    assert main(["serve", option, value, "--weights", "nowhere.safetensors"]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("field, value", [("workers", 0), ("queue", -1), ("timeout", float("nan")), ("read_timeout", -1.0),
                                          ("max_bytes", 1.5), ("workers", True)])
def test_limits_refuse_what_a_server_cannot_run_with(field, value):
    with pytest.raises(AirNetError, match=rf"^{field} \(--"):
        Limits(**{field: value})
    assert Limits(queue=0, timeout=0.001).queue == 0


def test_airnet_help_imports_no_web_stack():
    code = "import sys, airnet_restore.cli as c; c.build_parser(); print(sorted(m for m in ('fastapi', 'uvicorn', 'torch') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr


def test_the_postfilter_choice_reaches_the_web_restore_as_the_cli_takes_it(server, weights, tmp_path):
    port, _ = server
    cv2.imwrite(str(tmp_path / "p.png"), photo(seed=4))
    assert main(["restore", str(tmp_path / "p.png"), "-o", str(tmp_path / "cli"), "--postfilter", "none",
                 "--weights", str(weights), "--device", "cpu", "-q"]) == 0
    body, content_type = multipart([("image", "p.png", (tmp_path / "p.png").read_bytes())])
    status, _, served = request(port, "POST", "/api/restore?postfilter=none", body, content_type)
    assert status == 200
    np.testing.assert_array_equal(cv2.imdecode(np.frombuffer(served, np.uint8), -1), cv2.imread(str(tmp_path / "cli" / "p.png"), -1))
    status, _, answer = request(port, "POST", "/api/restore?postfilter=off", body, content_type)
    assert status == 400 and "postfilter must be 'auto'" in json.loads(answer)["error"]
