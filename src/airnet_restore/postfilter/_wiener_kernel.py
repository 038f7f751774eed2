"""The noise model's Wiener pass on the CPU as a numba loop (imported lazily: numba compiles on first use).

The same pass as the strided-convolution form in ``wiener.py`` (``_torch_pass``), with the 2-D DCT done
separably: each pixel row of a band is transformed once at every patch column (stride apart), and shared
by the ``patch / stride`` patch rows that overlap it; the inverse is taken back to rows patch by patch and
to pixels once per row after the band's patches are summed (it is linear). About a sixth of the
multiplications of the 2-D transforms, and no temporaries outside the band (``benchmarks/wiener_speed.py``).
Bands run in parallel with ``prange`` alone (numba's other parallel transforms off: with them the loop took about
20 s to compile, without them 8-11 s, once, cached on disk); threads of a serial band function ran 1.5x slower.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

FASTMATH = {"reassoc", "contract", "nsz", "arcp"}
# numba's parallel compiler for the ``prange`` over bands only: the band's own loops stay serial code
PRANGE_ONLY = {"prange": True, "comprehension": False, "setitem": False, "reduction": False, "numpy": False,
               "stencil": False, "fusion": False, "inplace_binop": False}


# numba takes a dict of its parallel transforms (its documented ParallelOptions), where its stubs say bool
@njit(parallel=PRANGE_ONLY, cache=True, nogil=True, fastmath=FASTMATH)  # type: ignore[call-overload, unused-ignore]
def wiener_pass(y, guide, basis, consts, keep_mean, stride, band_rows, num, weight):  # pragma: no cover - compiled
    """One Wiener pass over the padded plane ``y`` (Hp, Wp) guided by ``guide`` (same shape): adds each patch's
    filtered, weighted estimate into ``num`` (same shape, zeros) and writes its weight into ``weight`` (the patch
    grid, Gh x Gw). ``basis``: the orthonormal 1-D DCT (frequency x position, ``y``'s dtype); ``consts``: the noise
    variance, the weight's floor 1e-12, 0 and 1 in that dtype (no arithmetic promoted to float64); ``keep_mean``:
    the DC coefficient keeps its gain of 1. Every inner loop runs along a row of patches (contiguous, so it
    vectorizes); a pixel row is first split by column phase (``stride`` interleaved rows). Bands of ``band_rows``
    patch rows run in parallel, even bands then odd ones, so that no two bands being summed at once share a pixel
    row (``band_rows * stride >= patch - stride``, checked by the caller)."""
    patch, (grid_h, grid_w) = basis.shape[0], weight.shape
    s2, floor, zero, one = consts[0], consts[1], consts[2], consts[3]
    phases = y.shape[1] // stride  # a pixel row split by column phase: pixel m * stride + u at [u, m]
    bands = (grid_h + band_rows - 1) // band_rows
    for parity in range(2):
        for half in prange((bands - parity + 1) // 2):
            g0 = (2 * half + parity) * band_rows
            g1 = min(g0 + band_rows, grid_h)
            r0 = g0 * stride
            rows = (g1 - 1) * stride + patch - r0
            ry = np.zeros((rows, patch, grid_w), y.dtype)
            rg = np.zeros((rows, patch, grid_w), y.dtype)
            acc = np.zeros((rows, patch, grid_w), y.dtype)
            coef = np.empty((patch, patch, grid_w), y.dtype)
            gain = np.empty((patch, patch, grid_w), y.dtype)
            scale = np.empty(grid_w, y.dtype)
            split_y = np.empty((stride, phases), y.dtype)
            split_g = np.empty((stride, phases), y.dtype)
            # the row transforms of every pixel row of the band, at every patch column
            for r in range(rows):
                for u in range(stride):
                    for m in range(phases):
                        split_y[u, m] = y[r0 + r, m * stride + u]
                        split_g[u, m] = guide[r0 + r, m * stride + u]
                for k in range(patch):
                    for j in range(patch):
                        d, u, q = basis[k, j], j % stride, j // stride
                        for gx in range(grid_w):
                            ry[r, k, gx] += d * split_y[u, gx + q]
                            rg[r, k, gx] += d * split_g[u, gx + q]
            for gy in range(g0, g1):
                rr = gy * stride - r0
                # the column transforms: the 2-D coefficients of the noisy patches and of the pilot's
                coef[:] = zero
                gain[:] = zero
                for k1 in range(patch):
                    for i in range(patch):
                        d = basis[k1, i]
                        for k2 in range(patch):
                            for gx in range(grid_w):
                                coef[k1, k2, gx] += d * ry[rr + i, k2, gx]
                                gain[k1, k2, gx] += d * rg[rr + i, k2, gx]
                # gain P^2 / (P^2 + sigma^2); BM3D's weight, the inverse of the residual noise (1e12 at most)
                scale[:] = zero
                for k1 in range(patch):
                    for k2 in range(patch):
                        for gx in range(grid_w):
                            p2 = gain[k1, k2, gx] * gain[k1, k2, gx]
                            g = p2 / (p2 + s2)
                            if keep_mean and k1 == 0 and k2 == 0:
                                g = one
                            scale[gx] += g * g
                            coef[k1, k2, gx] *= g
                for gx in range(grid_w):
                    scale[gx] = one / (scale[gx] * s2 + floor)
                    weight[gy, gx] = scale[gx]
                for k1 in range(patch):
                    for k2 in range(patch):
                        for gx in range(grid_w):
                            coef[k1, k2, gx] *= scale[gx]
                # the inverse column transform, summed into the band's rows (still row-transformed)
                for i in range(patch):
                    for k1 in range(patch):
                        d = basis[k1, i]
                        for k2 in range(patch):
                            for gx in range(grid_w):
                                acc[rr + i, k2, gx] += d * coef[k1, k2, gx]
            # the inverse row transform, once per pixel row and patch column
            for r in range(rows):
                split_y[:] = zero
                for k in range(patch):
                    for j in range(patch):
                        d, u, q = basis[k, j], j % stride, j // stride
                        for gx in range(grid_w):
                            split_y[u, gx + q] += d * acc[r, k, gx]
                for u in range(stride):
                    for m in range(phases):
                        num[r0 + r, m * stride + u] += split_y[u, m]


__all__ = ["wiener_pass"]
