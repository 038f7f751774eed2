"""Issue 34: stopping the server (Ctrl+C) answers the requests in flight 503 and exits with one line, no traceback."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time

from airnet_restore.web import Limits
from airnet_restore.web.app import create_app
from airnet_restore.weights import save_weights
from tests.conftest import make_tiny
from tests.web.serving import Gate, error_of, photo, png_bytes, post_image, raw_reply, request, running, wait_until


def test_stopping_answers_restores_queued_jobs_and_uploads_503_at_once():
    model = make_tiny().eval()
    gate = Gate(model, seconds=4)
    app = create_app(model, "gated", Limits(max_bytes=2**20, max_pixels=100_000, workers=1, queue=2, read_timeout=30))
    results: dict[str, tuple] = {}
    answered: dict[str, float] = {}

    def post(name: str) -> None:
        results[name] = post_image(port, png_bytes(photo()))
        answered[name] = time.monotonic()

    with running(app) as port:  # quiet: nothing may be logged at ERROR
        clients = [threading.Thread(target=post, args=(name,)) for name in ("restoring", "queued")]
        for admitted, client in enumerate(clients, start=1):
            client.start()
            assert wait_until(lambda n=admitted: app.state.jobs.pending == n)
        assert wait_until(lambda: gate.calls == 1)
        uploading = socket.create_connection(("127.0.0.1", port), timeout=10)
        uploading.sendall(f"POST /api/restore HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n".encode()
                          + b"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 5000\r\n\r\n--b\r\n")
        assert wait_until(lambda: json.loads(request(port, "GET", "/api/health")[2])["receiving"] == 1)
        stopped = time.monotonic()
    with uploading:
        status, body = raw_reply(uploading)
    for client in clients:
        client.join(30)
    assert status == 503 and "shutting down" in json.loads(body)["error"]
    for name in ("restoring", "queued"):
        assert results[name][0] == 503 and "shutting down" in error_of(results[name]), name
        assert answered[name] - stopped < 3, name  # not after the gated restore (4 s) ends
    assert gate.finished == 0 and app.state.jobs.pending == 0


def test_ctrl_c_during_an_upload_is_a_503_and_one_line(tmp_path):
    weights = save_weights(make_tiny().eval(), tmp_path / "tiny.safetensors")
    proc = subprocess.Popen([sys.executable, "-m", "airnet_restore", "serve", "--port", "0", "--device", "cpu",
                             "--weights", str(weights)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        found = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert found, proc.stderr.read() if proc.poll() is not None else line
        port = int(found[1])
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(f"POST /api/restore HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n".encode()
                         + b"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 5000\r\n\r\n--b\r\n")
            assert wait_until(lambda: json.loads(request(port, "GET", "/api/health")[2])["receiving"] == 1)
            proc.send_signal(signal.SIGINT)
            status, body = raw_reply(sock)
        assert status == 503 and "shutting down" in json.loads(body)["error"]
        assert proc.wait(30) == 130
        err = proc.stderr.read()
        assert err == "airnet serve: interrupted\n", err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
