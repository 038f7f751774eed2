"""Hostile cases for `airnet serve` (issue 34): other sites, other names, slow and huge uploads, bad settings, stopping.

Requests go straight to the ASGI app (``asgi_request``) where no network is needed, else to a real
uvicorn server on a free loopback port (``running``, which also fails on anything logged at ERROR).
Every model is the harness's tiny one.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from contextlib import ExitStack

from airnet_restore.loading import load_model
from airnet_restore.web import Access, Limits
from airnet_restore.web.app import create_app
from tests.hostile.harness import Cases, Scene, bad, cli, refused, security, tiny_weights
from tests.web.serving import (
    Gate,
    asgi_request,
    crafted_png,
    float_tiff,
    multipart,
    photo,
    png_bytes,
    post_image,
    raw_reply,
    request,
    running,
    wait_until,
)

CASES = Cases("web")
LIMITS = Limits(max_bytes=2**20, max_pixels=100_000, workers=1, queue=1, timeout=60, read_timeout=30)


def app_for(limits: Limits = LIMITS, access: Access | None = None, gate_seconds: float | None = None):
    """A web app over the tiny model; with ``gate_seconds`` its model calls are counted (and held that long)."""
    model = load_model(str(tiny_weights()), device="cpu")
    gate = Gate(model.network, gate_seconds) if gate_seconds is not None else None
    return create_app(model, "tiny", limits, access), gate


def image_post(headers: dict[str, str]) -> tuple[dict[str, str], bytes]:
    body, content_type = multipart([("image", "photo.png", png_bytes(photo()))])
    return {"Content-Type": content_type, **headers}, body


def json_error(response: tuple[int, dict[str, str], bytes], what: str) -> str:
    """The one-line JSON error of a refusal; BAD when the refusal is not one."""
    if response[1].get("content-type") != "application/json":
        bad(f"{what}: {response[0]} is not a JSON error: {response[2][:200]!r}")
    message = json.loads(response[2])["error"]
    if "\n" in message:
        bad(f"{what}: a multi-line error: {message[:300]}")
    return message


def refuses_foreign(app, gate, headers: dict[str, str], what: str, method: str = "POST", path: str = "/api/restore") -> None:
    """SECURITY when a request with ``headers`` is served or runs the model."""
    calls = gate.calls
    sent, body = image_post(headers)
    response = asgi_request(app, method, path, sent, body if method == "POST" else b"")
    if response[0] not in (400, 403):
        security(f"{what}: answered {response[0]} instead of a refusal")
    json_error(response, what)
    if gate.calls != calls:
        security(f"{what}: the model ran for a refused request")


def trickle(port: int, stack: ExitStack, length: int = 100_000) -> socket.socket:
    """A client that starts an upload and then sends nothing."""
    sock = stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=30))
    sock.sendall(f"POST /api/restore HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n".encode()
                 + f"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: {length}\r\n\r\n--b\r\n".encode())
    return sock


def receiving(port: int) -> int:
    return json.loads(request(port, "GET", "/api/health")[2])["receiving"]


@CASES.add
def foreign_host(scene: Scene) -> None:
    app, gate = app_for(gate_seconds=0)
    for host in ("attacker.example", "attacker.example:80", "", "exa mple"):
        refuses_foreign(app, gate, {"Host": host}, f"Host {host!r}", "GET", "/api/health")
        refuses_foreign(app, gate, {"Host": host}, f"Host {host!r}")


@CASES.add
def dns_rebinding_host(scene: Scene) -> None:
    """The attacker's name resolves to 127.0.0.1: same address and port, a foreign Host header."""
    app, _ = app_for()
    with running(app) as port:
        for host in (f"attacker.example:{port}", f"127.0.0.1.nip.io:{port}", f"localhost.attacker.example:{port}"):
            for path in ("/api/health", "/"):
                response = request(port, "GET", path, headers={"Host": host})
                if response[0] != 403:
                    security(f"GET {path} with Host {host}: {response[0]}; a rebinding page could read the answer")
                json_error(response, f"Host {host}")


@CASES.add
def cross_origin_post(scene: Scene) -> None:
    app, gate = app_for(gate_seconds=0)
    for origin in ("http://attacker.example", "null", "http://localhost:7861", "https://127.0.0.1:7860"):
        refuses_foreign(app, gate, {"Origin": origin}, f"POST from Origin {origin}")


@CASES.add
def cross_site_fetch_metadata(scene: Scene) -> None:
    """A browser that sends Sec-Fetch-Site but no Origin (a no-cors request, a form)."""
    app, gate = app_for(gate_seconds=0)
    for site in ("cross-site", "same-site"):
        refuses_foreign(app, gate, {"Sec-Fetch-Site": site, "Sec-Fetch-Mode": "no-cors"}, f"POST with Sec-Fetch-Site {site}")
        refuses_foreign(app, gate, {"Sec-Fetch-Site": site, "Sec-Fetch-Mode": "cors"}, f"GET with Sec-Fetch-Site {site}",
                        "GET", "/api/health")


@CASES.add
def own_page_and_allowed_sites_are_served(scene: Scene) -> None:
    app, _ = app_for(access=Access(hosts=("photos.lan",), origins=("https://tools.example",)))
    for headers in ({}, {"Origin": "http://127.0.0.1:7860", "Sec-Fetch-Site": "same-origin"}, {"Host": "localhost:7860"},
                    {"Host": "photos.lan:7860", "Origin": "http://photos.lan:7860"}, {"Origin": "https://tools.example"}):
        response = asgi_request(app, "GET", "/api/health", headers)
        if response[0] != 200:
            bad(f"a request the server must serve ({headers}) got {response[0]}: {response[2][:200]!r}")
    sent, body = image_post({"Origin": "https://tools.example"})
    if asgi_request(app, "POST", "/api/restore", sent, body)[0] != 200:
        bad("a restore from an --allow-origin site was refused")
    sent, body = image_post({"Origin": "https://other.example"})
    if asgi_request(app, "POST", "/api/restore", sent, body)[0] != 403:
        security("an origin not in --allow-origin was served")


@CASES.add
def duplicate_host_header(scene: Scene) -> None:
    app, _ = app_for()
    with running(app) as port, socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nHost: attacker.example\r\n\r\n".encode())
        status, _ = raw_reply(sock)
        if status not in (400, 403):
            security(f"two Host headers (one foreign) answered {status}")


@CASES.add
def slow_uploads_do_not_block_a_legitimate_one(scene: Scene) -> None:
    app, _ = app_for(Limits(max_bytes=2**20, max_pixels=100_000, workers=1, queue=1, uploads=8, read_timeout=30))
    with running(app) as port, ExitStack() as stack:
        for _ in range(5):
            trickle(port, stack)
        if not wait_until(lambda: receiving(port) == 5):
            bad("the five slow uploads were not being received")
        start = time.perf_counter()
        status = post_image(port, png_bytes(photo()))[0]
        if status != 200 or time.perf_counter() - start > 10:
            security(f"with 5 slow uploads (1 byte/s) a legitimate upload got {status} after {time.perf_counter() - start:.1f} s")


@CASES.add
def upload_flood_is_bounded_and_cut_off(scene: Scene) -> None:
    app, _ = app_for(Limits(max_bytes=2**20, max_pixels=100_000, uploads=2, read_timeout=1.0))
    with running(app) as port, ExitStack() as stack:
        slow = [trickle(port, stack) for _ in range(2)]
        wait_until(lambda: receiving(port) == 2)
        third = trickle(port, stack)
        status, _ = raw_reply(third)
        if status != 503:
            security(f"a third upload beyond --uploads 2 got {status}: slow senders can pile up without bound")
        for sock in slow:
            status, _ = raw_reply(sock)
            if status != 408:
                security(f"an upload stalled past --read-timeout got {status}, not 408")


@CASES.add
def over_long_body_refused_before_it_is_read(scene: Scene) -> None:
    app, _ = app_for()
    with running(app) as port, socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        start = time.perf_counter()
        sock.sendall(f"POST /api/restore HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n".encode()
                     + b"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 10000000000\r\n\r\n")
        status, _ = raw_reply(sock)
        if status != 413 or time.perf_counter() - start > 5:
            security(f"a declared 10 GB body got {status} after {time.perf_counter() - start:.1f} s, not 413 at once")
    with running(app_for()[0]) as port:  # a stopped app is not served again
        body, content_type = multipart([("image", "big.png", bytes(8 * 2**20))])
        status = request(port, "POST", "/api/restore", body, content_type, chunked=True)[0]
        if status != 413:
            security(f"an 8 MiB chunked body over a 1 MiB limit got {status}")


@CASES.add
def declared_huge_tiff(scene: Scene) -> None:
    """A float32 TIFF declaring 10000x10000 RGB (1.2 GB decoded) in 80 kB; Pillow cannot open its header."""
    app, gate = app_for(gate_seconds=0)
    with running(app) as port:
        start = time.perf_counter()
        response = post_image(port, float_tiff(10_000, 10_000), filename="bomb.tif")
        took = time.perf_counter() - start
        if response[0] != 413:
            security(f"a TIFF declaring 10000x10000 got {response[0]} after {took:.1f} s (decoded?): {response[2][:200]!r}")
        if took > 3 or gate.calls:
            security(f"a TIFF declaring 10000x10000 took {took:.1f} s to refuse: it was decoded")


@CASES.add
def png_decompression_bomb(scene: Scene) -> None:
    app, _ = app_for()
    with running(app) as port:
        for size in (100_000, 20_000):
            start = time.perf_counter()
            status = post_image(port, crafted_png(size, size))[0]
            if status != 413 or time.perf_counter() - start > 3:
                security(f"a PNG declaring {size}x{size} got {status} after {time.perf_counter() - start:.1f} s")


@CASES.add
def bad_port(scene: Scene) -> None:
    for port in ("-5", "70000", "65536"):
        refused(cli("serve", "--port", port), "--port", "65535")


@CASES.add
def bad_limits(scene: Scene) -> None:
    for option, value in (("--timeout", "nan"), ("--timeout", "inf"), ("--timeout", "-1"), ("--read-timeout", "0"),
                          ("--workers", "0"), ("--queue", "-1"), ("--uploads", "0"), ("--max-upload-mb", "0"),
                          ("--max-pixels", "0")):
        result = cli("serve", option, value)
        refused(result, option)
        if result.err.count("\n") != 1:
            bad(f"serve {option} {value}: not one line: {result.err!r}")


@CASES.add
def bad_allowed_names(scene: Scene) -> None:
    refused(cli("serve", "--allow-origin", "example.com"), "--allow-origin")
    refused(cli("serve", "--allow-origin", "https://example.com/path"), "--allow-origin")
    refused(cli("serve", "--allow-host", "http://example.com"), "--allow-host")


@CASES.add
def garbage_multipart(scene: Scene) -> None:
    app, _ = app_for()
    good, content_type = multipart([("image", "a.png", png_bytes(photo()))])
    with running(app) as port:  # a traceback in the server's log is BAD
        for body, kind in ((bytes(range(256)) * 40, "multipart/form-data; boundary=b"),
                           (good, "multipart/form-data"),
                           (good, "multipart/form-data; boundary=" + "x" * 5000),
                           (good, "text/plain"),
                           (good[: len(good) // 2], content_type),
                           (b"--b\r\nContent-Disposition: form-data; name=image\r\nX: " + b"a" * 20_000 + b"\r\n\r\nx\r\n--b--\r\n",
                            "multipart/form-data; boundary=b")):
            response = request(port, "POST", "/api/restore", body, kind)
            if response[0] != 400:
                bad(f"a garbage body ({kind[:60]}) got {response[0]}: {response[2][:200]!r}")
            json_error(response, "garbage multipart")


@CASES.add
def missing_file_field(scene: Scene) -> None:
    app, _ = app_for()
    for parts in ([("file", "a.png", png_bytes(photo()))], [("image", None, b"")], [("note", None, b"hello")]):
        body, content_type = multipart(parts)
        response = asgi_request(app, "POST", "/api/restore", {"Content-Type": content_type}, body)
        if response[0] != 400:
            bad(f"an upload without a file in 'image' ({parts[0][0]}) got {response[0]}")
        json_error(response, "missing file field")


@CASES.add
def path_traversal_names(scene: Scene) -> None:
    app, _ = app_for()
    scene.protect()
    for name in ("../../escape.png", "/etc/passwd", "..\\..\\evil.png", 'a"b\r\nSet-Cookie: x=1.png'):
        body, content_type = multipart([("image", name, png_bytes(photo()))])
        status, headers, _ = asgi_request(app, "POST", "/api/restore", {"Content-Type": content_type}, body)
        disposition = headers.get("content-disposition", "")
        if status != 200 or "/" in disposition or "\\" in disposition or "\r" in disposition or ".." in disposition:
            security(f"file name {name!r}: {status}, Content-Disposition {disposition!r}")
    for path in ("/static/../app.py", "/static/..%2fapp.py", "/static/%2e%2e/__init__.py", "/static//etc/passwd"):
        status, _, body = asgi_request(app, "GET", path)
        if status == 200 and (b"import" in body or b"root:" in body):
            security(f"GET {path} served a file outside static/")


@CASES.add
def client_leaves_mid_upload(scene: Scene) -> None:
    app, _ = app_for()
    with running(app) as port:  # a traceback in the server's log is BAD
        with ExitStack() as stack:
            trickle(port, stack, length=5000)
            wait_until(lambda: receiving(port) == 1)
        if not wait_until(lambda: receiving(port) == 0 and not list(app.state.upload_root.iterdir())):
            bad("a client that left mid-upload left its upload behind")
        if app.state.jobs.pending:
            security("a client that left mid-upload still holds a job slot")


@CASES.add
def stop_during_a_restore(scene: Scene) -> None:
    """Ctrl+C while a restore runs: the client gets a 503 at once, the server logs no traceback."""
    app, gate = app_for(gate_seconds=3)
    results: list = []
    with running(app) as port:  # a traceback in the server's log is BAD
        client = threading.Thread(target=lambda: results.append(post_image(port, png_bytes(photo()))))
        client.start()
        wait_until(lambda: gate.calls == 1)
        stopped = time.monotonic()
    client.join(30)
    if not results or results[0][0] != 503:
        bad(f"a restore in flight at shutdown got {results[0][0] if results else 'no answer'}, not 503")
    if time.monotonic() - stopped > 6:
        bad("stopping the server waited for the restore to finish")
