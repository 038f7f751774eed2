"""Let idle OpenMP threads sleep instead of spinning, for the ``airnet`` command: applied before torch loads.

PyTorch's CPU kernels run on an OpenMP thread pool whose threads, between two parallel regions, spin on
the CPU for a while before they sleep. On a machine with other work that spinning takes the cores from
the threads that have work, and a restore slows down several-fold: on the project's shared 2-core machine
at load average 10-13, a noisy 512x512 photo took 76-98 s (wall) through ``airnet restore`` with the runtime's
default and 54-60 s with passive waiting, and ``restore_tensor`` of a 256x256 one 42-45 s against 7 s
(benchmarks/README.md, "Waiting threads"). OpenMP reads the policy once, when torch's library loads, so the command sets it in its
environment first; a policy the user sets (``OMP_WAIT_POLICY``, ``GOMP_SPINCOUNT``) is kept, and
``AIRNET_PASSIVE_THREADS=0`` keeps the runtime's default. Code that imports the package as a library
chooses for itself (``OMP_WAIT_POLICY=PASSIVE`` in the environment before Python starts).
"""

from __future__ import annotations

import os
import sys

OPT_OUT = "AIRNET_PASSIVE_THREADS"
USER_SETTINGS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


def wait_passively() -> bool:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` for this process unless the user chose a policy, opted out, or torch is
    already loaded (too late: the runtime has read its policy); returns whether it was set."""
    if os.environ.get(OPT_OUT, "1") == "0" or any(v in os.environ for v in USER_SETTINGS) or "torch" in sys.modules:
        return False
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return True
