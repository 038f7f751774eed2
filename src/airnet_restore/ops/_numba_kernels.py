"""Numba kernels for the CPU deformable convolution (imported lazily: numba compiles on first use)."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numba
import numpy as np
from numba import njit, prange

from airnet_restore.ops._simd import fma8, load8, store8, zero8


def set_threads(n: int) -> None:
    """Use as many numba threads as torch does (numba cannot exceed its start-up maximum)."""
    # numba.config sets its values at import, from the environment, where type checkers cannot see them;
    # older numba has no type information at all, hence unused-ignore
    numba.set_num_threads(max(1, min(n, numba.config.NUMBA_NUM_THREADS)))  # type: ignore[attr-defined, unused-ignore]


@njit(inline="always", cache=True)
def _reaches_image(py, px, h, w):  # pragma: no cover - compiled
    """Whether a bilinear corner of sample (py, px) can lie in the image (False for NaN).

    A sample at exactly -1 has value 0 (its in-image corners have weight 0) but, as in
    torchvision, a nonzero offset gradient: it matters, since zero offsets put the border taps there.
    """
    return py >= -1.0 and py < h and px >= -1.0 and px < w


@njit(inline="always", cache=True)
def _tap(offset, cols, b, idx, r, q, k, h, w, c):  # pragma: no cover - compiled
    """The sample position (py, px) of tap ``k`` of output pixel (r, q) of image ``b``, and whether it can reach
    the image (``_reaches_image``); one that cannot samples zeros: its columns in row ``idx`` of ``cols`` are 0."""
    py = r - 1 + k // 3 + offset[b, r, q, 2 * k]
    px = q - 1 + k % 3 + offset[b, r, q, 2 * k + 1]
    reaches = _reaches_image(py, px, h, w)
    if not reaches:
        cols[b, idx, k * c : (k + 1) * c] = 0.0
    return py, px, reaches


@njit(inline="always", cache=True)
def _corners(py, px, h, w):  # pragma: no cover - compiled
    """Bilinear corners of the in-image sample (py, px): indices clamped into the image and 0/1 flags.

    Returns (y_lo, y_hi, x_lo, x_hi, ly, lx, in_y_lo, in_y_hi, in_x_lo, in_x_hi): a corner outside
    the image gets a safe index and flag 0, so it contributes (and receives) nothing, as in torchvision.
    """
    fy = math.floor(py)
    fx = math.floor(px)
    ly = py - fy
    lx = px - fx
    y_lo = int(fy)
    x_lo = int(fx)
    y_hi = y_lo + 1
    x_hi = x_lo + 1
    in_y_lo = 1.0 if y_lo >= 0 else 0.0
    in_y_hi = 1.0 if y_hi <= h - 1 else 0.0
    in_x_lo = 1.0 if x_lo >= 0 else 0.0
    in_x_hi = 1.0 if x_hi <= w - 1 else 0.0
    return (max(y_lo, 0), min(y_hi, h - 1), max(x_lo, 0), min(x_hi, w - 1), ly, lx,
            in_y_lo, in_y_hi, in_x_lo, in_x_hi)


@njit(inline="always", cache=True)
def _sample_pixel(xb, taps, mods, r, q, h, w, dst, c, real):  # pragma: no cover - compiled
    """The modulated, bilinearly sampled 3x3 taps of output pixel (r, q) into ``dst`` (9*c values, tap-major then
    channel): ``xb`` (H, W, C) one image, ``taps`` its 18 offsets and ``mods`` its 9 mask values at (r, q).
    Zero padding: a sample at row < -1 or >= H (or column < -1 or >= W) is 0, and out-of-image neighbours
    contribute 0, as in torchvision. ``real`` is the arrays' precision, which the bilinear weights are cast to
    (not promoted to float64), so the channel loop becomes vector instructions."""
    for k in range(9):
        base = k * c
        py = r - 1 + k // 3 + taps[2 * k]
        px = q - 1 + k % 3 + taps[2 * k + 1]
        if not _reaches_image(py, px, h, w):
            for ch in range(c):
                dst[base + ch] = 0.0
            continue
        m = mods[k]
        y_lo, y_hi, x_lo, x_hi, ly, lx, iyl, iyh, ixl, ixh = _corners(py, px, h, w)
        w1 = real((1.0 - ly) * (1.0 - lx) * m * iyl * ixl)
        w2 = real((1.0 - ly) * lx * m * iyl * ixh)
        w3 = real(ly * (1.0 - lx) * m * iyh * ixl)
        w4 = real(ly * lx * m * iyh * ixh)
        v1 = xb[y_lo, x_lo]
        v2 = xb[y_lo, x_hi]
        v3 = xb[y_hi, x_lo]
        v4 = xb[y_hi, x_hi]
        for ch in range(c):
            dst[base + ch] = w1 * v1[ch] + w2 * v2[ch] + w3 * v3[ch] + w4 * v4[ch]


@functools.cache
def im2col_kernel(c: int, dtype: np.dtype, parallel: bool) -> Callable[..., None]:
    """The im2col kernel for ``c`` channels of ``dtype``: ``kernel(x, offset, mask, y0, nrows, cols)`` writes the
    modulated, bilinearly sampled 3x3 taps of rows [y0, y0+nrows) into ``cols`` (``_sample_pixel``).

    x: (B, H, W, C), offset: (B, H, W, 18), mask: (B, H, W, 9), all channels-last (any strides);
    cols: (B, >= nrows*W, 9*C), row = pixel, columns = tap-major then channel.

    One compiled kernel per channel count, dtype and threading (cached on disk): ``c`` a compile-time
    constant, so the channel loop becomes vector instructions (benchmarks/README.md, "The deformable
    convolution's inference fix"). Runs parallel over pixels for the bf16 product and for channel counts
    that ``fused_kernel`` does not take, serially in training (why: deform_conv.py, _NumbaDeformConv).
    """
    real = np.float64 if np.dtype(dtype) == np.float64 else np.float32
    loop = prange if parallel else range

    def im2col(x, offset, mask, y0, nrows, cols):  # pragma: no cover - compiled
        nb, h, w, _ = x.shape
        n = nrows * w
        for flat in loop(nb * n):
            b = flat // n
            idx = flat % n
            r = y0 + idx // w
            q = idx % w
            _sample_pixel(x[b], offset[b, r, q], mask[b, r, q], r, q, h, w, cols[b, idx], c, real)

    return njit(parallel=parallel, cache=True, nogil=True)(im2col)


# Output channels one pass of ``fused_kernel``'s product computes: three vectors of eight, for four pixels
# at a time, are twelve accumulators in registers (of sixteen on AVX2).
FUSED_GROUP = 24


@functools.cache
def fused_kernel(c: int) -> Callable[..., None]:
    """The whole float32 deformable convolution at inference for ``c`` input channels, sampling and product
    fused: ``kernel(x, offset, mask, groups, out)``.

    x, offset, mask as in ``im2col_kernel``; ``groups``: the (9*C, O) weight matrix cut into groups of
    ``FUSED_GROUP`` output channels, zero-padded, each flattened: (ceil(O / 24), 9*C*24), contiguous;
    out: (B*H, W*O), contiguous, O a multiple of 8. Parallel over image rows; four pixels at a time are sampled
    into a buffer that stays in the core's first-level cache and multiplied there by a register-blocked
    product (``_simd``), so the columns are never written to memory and read back (im2col + ``torch.mm``:
    benchmarks/README.md, "The deformable convolution fused").
    """
    k9 = 9 * c
    real = np.float32

    def fused(x, offset, mask, groups, out):  # pragma: no cover - compiled
        nb, h, w, _ = x.shape
        o = out.shape[1] // w
        for row in prange(nb * h):
            b = row // h
            r = row - b * h
            xb = x[b]
            orow = out[row]
            buf = np.zeros((4, k9), dtype=np.float32)  # four pixels' columns (a row's last block: fewer)
            p0, p1, p2, p3 = buf[0], buf[1], buf[2], buf[3]
            for q0 in range(0, w, 4):
                npx = min(4, w - q0)
                for p in range(npx):
                    _sample_pixel(xb, offset[b, r, q0 + p], mask[b, r, q0 + p], r, q0 + p, h, w, buf[p], c, real)
                for g in range(groups.shape[0]):
                    wg = groups[g]
                    a00, a01, a02 = zero8(), zero8(), zero8()
                    a10, a11, a12 = zero8(), zero8(), zero8()
                    a20, a21, a22 = zero8(), zero8(), zero8()
                    a30, a31, a32 = zero8(), zero8(), zero8()
                    for j in range(k9):
                        w0 = load8(wg, j * FUSED_GROUP)
                        w1 = load8(wg, j * FUSED_GROUP + 8)
                        w2 = load8(wg, j * FUSED_GROUP + 16)
                        s = p0[j]
                        a00, a01, a02 = fma8(s, w0, a00), fma8(s, w1, a01), fma8(s, w2, a02)
                        s = p1[j]
                        a10, a11, a12 = fma8(s, w0, a10), fma8(s, w1, a11), fma8(s, w2, a12)
                        s = p2[j]
                        a20, a21, a22 = fma8(s, w0, a20), fma8(s, w1, a21), fma8(s, w2, a22)
                        s = p3[j]
                        a30, a31, a32 = fma8(s, w0, a30), fma8(s, w1, a31), fma8(s, w2, a32)
                    vectors = min(3, (o - g * FUSED_GROUP) // 8)  # the last group may hold 8 or 16 real channels
                    at = q0 * o + g * FUSED_GROUP
                    _store_pixel(orow, at, vectors, a00, a01, a02)
                    if npx > 1:
                        _store_pixel(orow, at + o, vectors, a10, a11, a12)
                    if npx > 2:
                        _store_pixel(orow, at + 2 * o, vectors, a20, a21, a22)
                    if npx > 3:
                        _store_pixel(orow, at + 3 * o, vectors, a30, a31, a32)

    return njit(parallel=True, cache=True, nogil=True)(fused)


@njit(inline="always", cache=True)
def _store_pixel(orow, at, vectors, v0, v1, v2):  # pragma: no cover - compiled
    """The first ``vectors`` (1-3) of one pixel's three accumulators into ``orow[at:]``."""
    store8(orow, at, v0)
    if vectors > 1:
        store8(orow, at + 8, v1)
    if vectors > 2:
        store8(orow, at + 16, v2)


@njit(cache=True, nogil=True, fastmath={"reassoc", "contract", "nsz", "arcp"})
def backward_deform3x3(x, offset, mask, gcols, y0, nrows, cols, grad_offset, grad_mask, grad_x):  # pragma: no cover
    """Backward of the ``im2col_kernel`` for rows [y0, y0+nrows), given ``gcols`` = dLoss/dcols.

    Shapes as in ``im2col_kernel``. Writes ``cols`` again (for the weight gradient),
    ``grad_offset`` (B, H, W, 18) and ``grad_mask`` (B, H, W, 9) for these rows, and adds dLoss/dx
    into ``grad_x`` (B, H, W, C). Serial: the scatter into ``grad_x`` needs no private copies.
    Each channel loop touches few arrays so that LLVM vectorises it (sums may be reassociated:
    fastmath without nnan/ninf).
    """
    nb, h, w, c = x.shape
    n = nrows * w
    # Per-tap coefficients in the arrays' own precision (float64 literals would promote the
    # channel loops): bilinear weights a1-a4 (outside corners 0), in-image flags e1-e4, the
    # fractions ly, lx, the mask m, and a zero to start the sums.
    coef = np.zeros(12, dtype=x.dtype)
    for b in range(nb):
        acc = grad_x[b]
        xb = x[b]
        for idx in range(n):
            r = y0 + idx // w
            q = idx % w
            for k in range(9):
                base = k * c
                py, px, reaches = _tap(offset, cols, b, idx, r, q, k, h, w, c)
                if not reaches:
                    grad_offset[b, r, q, 2 * k] = 0.0
                    grad_offset[b, r, q, 2 * k + 1] = 0.0
                    grad_mask[b, r, q, k] = 0.0
                    continue
                y_lo, y_hi, x_lo, x_hi, ly, lx, iyl, iyh, ixl, ixh = _corners(py, px, h, w)
                coef[0] = (1.0 - ly) * (1.0 - lx) * iyl * ixl
                coef[1] = (1.0 - ly) * lx * iyl * ixh
                coef[2] = ly * (1.0 - lx) * iyh * ixl
                coef[3] = ly * lx * iyh * ixh
                coef[4] = iyl * ixl
                coef[5] = iyl * ixh
                coef[6] = iyh * ixl
                coef[7] = iyh * ixh
                coef[8] = ly
                coef[9] = lx
                coef[10] = mask[b, r, q, k]
                a1, a2, a3, a4, e1, e2, e3, e4, fy, fx, m = (
                    coef[0], coef[1], coef[2], coef[3], coef[4], coef[5], coef[6], coef[7], coef[8], coef[9], coef[10]
                )
                v1 = xb[y_lo, x_lo]
                v2 = xb[y_lo, x_hi]
                v3 = xb[y_hi, x_lo]
                v4 = xb[y_hi, x_hi]
                g = gcols[b, idx, base : base + c]
                col = cols[b, idx, base : base + c]
                gm = coef[11]
                gy = coef[11]
                gx = coef[11]
                for ch in range(c):
                    u1 = v1[ch] * e1
                    u2 = v2[ch] * e2
                    u3 = v3[ch] * e3
                    u4 = v4[ch] * e4
                    s = a1 * u1 + a2 * u2 + a3 * u3 + a4 * u4
                    col[ch] = m * s
                    gm += g[ch] * s
                    # d(sample)/d(py) and d(sample)/d(px), outside corners counting as 0.
                    gy += g[ch] * ((u3 - u1) + fx * ((u4 - u3) - (u2 - u1)))
                    gx += g[ch] * ((u2 - u1) + fy * ((u4 - u3) - (u2 - u1)))
                # One loop per corner: a single store target each, so each vectorises.
                b1 = a1 * m
                b2 = a2 * m
                b3 = a3 * m
                b4 = a4 * m
                r1 = acc[y_lo, x_lo]
                r2 = acc[y_lo, x_hi]
                r3 = acc[y_hi, x_lo]
                r4 = acc[y_hi, x_hi]
                for ch in range(c):
                    r1[ch] += b1 * g[ch]
                for ch in range(c):
                    r2[ch] += b2 * g[ch]
                for ch in range(c):
                    r3[ch] += b3 * g[ch]
                for ch in range(c):
                    r4[ch] += b4 * g[ch]
                grad_offset[b, r, q, 2 * k] = m * gy
                grad_offset[b, r, q, 2 * k + 1] = m * gx
                grad_mask[b, r, q, k] = gm


__all__ = ["FUSED_GROUP", "backward_deform3x3", "fused_kernel", "im2col_kernel", "set_threads"]
