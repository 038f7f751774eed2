"""Issue 34: the web app answers only to its own names and obeys only its own page (Host, Origin, Sec-Fetch-Site)."""

from __future__ import annotations

import json
import socket

import pytest

from airnet_restore.cli import main
from airnet_restore.errors import AirNetError
from airnet_restore.web import Access, Limits
from airnet_restore.web.app import create_app
from airnet_restore.web.hosts import refusal, split_host
from tests.conftest import make_tiny
from tests.web.serving import Gate, asgi_request, multipart, photo, png_bytes, running

BASE = "http://127.0.0.1:7860"  # the server's own origin in asgi_request
LIMITS = Limits(max_bytes=2**20, max_pixels=100_000)


@pytest.fixture(scope="module")
def gated():
    """An app whose model counts its calls (and never waits): did a refused request run a restore?"""
    model = make_tiny().eval()
    gate = Gate(model, seconds=0)
    return create_app(model, "tiny", LIMITS), gate


def upload() -> tuple[bytes, str]:
    return multipart([("image", "a.png", png_bytes(photo()))])


def post(app, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    body, content_type = upload()
    return asgi_request(app, "POST", "/api/restore", {"Content-Type": content_type, **headers}, body)


def error(response: tuple[int, dict[str, str], bytes]) -> str:
    assert response[1]["content-type"] == "application/json", response
    return json.loads(response[2])["error"]


@pytest.mark.parametrize("host, status", [
    ("attacker.example", 403),
    ("attacker.example:7860", 403),  # DNS rebinding: the attacker's name resolving to 127.0.0.1
    ("127.0.0.1.nip.io:7860", 403),
    ("localhost.attacker.example:7860", 403),
    ("127.0.0.1:8080", 403),  # another port: a proxy or a mix-up, never this server's own origin
    ("localhost", 403),  # port 80 implied
    ("", 400),
    ("exa mple:7860", 400),
    ("[not-v6]:7860", 400),
    ("localhost:99999", 400),
])
@pytest.mark.parametrize("method, path", [("GET", "/api/health"), ("GET", "/"), ("GET", "/static/app.js"), ("POST", "/api/restore")])
def test_a_foreign_host_gets_a_json_refusal_and_no_restore(gated, host, status, method, path):
    app, gate = gated
    calls = gate.calls
    body, content_type = upload()
    response = asgi_request(app, method, path, {"Host": host, "Content-Type": content_type}, body if method == "POST" else b"")
    assert response[0] == status and "\n" not in error(response)
    assert gate.calls == calls


@pytest.mark.parametrize("host", ["127.0.0.1:7860", "localhost:7860", "LocalHost:7860", "[::1]:7860"])
def test_loopback_names_with_the_port_are_served(gated, host):
    assert asgi_request(gated[0], "GET", "/api/health", {"Host": host})[0] == 200


@pytest.mark.parametrize("origin", [
    "http://attacker.example", "null", "http://localhost:7861", "https://127.0.0.1:7860", "http://127.0.0.1:7860/x", "garbage",
])
def test_a_cross_origin_post_is_403_before_the_upload_is_read(gated, origin):
    app, gate = gated
    calls = gate.calls
    response = post(app, {"Origin": origin})
    assert response[0] == 403 and "--allow-origin" in error(response)
    assert gate.calls == calls


@pytest.mark.parametrize("site", ["cross-site", "same-site"])
@pytest.mark.parametrize("method, path, mode", [("POST", "/api/restore", "no-cors"), ("GET", "/api/health", "cors"),
                                                ("GET", "/static/app.js", "no-cors"), ("POST", "/api/restore", "navigate")])
def test_a_cross_site_request_without_origin_is_403(gated, site, method, path, mode):
    app, gate = gated
    calls = gate.calls
    body, content_type = upload()
    response = asgi_request(app, method, path, {"Sec-Fetch-Site": site, "Sec-Fetch-Mode": mode, "Content-Type": content_type},
                            body if method == "POST" else b"")
    assert response[0] == 403 and "Sec-Fetch-Site" in error(response)
    assert gate.calls == calls


def test_the_page_itself_may_be_opened_from_a_link_on_another_site(gated):
    response = asgi_request(gated[0], "GET", "/", {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"})
    assert response[0] == 200 and b"<input" in response[2]


@pytest.mark.parametrize("headers", [{}, {"Origin": BASE}, {"Origin": "HTTP://127.0.0.1:7860"},
                                     {"Sec-Fetch-Site": "same-origin", "Origin": BASE}, {"Sec-Fetch-Site": "none"}])
def test_the_servers_own_page_restores(gated, headers):
    app, gate = gated
    calls = gate.calls
    response = post(app, headers)
    assert response[0] == 200 and response[1]["content-type"] == "image/png"
    assert gate.calls > calls


def test_allowed_hosts_and_origins_are_served_and_nothing_else():
    access = Access(hosts=("photos.lan", "proxy.example:443"), origins=("https://tools.example",))
    app = create_app(make_tiny().eval(), "tiny", LIMITS, access)
    ok = {"Host": "photos.lan:7860"}, {"Host": "photos.lan"}, {"Host": "proxy.example:443"}, {"Origin": "https://tools.example"}, \
        {"Origin": "https://tools.example:443", "Sec-Fetch-Site": "cross-site"}, {"Host": "photos.lan:7860", "Origin": "http://photos.lan:7860"}
    for headers in ok:
        assert post(app, headers)[0] == 200, headers
    refused = {"Host": "proxy.example:8443"}, {"Host": "evil.photos.lan:7860"}, {"Origin": "http://tools.example"}, \
        {"Origin": "https://tools.example.attacker.example"}, {"Host": "photos.lan:7860", "Origin": "http://attacker.example"}
    for headers in refused:
        assert post(app, headers)[0] == 403, headers


def test_an_every_address_bind_answers_to_the_address_reached_and_loopback_only():
    app = create_app(make_tiny().eval(), "tiny", LIMITS, Access(bind="0.0.0.0"))
    lan = ("192.168.1.20", 7860)
    assert asgi_request(app, "GET", "/api/health", server=lan)[0] == 200
    assert asgi_request(app, "GET", "/api/health", {"Host": "localhost:7860"}, server=lan)[0] == 200
    assert asgi_request(app, "GET", "/api/health", {"Host": "192.168.1.99:7860"}, server=lan)[0] == 403
    assert asgi_request(app, "GET", "/api/health", {"Host": "attacker.example:7860"}, server=lan)[0] == 403


def test_a_named_bind_answers_to_that_name_not_to_loopback_names():
    app = create_app(make_tiny().eval(), "tiny", LIMITS, Access(bind="myhost.lan"))
    assert asgi_request(app, "GET", "/api/health", {"Host": "myhost.lan:7860"})[0] == 200
    assert asgi_request(app, "GET", "/api/health", {"Host": "localhost:7860"})[0] == 403


def test_two_host_headers_are_refused_on_a_real_server():
    app = create_app(make_tiny().eval(), "tiny", LIMITS)
    with running(app) as port, socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nHost: attacker.example\r\n\r\n".encode())
        assert sock.recv(4096).startswith(b"HTTP/1.1 400")


def test_the_refusal_rules_directly():
    local = Access()
    assert refusal(local, "GET", "http", {"host": "127.0.0.1:1"}, None) is None  # no server address known: no port check
    assert refusal(local, "GET", "http", {}, ("127.0.0.1", 80))[0] == 400
    assert refusal(Access(bind="::1"), "GET", "http", {"host": "[::1]:9"}, ("::1", 9)) is None
    assert refusal(local, "GET", "https", {"host": "localhost"}, ("127.0.0.1", 443)) is None
    assert split_host("[::1]:80") == ("[::1]", 80) and split_host("Photos.LAN") == ("photos.lan", None)


@pytest.mark.parametrize("kwargs, words", [
    ({"hosts": ("a b",)}, "--allow-host 'a b' is not a host name"),
    ({"hosts": ("http://x",)}, "--allow-host"),
    ({"origins": ("example.com",)}, "--allow-origin 'example.com' is not an origin"),
    ({"origins": ("ftp://example.com",)}, "--allow-origin"),
    ({"origins": ("https://example.com/path",)}, "--allow-origin"),
])
def test_access_refuses_names_that_can_never_match(kwargs, words):
    with pytest.raises(AirNetError, match="^" + words):
        Access(**kwargs)


def test_the_cli_passes_allowed_hosts_and_origins_to_serve(monkeypatch):
    seen = {}
    monkeypatch.setattr("airnet_restore.web.server.serve", lambda *args: seen.setdefault("args", args))
    assert main(["serve", "--allow-host", "photos.lan", "--allow-host", "nas:8080", "--allow-origin", "https://tools.example",
                 "--read-timeout", "5", "--uploads", "3"]) == 0
    limits, hosts, origins = seen["args"][4:]
    assert limits.read_timeout == 5 and limits.uploads == 3
    assert hosts == ["photos.lan", "nas:8080"] and origins == ["https://tools.example"]
