"""A bounded job queue over one model: admission, worker threads, deadlines and cancellation.

A slot is taken when a request is admitted (its upload received whole) and given back only when its work has really
stopped, so a cancelled or timed-out restore still counts until the model lets go of it. A
forward pre-hook on the model ends a cancelled job at its next tile.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import torch

T = TypeVar("T")


class JobCancelled(Exception):
    """Raised inside a job whose client left or whose deadline passed."""


class JobQueue:
    """``workers`` jobs run at once, ``queue`` more wait; ``try_admit`` refuses beyond that."""

    def __init__(self, model: torch.nn.Module, workers: int, queue: int) -> None:
        self.workers = workers
        self.capacity = workers + queue
        self.pending = 0
        self.seconds_per_megapixel: float | None = None
        self.seconds_per_job: float | None = None
        self._lock = threading.Lock()
        self._local = threading.local()
        self._cancels: set[threading.Event] = set()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="airnet-job")
        self._hook = model.register_forward_pre_hook(self._check_cancelled)

    def try_admit(self) -> bool:
        """Take a slot if one is free."""
        with self._lock:
            if self.pending >= self.capacity:
                return False
            self.pending += 1
            return True

    def full(self) -> bool:
        """Whether ``try_admit`` would refuse now (a request checks before receiving an upload in vain)."""
        return self.pending >= self.capacity

    def release(self) -> None:
        """Give back an admitted slot."""
        with self._lock:
            self.pending -= 1

    def retry_after(self) -> int:
        """Seconds until a slot is likely free: the jobs ahead times the measured time per job."""
        per_job = 10.0 if self.seconds_per_job is None else self.seconds_per_job
        return max(1, math.ceil(per_job * self.pending / self.workers))

    def submit(self, fn: Callable[[], T], cancel: threading.Event) -> Future:
        """Run ``fn`` on a worker; the admitted slot is released when it has stopped."""
        with self._lock:
            self._cancels.add(cancel)
        future = self._pool.submit(self._run, fn, cancel)
        future.add_done_callback(lambda _: self._finish(cancel))
        return future

    def record(self, pixels: int, seconds: float) -> None:
        """Update the running estimates of time per job and per megapixel (for Retry-After and the page)."""
        with self._lock:
            self.seconds_per_job = _average(self.seconds_per_job, seconds)
            self.seconds_per_megapixel = _average(self.seconds_per_megapixel, seconds / max(pixels / 1e6, 0.01))

    def cancel_all(self) -> None:
        """Cancel every job: running ones stop at their next tile, waiting ones before they start."""
        with self._lock:
            for cancel in self._cancels:
                cancel.set()

    def close(self) -> None:
        """Cancel every job, wait for them, remove the model hook."""
        self.cancel_all()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._hook.remove()

    def _finish(self, cancel: threading.Event) -> None:
        with self._lock:
            self._cancels.discard(cancel)
        self.release()

    def _run(self, fn: Callable[[], T], cancel: threading.Event) -> T:
        if cancel.is_set():
            raise JobCancelled
        self._local.cancel = cancel
        try:
            return fn()
        finally:
            self._local.cancel = None

    def _check_cancelled(self, _module: torch.nn.Module, _args: tuple) -> None:
        cancel = getattr(self._local, "cancel", None)
        if cancel is not None and cancel.is_set():
            raise JobCancelled


def _average(old: float | None, new: float) -> float:
    """An exponential moving average that starts at the first value."""
    return new if old is None else 0.7 * old + 0.3 * new
