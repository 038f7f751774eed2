"""The post-filter's haze band: a physically based dehaze of the stage's output where the detectors find haze.

The atmospheric scattering model ``I = J t + A (1 - t)`` with the dark channel prior's steps
(``baselines/dcp.py``: the atmospheric light ``A``, the transmission ``t`` from the dark channel refined by the
guided filter, the radiance ``J``), with two guards for "do no harm":

- the transmission is bounded below by ``1 - c (1 - floor)`` for the band's confidence ``c``: an unsure call
  (``c`` near 0) leaves ``t`` near 1 and the image nearly as it is; only a sure one may remove dense haze;
- the check of the photo (``dehaze``): haze lifts the dark channel everywhere, so a photo whose median
  dark channel is low had no haze to remove (``hazy_dark``); and a result that newly clips more than
  ``max_clipped`` of its pixels is scaled back (``c`` halved, up to four times, then 0).

``c`` is ``ramp(p_haze, *sure)``, times the probability that no rain (no family but noise and haze) is present
to the power ``others``, times ``1 - ramp(sigma, *noise_sigmas)`` (``haze_confidence``: the dark channel prior
amplifies noise), settled by the check once the whole image is known (``dehaze``). The settings are
``HazeSettings`` (``postfilter/params.py``); the band is off in the default record (``enabled``), as measured
in ``reports/haze-prior/README.md``. Cost where it works: about 0.8 s a megapixel on one CPU core (the dark
channel, a box-filter guided filter, the recovery); nothing where it does not.
"""

from __future__ import annotations

import numpy as np
import torch

from airnet_restore.baselines.dcp import atmospheric_light, dark_channel, transmission
from airnet_restore.postfilter.params import HazeSettings, ramp

# Beyond this (0-1 scale) a recovered value counts as clipped.
CLIP_MARGIN = 1.0 / 255.0
# Halvings of the confidence before the check gives up and leaves the image as it is.
HALVINGS = 4


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
    return (ramp(presence.get("haze", 0.0), *settings.sure) * others**settings.others
            * (1.0 - ramp(sigma or 0.0, *settings.noise_sigmas)))


def haziness(image: np.ndarray, settings: HazeSettings) -> float:
    """The median of HxWx3 ``image``'s dark channel: near 0 for a photo without haze."""
    return float(np.median(dark_channel(image, settings.patch)))


def scattering(image: np.ndarray, settings: HazeSettings) -> tuple[np.ndarray, np.ndarray]:
    """The atmospheric light and the refined transmission map (unbounded) of HxWx3 float64 ``image``."""
    s = settings
    light = atmospheric_light(image, dark_channel(image, s.patch), s.light_fraction)
    return light, transmission(image, light, s.omega, s.patch, s.radius, s.eps)


def bounded_dehaze(image: np.ndarray, light: np.ndarray, t: np.ndarray, confidence: float,
                   settings: HazeSettings) -> tuple[np.ndarray, float]:
    """The scene radiance of HxWx3 float64 ``image`` (clipped to [0, 1]) with the transmission ``t`` bounded
    below by ``1 - confidence * (1 - floor)``, and the share of pixels it newly clipped (``newly_clipped``)."""
    bound = 1.0 - confidence * (1.0 - settings.floor)
    raw = (image - light) / np.clip(t, bound, 1.0)[:, :, None] + light
    return np.clip(raw, 0.0, 1.0), newly_clipped(raw)


def newly_clipped(raw: np.ndarray) -> float:
    """The share of pixels with a channel that the recovery pushed beyond [0, 1] by more than ``CLIP_MARGIN``."""
    return float(np.mean(((raw < -CLIP_MARGIN) | (raw > 1.0 + CLIP_MARGIN)).any(axis=2)))


def dehaze(image: np.ndarray, reference: np.ndarray, confidence: float, settings: HazeSettings) -> tuple[np.ndarray, float]:
    """HxWx3 float ``image`` (the stage's output) dehazed with the band's ``confidence`` after the check of
    ``reference`` (the input), and the confidence used (0: ``image`` itself is returned). The light and the
    transmission are estimated once; the check's halvings only bound the transmission again."""
    if confidence <= 0.0:
        return image, 0.0
    confidence *= ramp(haziness(reference.astype(np.float64), settings), *settings.hazy_dark)
    if confidence <= 0.0:
        return image, 0.0
    img = image.astype(np.float64)
    light, t = scattering(img, settings)
    for _ in range(HALVINGS + 1):
        result, clipped = bounded_dehaze(img, light, t, confidence, settings)
        if clipped <= settings.max_clipped:
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
