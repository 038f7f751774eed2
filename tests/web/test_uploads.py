"""Issue 34: uploads are received whole, within a byte limit and a deadline, before they take a job slot."""

from __future__ import annotations

import json
import socket
import time
from contextlib import ExitStack

import cv2
import numpy as np
import pytest

from airnet_restore.web import Limits
from airnet_restore.web.app import create_app
from tests.conftest import make_tiny
from tests.web import serving
from tests.web.serving import Gate, error_of, float_tiff, multipart, photo, png_bytes, post_image, raw_reply, request, running


def health(port: int) -> dict:
    return json.loads(request(port, "GET", "/api/health")[2])


def trickle(port: int, stack: ExitStack) -> socket.socket:
    """A client that sends the start of an upload and then nothing (1 byte per second at best)."""
    sock = stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=30))
    sock.sendall(f"POST /api/restore HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n".encode()
                 + b"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000\r\n\r\n--b\r\n")
    return sock


def test_slow_uploads_do_not_hold_the_job_slots():
    limits = Limits(max_bytes=2**20, max_pixels=100_000, workers=1, queue=1, uploads=8, read_timeout=30)
    app = create_app(make_tiny().eval(), "tiny", limits)
    with running(app) as port, ExitStack() as stack:
        for _ in range(5):
            trickle(port, stack)
        assert serving.wait_until(lambda: health(port)["receiving"] == 5)
        assert app.state.jobs.pending == 0
        start = time.perf_counter()
        assert post_image(port, png_bytes(photo()))[0] == 200
        assert time.perf_counter() - start < 10


def test_uploads_beyond_the_limit_are_503_at_once_and_slow_ones_end_at_the_read_deadline():
    limits = Limits(max_bytes=2**20, max_pixels=100_000, uploads=2, read_timeout=1.0)
    app = create_app(make_tiny().eval(), "tiny", limits)
    with running(app) as port, ExitStack() as stack:
        slow = [trickle(port, stack) for _ in range(2)]
        assert serving.wait_until(lambda: health(port)["receiving"] == 2)
        busy = post_image(port, png_bytes(photo()))
        assert busy[0] == 503 and "--uploads" in error_of(busy) and busy[1]["retry-after"]
        for sock in slow:
            status, body = raw_reply(sock)
            assert status == 408 and "--read-timeout" in json.loads(body)["error"]
        assert post_image(port, png_bytes(photo()))[0] == 200
        assert serving.wait_until(lambda: list(app.state.upload_root.iterdir()) == [])


def test_an_over_long_body_is_413_before_it_is_sent():
    app = create_app(make_tiny().eval(), "tiny", Limits(max_bytes=2**20))
    with running(app) as port, socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"POST /api/restore HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n".encode()
                     + b"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 10000000000\r\n\r\n")
        status, body = raw_reply(sock)
        assert status == 413 and "10,000,000,000 bytes is over the limit of 1,048,576" in json.loads(body)["error"]


def test_a_float_tiff_declaring_10000x10000_is_413_without_decoding():
    model = make_tiny().eval()
    gate = Gate(model, seconds=0)
    app = create_app(model, "tiny", Limits(max_bytes=2**20, max_pixels=100_000))
    data = float_tiff(10_000, 10_000)  # 1.2 GB of float32 pixels in 80 kB
    with running(app) as port:
        start = time.perf_counter()
        result = post_image(port, data, filename="bomb.tif")
        assert result[0] == 413 and "10000x10000 = 100,000,000 pixels is over the limit of 100,000" in error_of(result)
        assert time.perf_counter() - start < 2 and app.state.jobs.pending == 0 and gate.calls == 0
    small = cv2.imdecode(np.frombuffer(float_tiff(64, 48), np.uint8), cv2.IMREAD_UNCHANGED)  # a real image, small
    assert small.shape == (48, 64, 3) and small.dtype == np.float32


def test_multipart_part_headers_are_bounded():  # by python-multipart: they are held in memory
    app = create_app(make_tiny().eval(), "tiny", Limits(max_bytes=2**20))
    body = b"--b\r\nContent-Disposition: form-data; name=image; filename=a.png\r\nX-Pad: " + b"a" * 20_000 + b"\r\n\r\nxx\r\n--b--\r\n"
    with running(app) as port:
        result = request(port, "POST", "/api/restore", body, "multipart/form-data; boundary=b")
        assert result[0] == 400 and "malformed multipart body (Maximum header size" in error_of(result)


@pytest.mark.parametrize("sent", [b"", b"--b\r\nContent-Disposition: form-data; name=image; filename=a.png\r\n\r\nabc"])
def test_a_client_that_leaves_during_its_upload_leaves_nothing_behind(sent):
    app = create_app(make_tiny().eval(), "tiny", Limits(max_bytes=2**20, read_timeout=30))
    with running(app) as port:  # quiet: the server must not log a traceback for it
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(f"POST /api/restore HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n".encode()
                         + b"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 5000\r\n\r\n" + sent)
            assert serving.wait_until(lambda: health(port)["receiving"] == 1)
        assert serving.wait_until(lambda: health(port)["receiving"] == 0)
        assert serving.wait_until(lambda: list(app.state.upload_root.iterdir()) == [])
        assert app.state.jobs.pending == 0


def test_garbage_bodies_are_400_and_the_server_goes_on():
    app = create_app(make_tiny().eval(), "tiny", Limits(max_bytes=2**20))
    good_body, good_type = multipart([("image", "a.png", png_bytes(photo()))])
    with running(app) as port:
        for body, content_type in [(bytes(range(256)) * 40, "multipart/form-data; boundary=b"),
                                   (good_body, "multipart/form-data"),
                                   (good_body, "multipart/form-data; boundary=" + "x" * 5000),
                                   (good_body, "application/x-www-form-urlencoded")]:
            result = request(port, "POST", "/api/restore", body, content_type)
            assert result[0] == 400 and "\n" not in error_of(result), content_type
        assert request(port, "POST", "/api/restore", good_body, good_type)[0] == 200
