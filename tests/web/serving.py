"""Serving the web app in tests: a real uvicorn server on a loopback port, requests, images, a model gate.

Shared by the tests under tests/web, tests/inference/test_image_io_hostile.py and the hostile suite's web cases.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import struct
import threading
import time
import uuid
import zlib
from contextlib import contextmanager

import cv2
import numpy as np

from airnet_restore.web.server import listen, stopping_server


class ErrorLog(logging.Handler):
    """Collects what the server logs at ERROR or above (a traceback of a request, an unretrieved task error)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def lines(self) -> list[str]:
        return [self.format(r).splitlines()[-1] for r in self.records]


@contextmanager
def running(app, quiet: bool = True):
    """Serve ``app`` on a free loopback port in a thread, as `airnet serve` does; yields the port.

    With ``quiet``, anything the server logs at ERROR (a traceback) fails the test when it stops.
    """
    sock = listen("127.0.0.1", 0)
    server = stopping_server(app)  # configures uvicorn's loggers: the collector goes on after
    log = ErrorLog()
    loggers = [logging.getLogger(name) for name in ("uvicorn", "uvicorn.error", "asyncio")]
    for logger in loggers:
        logger.addHandler(log)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(30)
        for logger in loggers:
            logger.removeHandler(log)
    assert not (quiet and log.records), f"the server logged errors: {log.lines()}"


def asgi_request(app, method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b"",
                 server: tuple[str, int] = ("127.0.0.1", 7860), scheme: str = "http") -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of one request handed straight to the ASGI ``app``, as uvicorn would for a client
    connected to ``server``; the Host header is ``server`` unless ``headers`` name one. No network, no lifespan."""
    host = f"{server[0]}:{server[1]}" if ":" not in server[0] else f"[{server[0]}]:{server[1]}"
    fields = {"host": host, **{k.lower(): v for k, v in (headers or {}).items()}}
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": scheme,
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "", "server": server,
             "client": ("127.0.0.1", 50000), "headers": [(k.encode(), v.encode("latin-1")) for k, v in fields.items()]}
    sent: list[dict] = []

    async def run() -> None:
        messages = [{"type": "http.request", "body": body, "more_body": False}]
        connected = asyncio.Event()  # never set: the client stays until the response is complete

        async def receive() -> dict:
            if messages:
                return messages.pop()
            await connected.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict) -> None:
            sent.append(message)

        await app(scope, receive, send)

    asyncio.run(run())
    start = next(m for m in sent if m["type"] == "http.response.start")
    headers_out = {k.decode().lower(): v.decode("latin-1") for k, v in start["headers"]}
    return start["status"], headers_out, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


def raw_reply(sock) -> tuple[int, bytes]:
    """(status, body) of the one HTTP response a raw socket gets (a test that wrote the request by hand)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length and (chunk := sock.recv(65536)):
        body += chunk
    return int(head.split(b" ")[1]) if head else 0, body


def multipart(parts: list[tuple[str, str | None, bytes]]) -> tuple[bytes, str]:
    """A multipart/form-data body of (field, filename or None, data) parts, and its Content-Type."""
    boundary = uuid.uuid4().hex
    body = b""
    for field, filename, data in parts:
        name = f'; filename="{filename}"' if filename is not None else ""
        body += f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"{name}\r\n\r\n'.encode() + data + b"\r\n"
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def request(port: int, method: str, path: str, body: bytes | None = None, content_type: str | None = None,
            chunked: bool = False, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of one request (``headers`` replace http.client's, Host included); a server that
    stops reading early is fine."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {**({"Content-Type": content_type} if content_type else {}), **(headers or {})}
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


def error_of(status_headers_body) -> str:
    """The JSON error of a response (which must be JSON)."""
    status, headers, body = status_headers_body
    assert headers["content-type"] == "application/json", (status, body[:200])
    return json.loads(body)["error"]


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
    """Whether ``condition()`` became true within ``seconds`` (polled)."""
    end = time.monotonic() + seconds
    while not condition() and time.monotonic() < end:
        time.sleep(0.02)
    return condition()


def float_tiff(width: int, height: int) -> bytes:
    """A deflated float32 RGB TIFF of zeros, ``width`` x ``height``, whose every row-strip is the same few bytes.

    Pillow cannot open float RGB TIFFs, OpenCV decodes them whole: at 10000 x 10000 this is a 1.2 GB
    image in a file of about ``8 * height`` bytes.
    """
    strip = zlib.compress(bytes(width * 3 * 4))
    entries: list[tuple[int, int, int, int | bytes]] = [  # (tag, type: 3 SHORT / 4 LONG, count, value or data)
        (256, 4, 1, width), (257, 4, 1, height), (258, 3, 3, struct.pack("<3H", 32, 32, 32)), (259, 3, 1, 8),
        (262, 3, 1, 2), (273, 4, height, b""), (277, 3, 1, 3), (278, 4, 1, 1), (279, 4, height, struct.pack(f"<{height}I", *[len(strip)] * height)),
        (284, 3, 1, 1), (339, 3, 3, struct.pack("<3H", 3, 3, 3)),
    ]
    ifd_size = 2 + 12 * len(entries) + 4
    data_at = 8 + ifd_size
    blobs = b""
    offsets: dict[int, int] = {}
    for tag, _, _, value in entries:
        if isinstance(value, bytes) and tag != 273:
            offsets[tag] = data_at + len(blobs)
            blobs += value
    strip_offsets_at = data_at + len(blobs)
    strip_at = strip_offsets_at + 4 * height
    blobs += struct.pack(f"<{height}I", *[strip_at] * height) + strip
    offsets[273] = strip_offsets_at
    ifd = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        if isinstance(value, bytes):
            ifd += struct.pack("<HHII", tag, kind, count, offsets[tag])
        else:
            ifd += struct.pack("<HHI", tag, kind, count) + (struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value))
    return b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + blobs
