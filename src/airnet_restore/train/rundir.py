"""Run folders: training writes only into a new or empty folder, or into one it made itself.

A run folder is recognised by ``MARKER``, a file written when training creates or first fills it;
a folder holding other files (a user's ``config.yaml``, weights, photos) is refused unless the run
is resumed there, so no file the user owns is overwritten.
"""

from __future__ import annotations

import os
from pathlib import Path

from airnet_restore.errors import AirNetError

MARKER = ".airnet-run"
MARKER_TEXT = "a run folder of `airnet train`: its files are replaced by later runs here\n"


def check_run_dir(path: Path, resume: bool) -> None:
    """Refuse ``path`` as a run folder if training there would overwrite files it did not write.

    Missing or empty: fine. Marked as ours: fine, but its checkpoints are only continued (``resume``),
    never started over. Anything else: refused unless ``resume``.
    """
    if not path.exists():
        if path.is_symlink():
            raise AirNetError(f"run folder {path} is a broken symbolic link")
        return
    if not path.is_dir():
        raise AirNetError(f"run folder {path} is a file, not a folder; choose another --run-dir")
    try:
        entries = sorted(os.listdir(path))
    except OSError as e:
        raise AirNetError(f"run folder {path}: cannot read it: {e.strerror or e}") from None
    if resume or not entries:
        return
    if MARKER not in entries:
        shown = ", ".join(entries[:3]) + (" ..." if len(entries) > 3 else "")
        raise AirNetError(f"run folder {path} holds files airnet train did not write ({shown}); "
                          "choose a new or empty --run-dir, or pass --resume to continue a run there")
    if (path / "checkpoints").is_dir():
        raise AirNetError(f"run folder {path} already holds checkpoints; pass --resume auto to continue or --run-dir for a new run")


def open_run_dir(path: Path) -> None:
    """Create the run folder and its marker; any failure (read-only disk, no permission) is one line."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        marker = path / MARKER
        if not marker.is_file():
            marker.write_text(MARKER_TEXT)
    except OSError as e:
        raise AirNetError(f"run folder {path}: cannot create or write it: {e.strerror or e}") from None


def write_run_file(path: Path, text: str, append: bool = False) -> None:
    """Write (or append) ``text`` to a file of the run folder; an ``OSError`` is one line naming it."""
    open_run_dir(path.parent)
    try:
        with open(path, "a" if append else "w") as f:
            f.write(text)
    except OSError as e:
        raise AirNetError(f"{path}: cannot write it: {e.strerror or e}") from None
