"""The post-filter's haze band: a physically based dehaze of the stage's output where the detectors find haze.

The atmospheric scattering model ``I = J t + A (1 - t)`` with the dark channel prior's steps
(``baselines/dcp.py``: the atmospheric light ``A``, the transmission ``t`` from the dark channel refined by the
guided filter, the radiance ``J``), with two guards for "do no harm":

- the transmission is bounded below by ``1 - c (1 - floor)`` for the band's confidence ``c``: an unsure call
  (``c`` near 0) leaves ``t`` near 1 and the image nearly as it is; only a sure one may remove dense haze;
- the check of the photo (``haze_check``): haze lifts the dark channel everywhere, so a photo whose median
  dark channel is low had no haze to remove (``hazy_dark``); and a result that newly clips more than
  ``max_clipped`` of its pixels is scaled back (``c`` halved, up to four times, then 0).

``c`` is ``ramp(p_haze, *sure)`` times ``1 - ramp(sigma, *noise_sigmas)`` (``haze_confidence``), settled by the
check once the whole image is known (``dehaze``). The settings are ``HazeSettings`` (``postfilter/params.py``).
"""

from __future__ import annotations

import numpy as np
import torch

from airnet_restore.baselines.dcp import atmospheric_light, dark_channel, recover, transmission
from airnet_restore.postfilter.params import HazeSettings

# Beyond this (0-1 scale) a recovered value counts as clipped.
CLIP_MARGIN = 1.0 / 255.0
# Halvings of the confidence before the check gives up and leaves the image as it is.
HALVINGS = 4


def _ramp(value: float, low: float, high: float) -> float:
    return min(1.0, max(0.0, (value - low) / (high - low)))


def haze_confidence(presence: dict[str, float], sigma: float | None, settings: HazeSettings) -> float:
    """The band's confidence before the check, from the detectors' ``presence`` (family -> probability) and
    noise ``sigma``: ``ramp(p_haze, *sure)``, times the probability that no other family but noise is present
    (rain lifts the dark channel too) to the power ``others``, less where noise is found (``noise_sigmas``)."""
    if not settings.enabled:
        return 0.0
    others = 1.0
    for family, p in presence.items():
        if family not in ("haze", "noise"):
            others *= 1.0 - p
    return (_ramp(presence.get("haze", 0.0), *settings.sure) * others**settings.others
            * (1.0 - _ramp(sigma or 0.0, *settings.noise_sigmas)))


def haziness(image: np.ndarray, settings: HazeSettings) -> float:
    """The median of HxWx3 ``image``'s dark channel: near 0 for a photo without haze."""
    return float(np.median(dark_channel(image, settings.patch)))


def bounded_dehaze(image: np.ndarray, confidence: float, settings: HazeSettings) -> tuple[np.ndarray, np.ndarray]:
    """The scene radiance of HxWx3 float64 ``image`` (clipped to [0, 1]) and the unclipped one, with the
    transmission bounded below by ``1 - confidence * (1 - floor)``."""
    s = settings
    light = atmospheric_light(image, dark_channel(image, s.patch), s.light_fraction)
    t = transmission(image, light, s.omega, s.patch, s.radius, s.eps)
    bound = 1.0 - confidence * (1.0 - s.floor)
    raw = (image - light) / np.clip(t, bound, 1.0)[:, :, None] + light
    return recover(image, light, np.clip(t, bound, 1.0), bound), raw


def newly_clipped(raw: np.ndarray) -> float:
    """The share of pixels with a channel that the recovery pushed beyond [0, 1] by more than ``CLIP_MARGIN``."""
    return float(np.mean(((raw < -CLIP_MARGIN) | (raw > 1.0 + CLIP_MARGIN)).any(axis=2)))


def dehaze(image: np.ndarray, reference: np.ndarray, confidence: float, settings: HazeSettings) -> tuple[np.ndarray, float]:
    """HxWx3 float ``image`` (the stage's output) dehazed with the band's ``confidence`` after the check of
    ``reference`` (the input), and the confidence used (0: ``image`` itself is returned)."""
    if confidence <= 0.0:
        return image, 0.0
    confidence *= _ramp(haziness(reference.astype(np.float64), settings), *settings.hazy_dark)
    img = image.astype(np.float64)
    for _ in range(HALVINGS + 1):
        if confidence <= 0.0:
            break
        result, raw = bounded_dehaze(img, confidence, settings)
        if newly_clipped(raw) <= settings.max_clipped:
            return result.astype(image.dtype), confidence
        confidence /= 2.0
    return image, 0.0


def dehaze_tensor(out: torch.Tensor, source: torch.Tensor, confidence: float, settings: HazeSettings) -> tuple[torch.Tensor, float]:
    """``dehaze`` of the (1,3,H,W) output ``out`` with the (1,3,H,W) input ``source`` as the check's reference,
    as a tensor of ``out``'s dtype and device, and the confidence used."""
    def pixels(t: torch.Tensor) -> np.ndarray:
        return t[0].permute(1, 2, 0).to("cpu", torch.float64).numpy()

    result, used = dehaze(pixels(out), pixels(source), confidence, settings)
    if used == 0.0:
        return out, 0.0
    return torch.from_numpy(result).permute(2, 0, 1)[None].to(out), used
