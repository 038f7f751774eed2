"""``airnet serve``: a local web page and HTTP API over the restore path (extra ``[web]``).

This module imports nothing heavy: the CLI reads its defaults from here. ``app`` builds the
FastAPI application, ``server`` loads the model and runs uvicorn, ``hosts`` decides which
Host names and origins a request may come with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from airnet_restore.errors import AirNetError
from airnet_restore.web.hosts import parse_origin, split_host

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860

# Limits field -> the `airnet serve` option that sets it, named in refusals.
OPTIONS = {"max_bytes": "--max-upload-mb", "max_pixels": "--max-pixels", "workers": "--workers", "queue": "--queue",
           "uploads": "--uploads", "timeout": "--timeout", "read_timeout": "--read-timeout"}


@dataclass(frozen=True)
class Limits:
    """What one server accepts and how much work it takes on at once.

    ``max_bytes``: upload size; ``max_pixels``: image size (width x height); ``workers``: jobs
    restored at the same time; ``queue``: jobs waiting beyond those (more get 503); ``uploads``:
    uploads received at the same time (more get 503), so slow senders cannot hold the job slots
    or fill the disk; ``read_timeout``: seconds a client has to send its whole upload (408
    beyond); ``timeout``: seconds from admission (upload received) to the result.
    """

    max_bytes: int = 100 * 2**20
    max_pixels: int = 50_000_000
    workers: int = 1
    queue: int = 4
    uploads: int = 8
    timeout: float = 900.0
    read_timeout: float = 60.0

    def __post_init__(self) -> None:
        """Refuse a value the server could not run with (zero workers, a NaN timeout) in one line."""
        for f in fields(self):
            value = getattr(self, f.name)
            lowest = 0 if f.name == "queue" else 1
            if f.type == "float":
                ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
                wanted = "a finite number of seconds above 0"
            else:
                ok = isinstance(value, int) and not isinstance(value, bool) and value >= lowest
                wanted = f"a whole number of at least {lowest}"
            if not ok:
                raise AirNetError(f"{f.name} ({OPTIONS[f.name]}) must be {wanted}, not {value!r}")


@dataclass(frozen=True)
class Access:
    """Which requests the server obeys: ``bind`` is the address it listens on, ``hosts`` more names the
    Host header may carry (``--allow-host``, behind a proxy or on a LAN name), ``origins`` other sites
    whose pages may call the API (``--allow-origin``). Everything else from another site is refused.
    """

    bind: str = DEFAULT_HOST
    hosts: tuple[str, ...] = ()
    origins: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        """Refuse a name or origin that could never match, in one line."""
        for name in self.hosts:
            try:
                split_host(name)
            except ValueError:
                raise AirNetError(f"--allow-host {name!r} is not a host name (NAME or NAME:PORT, IPv6 in brackets)") from None
        for origin in self.origins:
            try:
                parse_origin(origin)
            except ValueError:
                raise AirNetError(f"--allow-origin {origin!r} is not an origin such as http://example.com:8080") from None
