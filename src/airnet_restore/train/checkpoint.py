"""Full training state on disk: written atomically, read back with ``weights_only=True``."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from airnet_restore.atomic import atomic_write
from airnet_restore.errors import AirNetError

FORMAT = "airnet-restore-train-state"
PREFIX = "state-"


def save_state(path: Path, state: dict[str, Any]) -> Path:
    """Write a training state (tensors, numbers, strings, lists and dicts only).

    A full or read-only disk is a one-line ``AirNetError``; the states written before are kept.
    """
    buffer = io.BytesIO()  # torch.save into a file hides ENOSPC behind "unexpected pos"; Python's write says it
    torch.save({"format": FORMAT, **state}, buffer)
    try:
        return atomic_write(path, lambda tmp: tmp.write_bytes(buffer.getbuffer()))
    except OSError as e:
        why = e.strerror or e
        raise AirNetError(f"{path}: cannot write the training state: {why}; the states written before are kept") from None


def load_state(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise AirNetError(f"training state not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure to read means the file is unusable
        raise AirNetError(f"{path}: not a readable training state ({type(e).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise AirNetError(f"{path}: not an airnet-restore training state (use --weights for model weights)")
    return state


def state_path(run_dir: Path, epoch: int, iteration: int) -> Path:
    return run_dir / "checkpoints" / f"{PREFIX}e{epoch:05d}-i{iteration:05d}.pt"


def latest_state(run_dir: Path) -> Path | None:
    """The newest training state of a run folder (names sort by epoch, then iteration)."""
    found = sorted((run_dir / "checkpoints").glob(f"{PREFIX}*.pt"))
    return found[-1] if found else None
