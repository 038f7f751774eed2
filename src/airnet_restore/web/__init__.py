"""``airnet serve``: a local web page and HTTP API over the restore path (extra ``[web]``).

This module imports nothing heavy: the CLI reads its defaults from here. ``app`` builds the
FastAPI application, ``server`` loads the model and runs uvicorn.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860


@dataclass(frozen=True)
class Limits:
    """What one server accepts and how much work it takes on at once.

    ``max_bytes``: upload size; ``max_pixels``: image size (width x height); ``workers``: jobs
    restored at the same time; ``queue``: jobs waiting beyond those (more get 503);
    ``timeout``: seconds from admission to the result (upload, wait and restore).
    """

    max_bytes: int = 100 * 2**20
    max_pixels: int = 50_000_000
    workers: int = 1
    queue: int = 4
    timeout: float = 900.0
