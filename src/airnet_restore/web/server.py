"""Run the web app: load the model once, warm it up, listen (loopback unless told otherwise)."""

from __future__ import annotations

import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from airnet_restore.constants import DEFAULT_VARIANT
from airnet_restore.errors import AirNetError
from airnet_restore.web import DEFAULT_HOST, DEFAULT_PORT, Access, Limits
from airnet_restore.web.hosts import is_loopback

if TYPE_CHECKING:
    import uvicorn
    from fastapi import FastAPI


def exposure_warning(host: str) -> str | None:
    """A warning when ``host`` lets other machines reach the server, else None."""
    if is_loopback(host):
        return None
    return (f"warning: listening on {host}: anyone who can reach this machine on that address can upload images "
            f"and use its processor; there is no authentication (the default --host {DEFAULT_HOST} keeps it local)")


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on ``host``:``port`` (0: any free port); a one-line error when that fails."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise AirNetError(f"--port must be a whole number from 0 to 65535 (0 picks a free one), not {port!r}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as e:
        sock.close()
        raise AirNetError(f"cannot listen on {host}:{port}: {e.strerror or e}; choose another --port or --host") from None
    return sock


def stopping_server(app: FastAPI) -> uvicorn.Server:
    """A uvicorn server for ``app`` (from ``create_app``) that, when told to stop (Ctrl+C, SIGTERM), first
    answers the requests in flight 503 (``app.state.stop``) so none ends in a traceback, then waits for them."""
    import uvicorn

    class Server(uvicorn.Server):
        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            app.state.stop()
            await super().shutdown(sockets)

    return Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5))


def serve(
    weights: str = DEFAULT_VARIANT,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    device: str = "auto",
    limits: Limits = Limits(),
    allow_hosts: Sequence[str] = (),
    allow_origins: Sequence[str] = (),
) -> None:
    """Serve the page and the API until interrupted; prints the address once the model is ready.

    The Host header must be a loopback name (on a loopback ``host``), ``host`` itself or one of
    ``allow_hosts``; pages of other sites may call the API only from ``allow_origins``.
    """
    access = Access(host, tuple(allow_hosts), tuple(allow_origins))
    try:
        import uvicorn  # noqa: F401 - checked here for the message below; stopping_server runs it

        from airnet_restore.web.app import create_app
    except ImportError as e:
        raise AirNetError(f"airnet serve needs the web extra ({e.name} is missing): pip install 'airnet-restore[web]'") from None
    if str(weights).endswith(".onnx"):
        raise AirNetError("airnet serve runs PyTorch weights: give a variant, .safetensors or .pth with --weights")
    with listen(host, port) as sock:  # closed when loading the model fails, too
        import torch

        from airnet_restore.inference import restore_tensor
        from airnet_restore.loading import load_model

        model = load_model(weights, device=device)
        restore_tensor(model, torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0)))  # compiles kernels once
        name = str(weights) if not Path(str(weights)).suffix else Path(str(weights)).name
        app = create_app(model, name, limits, access)
        bound_host, bound_port = sock.getsockname()[:2]
        url_host = f"[{bound_host}]" if ":" in bound_host else bound_host
        if warning := exposure_warning(host):
            print(warning, file=sys.stderr)
        print(f"airnet serve: http://{url_host}:{bound_port}/ (model {name} on {model.device}; Ctrl+C stops)", flush=True)
        stopping_server(app).run(sockets=[sock])
