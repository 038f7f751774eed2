"""Which requests the server obeys: the Host header and the requesting site (issue 34).

A page on another site must not drive the API (cross-site request forgery), and a name of the
attacker's that resolves to this machine (DNS rebinding) must not reach it. So the Host header
must name the server as it was started (loopback names on loopback, the bind address, or an
``--allow-host`` name), and a request that a browser marks as coming from another origin is
refused unless that origin is an ``--allow-origin``. Standard library only: the CLI imports this.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airnet_restore.web import Access

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
WILDCARDS = ("", "0.0.0.0", "::")
_HOST = re.compile(r"(\[[0-9a-f:.]+\]|[a-z0-9_-]+(?:\.[a-z0-9_-]+)*)(?::([0-9]{1,5}))?")
_ORIGIN = re.compile(r"(https?)://(.+?)/?")
DEFAULT_PORTS = {"http": 80, "https": 443}


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, IPv6 with or without brackets) is this machine only."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def url_name(host: str) -> str:
    """``host`` as it appears in a URL or a Host header: lower case, an IPv6 address in brackets."""
    host = host.lower()
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def split_host(value: str) -> tuple[str, int | None]:
    """(name, port or None) of a Host header or ``--allow-host`` value; ValueError when it is not one."""
    match = _HOST.fullmatch(value.lower())
    if not match:
        raise ValueError(value)
    name, port = match[1], match[2]
    if name.startswith("["):
        ipaddress.IPv6Address(name[1:-1])  # ValueError when not an address
    if port is not None and int(port) > 65535:
        raise ValueError(value)
    return name, None if port is None else int(port)


def parse_origin(value: str) -> tuple[str, str, int]:
    """(scheme, name, port) of an origin such as ``http://localhost:7860``; ValueError when it is not one."""
    match = _ORIGIN.fullmatch(value.lower())
    if not match:
        raise ValueError(value)
    name, port = split_host(match[2])
    return match[1], name, DEFAULT_PORTS[match[1]] if port is None else port


def host_names(bind: str, local_address: str | None) -> set[str]:
    """The names a Host header may carry for a server listening on ``bind``, reached at ``local_address``.

    Loopback names on a loopback (or every-address) bind; the bind address itself; on an
    every-address bind (0.0.0.0, ::) also the address the connection arrived at.
    """
    names: set[str] = set()
    if bind in WILDCARDS:
        names.update(LOOPBACK_NAMES)
        if local_address:
            names.add(url_name(local_address))
    else:
        names.add(url_name(bind))
        if is_loopback(bind):
            names.update(LOOPBACK_NAMES)
    return names


def refusal(access: Access, method: str, scheme: str, headers: Mapping[str, str],
            server: tuple[str, int] | None) -> tuple[int, str] | None:
    """(status, message) when a request must be refused, else None.

    ``headers`` are the request's (lower-case names), ``server`` the local address and port the
    connection arrived at (None where unknown: no port check then).
    """
    host = headers.get("host")
    if not host:
        return 400, "a Host header is required"
    try:
        name, port = split_host(host)
    except ValueError:
        return 400, "the Host header is not a host name"
    own_port = DEFAULT_PORTS.get(scheme, 80) if port is None else port
    if not any(_matches(allowed, name, own_port) for allowed in access.hosts):
        if name not in host_names(access.bind, None if server is None else server[0]) or (
                server is not None and own_port != server[1]):
            return 403, f"this server does not answer to the name {_quoted(host)}; start it with --allow-host NAME to add one"
    origin = headers.get("origin")
    if origin is not None:
        try:
            parsed = parse_origin(origin)
        except ValueError:
            parsed = None  # "null" (a sandboxed page or a file) or garbage: another origin
        if parsed != (scheme, name, own_port) and parsed not in {*map(parse_origin, access.origins)}:
            return 403, f"cross-origin request from {_quoted(origin)} refused; start the server with --allow-origin ORIGIN to allow a site"
        return None
    site, mode = headers.get("sec-fetch-site", ""), headers.get("sec-fetch-mode", "")
    if site in ("cross-site", "same-site") and not (method in ("GET", "HEAD") and mode == "navigate"):
        return 403, "cross-site request refused (Sec-Fetch-Site); only this server's own page may call the API"
    return None


def _matches(allowed: str, name: str, port: int) -> bool:
    """Whether an ``--allow-host`` value (NAME: any port, NAME:PORT: that port) covers ``name``:``port``."""
    allowed_name, allowed_port = split_host(allowed)
    return allowed_name == name and allowed_port in (None, port)


def _quoted(text: str) -> str:
    """Text a client sent, shortened for an error message."""
    return repr(text if len(text) <= 80 else text[:77] + "...")
