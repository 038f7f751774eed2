"""Numba kernels for the CPU deformable convolution (imported lazily: numba compiles on first use)."""

from __future__ import annotations

import math

import numba
from numba import njit, prange


def set_threads(n: int) -> None:
    """Use as many numba threads as torch does (numba cannot exceed its start-up maximum)."""
    numba.set_num_threads(max(1, min(n, numba.config.NUMBA_NUM_THREADS)))


@njit(parallel=True, cache=True, nogil=True)
def im2col_deform3x3(x, offset, mask, y0, nrows, cols):  # pragma: no cover - compiled
    """Write the modulated, bilinearly sampled 3x3 taps of rows [y0, y0+nrows) into ``cols``.

    x: (H, W, C), offset: (H, W, 18), mask: (H, W, 9), all channels-last (any strides);
    cols: (>= nrows*W, 9*C), row = pixel, columns = tap-major then channel.
    Zero padding: a sample at row <= -1 or >= H (or column <= -1 or >= W) is 0,
    and out-of-image neighbours contribute 0, as in torchvision.
    """
    h, w, c = x.shape
    for idx in prange(nrows * w):
        r = y0 + idx // w
        q = idx % w
        for k in range(9):
            base = k * c
            py = r - 1 + k // 3 + offset[r, q, 2 * k]
            px = q - 1 + k % 3 + offset[r, q, 2 * k + 1]
            if py <= -1.0 or py >= h or px <= -1.0 or px >= w:
                for ch in range(c):
                    cols[idx, base + ch] = 0.0
                continue
            m = mask[r, q, k]
            fy = math.floor(py)
            fx = math.floor(px)
            ly = py - fy
            lx = px - fx
            y_lo = int(fy)
            x_lo = int(fx)
            y_hi = y_lo + 1
            x_hi = x_lo + 1
            w1 = (1.0 - ly) * (1.0 - lx) * m
            w2 = (1.0 - ly) * lx * m
            w3 = ly * (1.0 - lx) * m
            w4 = ly * lx * m
            # Out-of-image neighbours: weight 0 and a safe index.
            if y_lo < 0:
                w1 = 0.0
                w2 = 0.0
                y_lo = 0
            if y_hi > h - 1:
                w3 = 0.0
                w4 = 0.0
                y_hi = h - 1
            if x_lo < 0:
                w1 = 0.0
                w3 = 0.0
                x_lo = 0
            if x_hi > w - 1:
                w2 = 0.0
                w4 = 0.0
                x_hi = w - 1
            for ch in range(c):
                cols[idx, base + ch] = (
                    w1 * x[y_lo, x_lo, ch] + w2 * x[y_lo, x_hi, ch] + w3 * x[y_hi, x_lo, ch] + w4 * x[y_hi, x_hi, ch]
                )


__all__ = ["im2col_deform3x3", "set_threads"]
