"""Atomic file writes: a temporary file beside the target, renamed into place only when complete.

The temporary file is ``.airnet-<pid>-<random>.part``: a marker of this program, a fixed length
whatever the target's name (a 250-byte name still fits), so ``remove_stale_parts`` deletes on a
later run only what a killed process of this program left behind, never a user's ``.x.part``.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from airnet_restore.errors import AirNetError

PART_PREFIX = ".airnet-"
# Our temporary names: ``mkstemp(prefix=".airnet-<pid>-", suffix=".part")``; its random part is 8 of [a-z0-9_].
PART_NAME = re.compile(r"^\.airnet-(\d+)-[a-z0-9_]{8}\.part$")
# A temporary file this old is stale whatever its pid says (pid reused, another host).
STALE_AFTER_S = 3600.0


def atomic_write(path: Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f"{PART_PREFIX}{os.getpid()}-", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file ordinary permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def check_can_write(folder: Path, what: str) -> None:
    """Refuse, before any work, a ``folder`` (existing or to be made) where nothing can be written: its nearest
    existing ancestor must be a folder that takes a new file (a probe made and removed at once). ``what``
    starts the message: the output named as the user gave it."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise AirNetError(f"{what}: {folder} is not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".airnet-probe-", suffix=".part", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise AirNetError(f"{what}: cannot write there: {e.strerror or e}") from None


def remove_stale_parts(folder: Path) -> list[Path]:
    """Delete the temporary files of our naming in ``folder`` whose writer is gone; returns them."""
    removed: list[Path] = []
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = PART_NAME.match(entry.name)
        if not match or not entry.is_file(follow_symlinks=False):
            continue
        try:
            old = now - entry.stat(follow_symlinks=False).st_mtime > STALE_AFTER_S
            if old or not _alive(int(match.group(1))):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            continue  # gone already, or not ours to delete
    return removed


def _alive(pid: int) -> bool:
    """Whether a process ``pid`` runs on this machine (assumed so where it cannot be asked)."""
    if pid == os.getpid() or os.name != "posix":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
