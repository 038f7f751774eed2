"""The post-filter's rain band: remove the thin bright structures the network removed and the blend kept.

Rain streaks are thin and brighter than what lies behind them. The network's output ``f(x)`` removes them, but
also shifts tones and smooths detail, so the stage keeps only part of its correction where the detectors are
unsure of rain, and with it most of the streaks. The band takes from the difference ``d = o - f(x)`` between
the stage's output ``o`` and the network's only what looks like a streak: its fine part ``d - box(d)`` (the mean
over ``window`` x ``window`` px removed: no tone shift) where positive (brighter than the network's output: no
dark detail), and removes that much of it from ``o`` as the band's confidence says:

    o - c * max(0, d - box(d))

On the validation photos' held-out rain synthesis this gains far more than the network's whole correction
and harms fewer photos, and on a clean photo it changes much less (``reports/rain/README.md``). ``c`` is
``ramp(p_rain, *sure)``, less where noise is found (``noise_sigmas``: the fine part of ``d`` is then noise as
much as rain). Where noise is found, the detectors judge rain again on the noise model's estimate of the image
(``denoised_confidence``, with ``RainSettings.denoised``), which noise does not hide it in. The settings are
``RainSettings`` (``postfilter/params.py``); the band is off in records that do not enable it. Cost where it
works: two box filters of the image, about 0.1 s a megapixel; judging the estimate, one pass of the detectors
(about 0.6 s a megapixel).

The detectors miss light rain and take some fine textures for rain; the shape of what the network removed tells
the two apart (``RainSettings.elongated``). Streaks are long, thin and parallel, within 30 degrees of vertical:
the fine bright part of ``x - f(x)`` (the streak layer ``s``, from the input ``x``), averaged along a line of
``line`` px at the best of ``TILTS``, keeps far more of its variance than averaged across that line, while
grain, foliage and fur removed as texture keep about as much either way (``elongation``: the ratio). Where the
network's removal is not elongated, the detectors' confidence is scaled down (``elongation_gate``); where it is
clearly elongated, the band works even if the detectors found no rain (``elongation_sure``; ``shape_confidence``).
Cost: 26 line filters of the streak layer, about 0.35 s a megapixel on 2 CPU cores (``benchmarks/profile_restore.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from airnet_restore.postfilter.params import RainSettings, ramp

# Tilts from vertical (degrees) along which the streak layer's elongation is measured: rain falls within 30 degrees of
# vertical, and a step of 5 degrees keeps a 15-px line within half a pixel of any tilt between two of them.
TILTS = tuple(range(-30, 31, 5))
# Rows of the image whose streak layer is filtered at a time: memory, not the result.
ELONGATION_ROWS = 256


def rain_confidence(presence: dict[str, float], sigma: float | None, settings: RainSettings) -> float:
    """The band's confidence from the detectors' ``presence`` (family -> probability) and noise ``sigma`` (0-255)."""
    if not settings.enabled:
        return 0.0
    return ramp(presence.get("rain", 0.0), *settings.sure) * (1.0 - ramp(sigma or 0.0, *settings.noise_sigmas))


def denoised_weight(sigma: float | None, settings: RainSettings) -> float:
    """The share of the band's confidence that the detectors' judgement of the noise model's estimate takes, for
    noise of ``sigma`` (0-255): the share that noise took from ``rain_confidence`` (noise hides rain from the
    detectors, not from its denoised estimate), none from ``strong_sigmas`` on (the fine part of ``d`` is then
    mostly noise); 0 unless ``settings.denoised``."""
    if not (settings.enabled and settings.denoised):
        return 0.0
    s = sigma or 0.0
    return ramp(s, *settings.noise_sigmas) * (1.0 - ramp(s, *settings.strong_sigmas))


def denoised_confidence(presence: dict[str, float], sigma: float | None, settings: RainSettings) -> float:
    """The band's confidence from the detectors' ``presence`` on the noise model's estimate of an image with noise
    of ``sigma``: ``ramp(p_rain, *denoised_sure)`` times ``denoised_weight``."""
    return ramp(presence.get("rain", 0.0), *settings.denoised_sure) * denoised_weight(sigma, settings)


def box_mean(t: torch.Tensor, window: int) -> torch.Tensor:
    """The mean of (N,C,H,W) ``t`` over ``window`` x ``window`` px around each pixel (fewer at the borders: only
    pixels inside the image count), as two one-dimensional passes."""
    pad = window // 2
    rows = F.avg_pool2d(t, (1, window), stride=1, padding=(0, pad), count_include_pad=False)
    return F.avg_pool2d(rows, (window, 1), stride=1, padding=(pad, 0), count_include_pad=False)


def remove_streaks(mixed: torch.Tensor, out: torch.Tensor, confidence: float, settings: RainSettings) -> torch.Tensor:
    """The (N,3,H,W) stage output ``mixed`` less ``confidence`` times the thin bright part of ``mixed - out``
    (``out`` the network's output; module docstring). Rows within ``window // 2`` of a crop's
    top or bottom edge see fewer rows than in the whole image: callers give that much context."""
    if confidence <= 0.0:
        return mixed
    d = mixed - out
    return mixed - confidence * (d - box_mean(d, settings.window)).clamp(min=0)


def shape_confidence(confidence: float, elongation: float, sigma: float | None, settings: RainSettings) -> float:
    """The band's ``confidence`` (from ``rain_confidence``) once the ``elongation`` of what the network removed is
    known: scaled by ``ramp(elongation, *elongation_gate)``, and at least ``ramp(elongation, *elongation_sure)``
    (less where noise is found, as ``rain_confidence``); ``confidence`` itself unless ``settings.elongated``."""
    if not (settings.enabled and settings.elongated):
        return confidence
    quiet = 1.0 - ramp(sigma or 0.0, *settings.noise_sigmas)
    return max(confidence * ramp(elongation, *settings.elongation_gate),
               ramp(elongation, *settings.elongation_sure) * quiet)


@lru_cache(maxsize=4)
def line_kernels(length: int) -> torch.Tensor:
    """(2T,1,K,K) float32 kernels, K = ``length`` + 2, T = len(TILTS): for each tilt, the mean along a line of
    ``length`` px through the centre at that tilt from vertical (bilinear weights, summing to 1), then along the
    same line turned by 90 degrees."""
    size = length + 2
    centre = (size - 1) / 2
    steps = np.linspace(-(length - 1) / 2, (length - 1) / 2, 4 * length)
    kernels = np.zeros((2 * len(TILTS), size, size))
    for k, degrees in enumerate([*TILTS, *(t + 90 for t in TILTS)]):
        angle = math.radians(degrees)
        y, x = centre + steps * math.cos(angle), centre + steps * math.sin(angle)
        y0, x0 = np.floor(y).astype(int), np.floor(x).astype(int)
        fy, fx = y - y0, x - x0
        for dy, wy in ((0, 1 - fy), (1, fy)):
            for dx, wx in ((0, 1 - fx), (1, fx)):
                np.add.at(kernels[k], (y0 + dy, x0 + dx), wy * wx)
        kernels[k] /= kernels[k].sum()
    return torch.from_numpy(kernels).float()[:, None]


def elongation(source: Callable[[int, int, int, int], torch.Tensor], out: torch.Tensor, settings: RainSettings) -> float:
    """How elongated along a near-vertical line the fine bright part of what the network removed is, over the
    whole image given by its crops (``source``: (y, x, height, width) -> (1,3,height,width) in [0, 1]) and the
    network's whole (1,3,H,W) output ``out``: with ``s = max(0, g - box(g))`` for ``g`` the channels' mean of ``x -
    f(x)`` (``box`` over ``window`` px), the largest over ``TILTS`` of the variance of ``s`` averaged along a line
    of ``line`` px at that tilt, over the same across the line (module docstring). About 1 for texture, 3-5 for rain streaks; 0 for an image too small for the line.
    Computed in bands of rows, the same as over the whole image."""
    height, width = out.shape[-2:]
    kernels = line_kernels(settings.line).to(out)
    reach = kernels.shape[-1] - 1
    half = settings.window // 2
    total = 0.0
    sums = torch.zeros(2, kernels.shape[0], dtype=torch.float64)
    count = 0
    for y in range(0, height, ELONGATION_ROWS):
        own = min(ELONGATION_ROWS, height - y)  # rows of s counted in its mean
        rows = max(0, min(ELONGATION_ROWS, height - reach - y))  # rows of the line filters' output starting here
        bottom = min(height, y + max(own, rows + reach))
        top, end = max(0, y - half), min(height, bottom + half)  # the rows the box filter of those rows sees
        g = (source(top, 0, end - top, width).to(out) - out[:, :, top:end]).mean(1, keepdim=True)
        s = (g - box_mean(g, settings.window)).clamp(min=0)[:, :, y - top : bottom - top]
        total += s[:, :, :own].sum().item()
        if rows > 0 and width > reach:
            lines = F.conv2d(s[:, :, : rows + reach], kernels)
            sums[0] += lines.sum((0, 2, 3)).to("cpu", torch.float64)
            sums[1] += torch.einsum("nchw,nchw->c", lines, lines).to("cpu", torch.float64)
            count += lines[0, 0].numel()
    if count == 0:
        return 0.0
    mean = total / (height * width)
    # The mean square of (s - mean) filtered: the kernels sum to 1, so that is the filtered s less the mean.
    energy = sums[1] / count - 2.0 * mean * sums[0] / count + mean * mean
    along, across = energy[: len(TILTS)], energy[len(TILTS) :]
    best = int(torch.argmax(along))
    return float(along[best] / (across[best] + 1e-12))
