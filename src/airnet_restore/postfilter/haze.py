"""The post-filter's haze band: a dehaze of the stage's output where the detectors find haze.

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

Where the settings name a haze map (``HazeSettings.map``; ``models/hazemap.py``, bundled and sha256-checked), the
map dehazes the input (it was trained on hazy photos, not on the network's partial dehazing) and the output moves
towards that by ``c``, after the same dark-channel check; ``airnet-general-v14``'s record turns the clip check off
(the map's clipping is that of the clean photos it was trained towards). Chosen on validation photos:
``reports/haze-map/README.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import numpy as np
import torch
from safetensors.torch import load_file

from airnet_restore.baselines.dcp import atmospheric_light, dark_channel, transmission
from airnet_restore.constants import HAZE_MAPS
from airnet_restore.errors import AirNetError
from airnet_restore.models.hazemap import HazeMap
from airnet_restore.postfilter.params import HazeSettings, ramp
from airnet_restore.variants import assets_dir, file_sha256

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


@lru_cache(maxsize=2)
def haze_map(name: str) -> HazeMap:
    """The bundled haze map ``name`` (``HAZE_MAPS``), its sha256 checked, in float32 and eval mode."""
    path = assets_dir() / f"{name}.safetensors"
    if name not in HAZE_MAPS or not path.is_file():
        raise AirNetError(f"haze map {name!r} is not bundled with this airnet-restore (known: {', '.join(HAZE_MAPS)})")
    if file_sha256(path) != HAZE_MAPS[name]:
        raise AirNetError(f"{path}: sha256 differs from haze map {name!r}'s registered one: reinstall airnet-restore")
    net = HazeMap()
    net.load_state_dict({k: v.float() for k, v in load_file(str(path)).items()})
    return net.eval()


def map_output(image: np.ndarray, name: str) -> np.ndarray:
    """HxWx3 float ``image`` as the haze map ``name`` dehazes it (float64, not clipped)."""
    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)[None]
    with torch.no_grad():
        return haze_map(name)(x)[0].permute(1, 2, 0).double().numpy()


def recovery(image: np.ndarray, reference: np.ndarray, settings: HazeSettings) -> Callable[[float], tuple[np.ndarray, float]]:
    """For float64 ``image`` (the output), the band's result at a confidence and the share of pixels it newly
    clipped: the prior's on ``image`` (the light and transmission estimated once, the transmission bounded) or,
    where the settings name a haze map, ``image`` moved towards the map of ``reference`` (the input; computed
    once) by the confidence: the map was trained on hazy inputs, not on the network's partial dehazing."""
    if settings.map:
        target = map_output(reference, settings.map) - image

        def mapped(confidence: float) -> tuple[np.ndarray, float]:
            raw = image + confidence * target
            return np.clip(raw, 0.0, 1.0), newly_clipped(raw)

        return mapped
    light, t = scattering(image, settings)
    return lambda confidence: bounded_dehaze(image, light, t, confidence, settings)


def dehaze(image: np.ndarray, reference: np.ndarray, confidence: float, settings: HazeSettings) -> tuple[np.ndarray, float]:
    """HxWx3 float ``image`` (the stage's output) dehazed with the band's ``confidence`` after the check of
    ``reference`` (the input), and the confidence used (0: ``image`` itself is returned). The recovery is
    estimated once (``recovery``); the check's halvings only scale it again."""
    if confidence <= 0.0:
        return image, 0.0
    reference = reference.astype(np.float64)
    confidence *= ramp(haziness(reference, settings), *settings.hazy_dark)
    if confidence <= 0.0:
        return image, 0.0
    recover = recovery(image.astype(np.float64), reference, settings)
    for _ in range(HALVINGS + 1):
        result, clipped = recover(confidence)
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
