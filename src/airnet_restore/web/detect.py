"""The detected corruption shown beside a result: a hook onto ``airnet_restore.inspect``.

The inspection function is built apart from the server. While it does not exist, or when it
cannot read the loaded weights, nothing is detected and the page shows nothing for it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def find_inspector() -> Callable[..., Any] | None:
    """``airnet_restore.inspect(image, model)`` where this version has it, else None."""
    try:
        from airnet_restore import inspect
    except ImportError:
        return None
    return inspect if callable(inspect) else None


def detect(inspector: Callable[..., Any] | None, path: Path, model: Any) -> str | None:
    """What ``inspector`` found in the image at ``path``, as one line of JSON with scalar fields, or None."""
    if inspector is None:
        return None
    try:
        found = inspector(str(path), model)
    except Exception as e:  # an optional display: it never fails a restore
        log.info("corruption not shown: %s", e)
        return None
    if isinstance(found, list | tuple):
        found = found[0] if found else None
    if dataclasses.is_dataclass(found) and not isinstance(found, type):
        found = dataclasses.asdict(found)
    if not isinstance(found, Mapping):
        return None
    fields = {str(k): v for k, v in found.items() if isinstance(v, str | int | float | bool) and k != "file"}
    return json.dumps(fields) if "type" in fields else None
