"""The noise model's estimate of an image: an empirical Wiener filter in local DCTs, guided by a pilot.

Where an image carries only white Gaussian noise of a known sigma, the best linear estimate of
each coefficient ``Y`` of an 8x8 DCT of the noisy image is ``Y P^2 / (P^2 + sigma^2)``, with ``P``
the coefficient of the clean image. A restorer's output stands in for the clean image (the
pilot), as the second step of BM3D uses its first: the filter keeps the noisy image's coefficients
where the pilot finds signal well above the noise (its tones, its fine detail) and removes them
where it does not. Patches overlap (stride 2) and are averaged with BM3D's weights (the inverse of
each patch's residual noise variance); colours are filtered in an orthonormal opponent space,
where white noise stays white with the same sigma. The brightness's local means (the DC of its
patches) are kept as they are: a mean is no zero-mean signal, and the filter would shrink it
towards black, darkening noisy shadows (a flat 0.02 under noise of sigma 50 came out at 0.006).
Each further pass takes the one before as its pilot: three passes, chosen on training photos
(``benchmarks/anchor.py``: one pass 0.4-0.8 dB worse at sigma 15-50, a fourth adds at most 0.05).

An 8x8 patch cannot average noise over more than 64 pixels: its low frequencies (smooth skies,
skin, out-of-focus backgrounds) keep most of their noise, where non-local methods such as CBM3D
average many similar patches. So the filter runs again on the image averaged in 2x2 blocks (white
noise of half the sigma), with the finer estimate as its pilot, and the coarse estimate replaces
the finer one's low frequencies (the difference of the two at the coarse scale, bilinearly
upsampled): ``levels`` coarser scales, down to 8x, where patches span 64 pixels. Chosen on the
training photos (``benchmarks/anchor.py``, sigma 15/25/50: +0.29/+0.53/+0.80 dB over one scale,
+0.03/+0.03/+0.08 over three, a fifth at most +0.04). Planes under 16 px a side are not taken
coarser, so images or tiles under 64 px a side stop at fewer scales.
The anchor of ``airnet restore`` is this estimate, refined by one more pass at every scale guided by
the whole estimate (``postfilter/stage.py``, ``noise_estimate``). The sizes, passes and scales are
``WienerSettings`` (``postfilter/params.py``), passed in.
A pass has two implementations with the same estimate up to rounding (``wiener(impl=)``): strided convolutions
on any device, and on the CPU one numba loop with separable transforms (``_wiener_kernel.py``), about 3x
faster there (``benchmarks/wiener_speed.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache
from typing import Literal, get_args

import numpy as np
import torch
import torch.nn.functional as F

from airnet_restore.errors import AirNetError
from airnet_restore.postfilter.params import WienerSettings

# Below this sigma (0-1 scale, a fortieth of a grey level) there is nothing to filter, and sigma^2
# would vanish in float32.
NEGLIGIBLE_SIGMA = 1e-4
# Peak bytes per pixel of ``noise_estimate`` (two rounds at the default settings) on a CPU, its inputs included,
# with malloc tuned as a restore tunes it (``memory.tune_allocator``): 276 measured at 1024 x 1024 and 291 at
# 2048 x 2048 (ru_maxrss before and after, 2026-12-06), plus margin; sizes the post-filter's crops.
BYTES_PER_PIXEL = 360
# Rows of patches that the filter transforms at a time: about 3 MB per temporary across a 1000-px plane, in the
# cache. Chosen by timing on a 2-core CPU (``benchmarks/wiener_speed.py``: the fastest of 16, 24 and 32 rows);
# any number gives the same estimate up to rounding.
BAND_ROWS = 24
DEFAULT_SETTINGS = WienerSettings()
Impl = Literal["auto", "numba", "torch"]
IMPLS: tuple[str, ...] = get_args(Impl)


@lru_cache(maxsize=4)
def _bases(patch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The orthonormal 1-D DCT-II of ``patch`` points (frequency x position) and the opponent colour transform,
    in float64."""
    k, i = torch.arange(patch, dtype=torch.float64)[:, None], torch.arange(patch, dtype=torch.float64)[None]
    d = torch.cos(math.pi * (2 * i + 1) * k / (2 * patch)) * math.sqrt(2 / patch)
    d[0] /= math.sqrt(2)
    opponent = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, -1.0], [1.0, -2.0, 1.0]], dtype=torch.float64)
    return d, opponent / opponent.norm(dim=1, keepdim=True)


def _pad(t: torch.Tensor, patch: int, stride: int) -> torch.Tensor:
    """``t`` padded so that every pixel is covered by the same number of patches (reflected where it can be)."""
    h, w = t.shape[-2:]
    extra_h, extra_w = (-(h + patch - 2)) % stride, (-(w + patch - 2)) % stride
    mode = "reflect" if min(h, w) > patch else "replicate"
    return F.pad(t, (patch - 1, patch - 1 + extra_w, patch - 1, patch - 1 + extra_h), mode=mode)


# One Wiener pass over a padded plane: the padded guide -> (the sum of the patches' weighted estimates, each
# patch's weight on the patch grid).
Pass = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def _torch_pass(y: torch.Tensor, sigma: float, dct: torch.Tensor, keep_mean: bool, stride: int,
                band_rows: int) -> Pass:
    """The pass on any device: patches transformed by a strided convolution, and put back by a matrix product and
    ``fold`` (a transposed convolution does the same, 30 times slower on a CPU), ``band_rows`` rows of patches at
    a time: each band's temporaries stay in the cache (at a megapixel a whole plane's would be 64 MB each: the
    filter ran 1.4x slower so, 2x with glibc's default malloc, ``benchmarks/wiener_speed.py``). The noisy
    plane's coefficients are taken once for all passes."""
    patch = dct.shape[0]
    basis = torch.einsum("ab,cd->acbd", dct, dct).reshape(patch * patch, 1, patch, patch)  # the 2-D DCT as filters
    grid = ((y.shape[-2] - patch) // stride + 1, (y.shape[-1] - patch) // stride + 1)
    bands = [(g, min(g + band_rows, grid[0])) for g in range(0, grid[0], band_rows)]

    def rows(t: torch.Tensor, g0: int, g1: int) -> torch.Tensor:
        return t[..., g0 * stride : (g1 - 1) * stride + patch, :]

    coefficients = [F.conv2d(rows(y, g0, g1), basis, stride=stride).flatten(2) for g0, g1 in bands]
    inverse = basis.flatten(1).T

    def one_pass(guide: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        num = torch.zeros_like(y)
        weight = y.new_empty(y.shape[0], 1, *grid)
        for (g0, g1), c in zip(bands, coefficients):
            gain = F.conv2d(rows(guide, g0, g1), basis, stride=stride).flatten(2).square_()
            gain.div_(gain + sigma * sigma)  # P^2 / (P^2 + sigma^2)
            if keep_mean:
                gain[:, 0] = 1.0
            # BM3D's weight, the inverse of the patch's residual noise; a patch the pilot finds empty (all
            # gains 0, estimate 0) gets the largest weight, 1e12, rather than a division by zero.
            wb = torch.linalg.vecdot(gain, gain, dim=1).unsqueeze(1).mul_(sigma * sigma).add_(1e-12).reciprocal_()
            weight[:, :, g0:g1] = wb.view(-1, 1, g1 - g0, grid[1])
            band = rows(num, g0, g1)
            band += F.fold(inverse @ gain.mul_(c).mul_(wb), band.shape[-2:], patch, stride=stride)
        return num, weight

    return one_pass


def _numba_pass(y: torch.Tensor, sigma: float, dct: torch.Tensor, keep_mean: bool, stride: int,
                band_rows: int) -> Pass:
    """The same pass on the CPU as one numba loop with separable transforms (``_wiener_kernel``), bands of
    ``band_rows`` rows of patches (at least ``patch / stride - 1``, so that bands two apart share no pixel row)
    in parallel on torch's number of threads."""
    from airnet_restore.ops._numba_kernels import set_threads
    from airnet_restore.postfilter._wiener_kernel import wiener_pass

    patch = dct.shape[0]
    grid = ((y.shape[-2] - patch) // stride + 1, (y.shape[-1] - patch) // stride + 1)
    rows = max(band_rows, -(-(patch - stride) // stride))
    planes = y.reshape(-1, *y.shape[-2:]).numpy()
    d = dct.numpy()
    consts = np.array([sigma * sigma, 1e-12, 0.0, 1.0], dtype=planes.dtype)

    def one_pass(guide: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        set_threads(torch.get_num_threads())
        num = torch.zeros_like(y)
        weight = y.new_empty(y.shape[0], 1, *grid)
        sums, weights = num.view(-1, *y.shape[-2:]).numpy(), weight.view(-1, *grid).numpy()
        for n, g in enumerate(guide.contiguous().view(-1, *y.shape[-2:]).numpy()):
            wiener_pass(planes[n], g, d, consts, keep_mean, stride, rows, sums[n], weights[n])
        return num, weight

    return one_pass


def _filter_plane(noisy: torch.Tensor, pilot: torch.Tensor, sigma: float, dct: torch.Tensor, keep_mean: bool,
                  passes: int, stride: int, band_rows: int, impl: Impl) -> torch.Tensor:
    """One (N,1,H,W) plane Wiener-filtered ``passes`` times, each pass guided by the one before (the first by
    ``pilot``); ``keep_mean``: each patch's mean (its DC coefficient) is the input's, not shrunk; ``dct``: the 1-D
    DCT (``_bases``); ``impl``: the pass's implementation (``wiener``). The weights' sum at a pixel, over the
    ``patch / stride`` x ``patch / stride`` patches that cover it, is a box sum on the patch grid (not a fold of
    the weight repeated per coefficient)."""
    h, w = noisy.shape[-2:]
    patch = dct.shape[0]
    y = _pad(noisy, patch, stride).contiguous()
    fast = y.device.type == "cpu" and y.dtype == torch.float32  # float64 is for reference: the convolutions
    make = _numba_pass if impl == "numba" or (impl == "auto" and fast) else _torch_pass
    one_pass = make(y, sigma, dct, keep_mean, stride, band_rows)
    reach = patch // stride - 1  # a pixel is covered by the patches of this many grid steps before its own, and its own
    estimate = pilot
    for _ in range(passes):
        num, weight = one_pass(_pad(estimate, patch, stride))
        covering = F.avg_pool2d(F.pad(weight, (reach,) * 4), reach + 1, stride=1, divisor_override=1)
        den = F.interpolate(covering, scale_factor=stride, mode="nearest")
        estimate = num.div_(den)[..., patch - 1:patch - 1 + h, patch - 1:patch - 1 + w]
    return estimate


def _filter_scales(noisy: torch.Tensor, pilot: torch.Tensor, sigma: float, dct: torch.Tensor, keep_mean: bool,
                   levels: int, passes: int, stride: int, band_rows: int, impl: Impl) -> torch.Tensor:
    """``_filter_plane``, then ``levels`` coarser scales in turn replace the estimate's low frequencies (module
    docstring). Planes under two patches a side are not taken coarser."""
    estimate = _filter_plane(noisy, pilot, sigma, dct, keep_mean, passes, stride, band_rows, impl)
    h, w = noisy.shape[-2:]
    if levels == 0 or min(h, w) < 2 * dct.shape[0]:
        return estimate
    even = (0, w % 2, 0, h % 2)  # odd sides repeat their last pixel so that 2x2 blocks tile the plane
    fine = F.avg_pool2d(F.pad(estimate, even, mode="replicate"), 2)
    coarse = _filter_scales(F.avg_pool2d(F.pad(noisy, even, mode="replicate"), 2), fine, sigma / 2, dct, keep_mean,
                            levels - 1, passes, stride, band_rows, impl)
    lift = F.interpolate(coarse - fine, scale_factor=2.0, mode="bilinear", align_corners=False)
    return estimate + lift[..., :h, :w]


@torch.no_grad()
def wiener(noisy: torch.Tensor, pilot: torch.Tensor, sigma: float, settings: WienerSettings = DEFAULT_SETTINGS,
           passes: int | None = None, band_rows: int = BAND_ROWS, impl: Impl = "auto") -> torch.Tensor:
    """``noisy`` (N,C,H,W, [0, 1]) filtered for white noise of ``sigma`` (0-1 scale) with ``pilot`` as the clean
    image's stand-in, ``passes`` times (default ``settings.passes``) at each of ``settings.levels`` + 1 scales;
    ``noisy`` itself for sigma 0 (below ``NEGLIGIBLE_SIGMA``). Runs in float32 (float64 for float64 inputs) one
    colour plane at a time (bounded memory) and returns ``noisy``'s dtype; the output may leave [0, 1] slightly.
    An inference stage, not differentiable: it works in place and its output carries no gradient. ``band_rows``:
    rows of patches transformed at a time (speed and memory; the estimate is the same up to rounding). ``impl``:
    ``numba`` (CPU only: one loop with separable transforms, the fastest there), ``torch`` (strided convolutions,
    any device) or ``auto`` (numba on the CPU in float32, torch elsewhere and for float64 inputs, which are
    for reference); the same estimate up to rounding."""
    if impl not in IMPLS:
        raise AirNetError(f"wiener impl must be one of {', '.join(IMPLS)}, got {impl!r}")
    if impl == "numba" and noisy.device.type != "cpu":
        raise AirNetError(f"the numba Wiener filter runs on the CPU only, not on {noisy.device}; use impl 'auto' or 'torch'")
    if isinstance(band_rows, bool) or not isinstance(band_rows, int) or band_rows < 1:
        raise AirNetError(f"wiener band_rows must be a whole number of rows of patches from 1, got {band_rows!r}")
    if sigma < NEGLIGIBLE_SIGMA:
        return noisy
    passes = settings.passes if passes is None else passes
    dtype = torch.float64 if noisy.dtype == torch.float64 else torch.float32
    dct, opponent = (t.to(noisy.device, dtype) for t in _bases(settings.patch))
    mix = opponent if noisy.shape[1] == 3 else torch.eye(noisy.shape[1], device=noisy.device, dtype=dtype)
    y = torch.einsum("ij,njhw->nihw", mix, noisy.to(dtype))
    p = torch.einsum("ij,njhw->nihw", mix, pilot.to(dtype))
    planes = [_filter_scales(y[:, c:c + 1], p[:, c:c + 1], sigma, dct, keep_mean=c == 0 or mix is not opponent,
                             levels=settings.levels, passes=passes, stride=settings.stride, band_rows=band_rows,
                             impl=impl)
              for c in range(y.shape[1])]
    return torch.einsum("ji,njhw->nihw", mix, torch.cat(planes, 1)).to(noisy.dtype)
