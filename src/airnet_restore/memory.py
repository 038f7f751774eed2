"""Keep freed tensor memory inside the process (glibc malloc settings), applied once.

By default glibc hands every large buffer (above a 128 KiB-32 MiB threshold) back to the kernel
on ``free`` and trims the heap eagerly, so each new tensor is page-faulted in again: on a CPU
that was about 40 % of the time of a training step or of restoring a photo. Serving large
buffers from the heap and never trimming it trades a higher peak resident set for far less
system time (numbers in benchmarks/README.md). Elsewhere (macOS, musl) this is a no-op.
"""

from __future__ import annotations

import ctypes
import logging
import os

log = logging.getLogger(__name__)

# mallopt parameters, from glibc's malloc.h.
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3

# mallopt takes a C int: 2 GiB - 1 is the largest threshold it accepts.
SETTINGS = ((M_MMAP_THRESHOLD, 2**31 - 1), (M_TRIM_THRESHOLD, 2**31 - 1), (M_TOP_PAD, 1 << 30))
# Set to 0 to keep glibc's defaults; malloc settings of the user's own (environment) are always kept.
OPT_OUT = "AIRNET_MALLOC_TUNING"
USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_")

_state: dict[str, bool] = {}


def tune_allocator() -> bool:
    """Apply the malloc settings above once per process; returns whether they are in effect."""
    if "tuned" not in _state:
        _state["tuned"] = _apply()
    return _state["tuned"]


def _apply() -> bool:
    if os.environ.get(OPT_OUT, "1") == "0":
        log.debug("malloc left at glibc's defaults (%s=0)", OPT_OUT)
        return False
    if any(v in os.environ for v in USER_SETTINGS) or "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", ""):
        log.debug("malloc left as the environment sets it")
        return False
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        libc = None
    if libc is None or not hasattr(libc, "gnu_get_libc_version"):  # glibc only: musl's mallopt is a stub, macOS has none
        log.debug("not glibc: malloc left as it is")
        return False
    mallopt = libc.mallopt
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    ok = all(mallopt(param, value) == 1 for param, value in SETTINGS)
    log.debug("glibc malloc tuned (mmap threshold 2 GiB, no trimming): %s", ok)
    return ok
