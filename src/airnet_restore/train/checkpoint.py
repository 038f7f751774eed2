"""Full training state on disk: written atomically, read back with ``weights_only=True``."""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from airnet_restore.atomic import atomic_write
from airnet_restore.errors import AirNetError

FORMAT = "airnet-restore-train-state"
PREFIX = "state-"
# What ``Trainer.state`` writes: each entry's type (``ema`` is None without an EMA)
LAYOUT: dict[str, type | tuple[type, ...]] = {
    "model": dict, "optimizer": dict, "scaler": dict, "ema": (dict, type(None)), "epoch": int, "iteration": int,
    "global_step": int, "best": (float, int), "rng": dict, "config": dict,
}


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
    check_state(state, path)
    return state


def check_state(state: Mapping[str, Any], path: Path) -> None:
    """Refuse a state whose entries are missing, of the wrong type, or not finite, before any is used."""
    missing = [k for k in LAYOUT if k not in state]
    if missing:
        raise AirNetError(f"{path}: incomplete training state, no {', '.join(missing)}")
    wrong = [k for k, kind in LAYOUT.items() if not isinstance(state[k], kind) or isinstance(state[k], bool)]
    if wrong:
        raise AirNetError(f"{path}: damaged training state: {', '.join(wrong)} of the wrong type")
    if min(state["epoch"], state["iteration"], state["global_step"]) < 0:
        raise AirNetError(f"{path}: damaged training state: a negative epoch, iteration or step")
    for name in ("model", "ema"):
        tensors = state[name] or {}
        if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in tensors.items()):
            raise AirNetError(f"{path}: damaged training state: {name} holds something other than named tensors")
        bad = first_nonfinite(tensors.items())
        if bad:
            raise AirNetError(f"{path}: the state's {name} tensor {bad} holds NaN or Inf (saved from a diverged run?)")
    if not all(isinstance(state["config"].get(k), dict) for k in ("model", "train")):
        raise AirNetError(f"{path}: damaged training state: its config has no model and train sections")
    if not isinstance(state["rng"].get("torch"), torch.Tensor):
        raise AirNetError(f"{path}: damaged training state: no random generator state")


def first_nonfinite(tensors: Iterable[tuple[str, torch.Tensor]]) -> str | None:
    """The name of the first floating-point tensor holding NaN or Inf, or None (one device synchronisation)."""
    items = [(name, t) for name, t in tensors if t.is_floating_point()]
    if not items:
        return None
    home = items[0][1].device
    finite = torch.stack([torch.isfinite(t).all().to(home) for _, t in items]).cpu()
    return None if bool(finite.all()) else items[int((~finite).nonzero()[0])][0]


def state_path(run_dir: Path, epoch: int, iteration: int) -> Path:
    return run_dir / "checkpoints" / f"{PREFIX}e{epoch:05d}-i{iteration:05d}.pt"


def latest_state(run_dir: Path) -> Path | None:
    """The newest training state of a run folder (names sort by epoch, then iteration)."""
    found = sorted((run_dir / "checkpoints").glob(f"{PREFIX}*.pt"))
    return found[-1] if found else None
