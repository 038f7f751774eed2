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
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from airnet_restore.postfilter.params import RainSettings, ramp


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
