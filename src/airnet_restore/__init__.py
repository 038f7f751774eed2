"""airnet-restore: all-in-one image restoration (AirNet, CVPR 2022) for unknown corruption.

The public names are imported on first use (PEP 562), so ``import airnet_restore`` and
``airnet --help`` do not load torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airnet_restore.errors import AirNetError
    from airnet_restore.inference import restore, restore_files
    from airnet_restore.loading import inspect, load_model
    from airnet_restore.models import AirNet, AirNetConfig
    from airnet_restore.variants import list_variants

__all__ = [
    "AirNet",
    "AirNetConfig",
    "AirNetError",
    "__version__",
    "inspect",
    "list_variants",
    "load_model",
    "restore",
    "restore_files",
]

# Public name -> the module that defines it.
_EXPORTS = {
    "AirNet": "airnet_restore.models",
    "AirNetConfig": "airnet_restore.models",
    "AirNetError": "airnet_restore.errors",
    "inspect": "airnet_restore.loading",
    "list_variants": "airnet_restore.variants",
    "load_model": "airnet_restore.loading",
    "restore": "airnet_restore.inference",
    "restore_files": "airnet_restore.inference",
}


def _version() -> str:
    """The installed distribution's version, or ``0+unknown`` in a tree that was never installed."""
    from importlib import metadata

    try:
        return metadata.version("airnet-restore")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def __getattr__(name: str) -> Any:
    """Import a public name (or compute ``__version__``) on first use and keep it."""
    if name == "__version__":
        value: Any = _version()
    elif name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})

