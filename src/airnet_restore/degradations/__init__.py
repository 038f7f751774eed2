"""Degradations: the paper's noise, synthetic rain and haze, and more; named in a registry.

Every registered degradation maps a clean uint8 HxWx3 RGB image and a
``numpy.random.Generator`` to a degraded uint8 image of the same shape. Configs name
them as strings; ``a+b`` composes (applied left to right).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np

from airnet_restore.degradations.general import haze_any, identity, noise_any, rain_any
from airnet_restore.degradations.heldout import HELDOUT_KINDS, ho_haze, ho_haze_noise, ho_noise, ho_rain, ho_rain_noise
from airnet_restore.degradations.noise import gaussian_noise, official_test_noise, spatially_variant_noise
from airnet_restore.degradations.other import compose, gaussian_blur, jpeg, low_light, motion_blur
from airnet_restore.degradations.weather import add_haze, add_rain, depth_proxy, haze_with_depth
from airnet_restore.errors import AirNetError

DegradeFn = Callable[[np.ndarray, np.random.Generator], np.ndarray]


@dataclass(frozen=True)
class Degradation:
    name: str
    id: int
    fn: DegradeFn
    description: str


def _noise(sigma: float) -> DegradeFn:
    return lambda clean, rng: gaussian_noise(clean, sigma, rng)


REGISTRY: dict[str, Degradation] = {
    d.name: d
    for d in (
        # ids 0-4 are the official ones (denoise_15, denoise_25, denoise_50, derain, dehaze)
        Degradation("noise15", 0, _noise(15), "Gaussian noise sigma 15 (uint8, truncated)"),
        Degradation("noise25", 1, _noise(25), "Gaussian noise sigma 25 (uint8, truncated)"),
        Degradation("noise50", 2, _noise(50), "Gaussian noise sigma 50 (uint8, truncated)"),
        Degradation("rain", 3, add_rain, "synthetic light rain streaks (Rain100L-like)"),
        Degradation("haze", 4, add_haze, "synthetic haze, A in [0.8, 1], beta in [0.04, 0.2] (RESIDE-OTS-like)"),
        Degradation("rain_heavy", 5, partial(add_rain, preset="heavy"), "synthetic heavy rain streaks"),
        Degradation("noise_sv", 6, spatially_variant_noise, "spatially variant noise, quadrants sigma 0/15/25/50"),
        Degradation("blur", 7, gaussian_blur, "Gaussian blur, sigma 0.8-3"),
        Degradation("motion_blur", 8, motion_blur, "linear motion blur, 5-21 px"),
        Degradation("jpeg", 9, jpeg, "JPEG compression, quality 10-50"),
        Degradation("lowlight", 10, low_light, "under-exposure with faint noise"),
        # the general training family (degradations/general.py)
        Degradation("clean", 11, identity, "the clean image unchanged (teaches leaving good photos alone)"),
        Degradation("noise_any", 12, noise_any, "noise sigma 0-55: Gaussian, Poisson-Gaussian or channel-correlated; JPEG 1 in 4"),
        Degradation("rain_any", 13, rain_any, "randomised rain: 1-3 streak layers (smeared, or drawn one by one with their own opacity), any length/width/angle/density, optional veil"),
        Degradation("haze_any", 14, haze_any, "randomised haze: several depth proxies, beta 0.1-2.0, coloured airlight, uneven density"),
        # the held-out evaluation family (degradations/heldout.py): never used for training
        Degradation("ho_noise15", 100, partial(ho_noise, sigma=15), "held-out Gaussian noise sigma 15 (Box-Muller, rounded)"),
        Degradation("ho_noise25", 101, partial(ho_noise, sigma=25), "held-out Gaussian noise sigma 25 (Box-Muller, rounded)"),
        Degradation("ho_noise50", 102, partial(ho_noise, sigma=50), "held-out Gaussian noise sigma 50 (Box-Muller, rounded)"),
        Degradation("ho_rain", 103, ho_rain, "held-out rain: rendered line segments, per-streak alpha, screen blend"),
        Degradation("ho_haze", 104, ho_haze, "held-out haze: linear light, ground-plane depth, coloured airlight"),
        Degradation("ho_haze_noise", 105, ho_haze_noise, "held-out haze, then held-out noise sigma 15"),
        Degradation("ho_rain_noise", 106, ho_rain_noise, "held-out rain, then held-out noise sigma 15"),
    )
}


def get_degradation(name: str) -> DegradeFn:
    """The function for a registered name, or a composition ``a+b+c``."""
    parts = name.split("+")
    unknown = [p for p in parts if p not in REGISTRY]
    if unknown:
        raise AirNetError(f"unknown degradation {', '.join(map(repr, unknown))}; registered: {', '.join(REGISTRY)}")
    return REGISTRY[name].fn if len(parts) == 1 else compose(*(REGISTRY[p].fn for p in parts))


__all__ = [
    "HELDOUT_KINDS",
    "REGISTRY",
    "Degradation",
    "DegradeFn",
    "add_haze",
    "add_rain",
    "compose",
    "depth_proxy",
    "gaussian_blur",
    "gaussian_noise",
    "get_degradation",
    "haze_any",
    "haze_with_depth",
    "ho_haze",
    "ho_haze_noise",
    "ho_noise",
    "ho_rain",
    "ho_rain_noise",
    "identity",
    "jpeg",
    "low_light",
    "motion_blur",
    "noise_any",
    "official_test_noise",
    "rain_any",
    "spatially_variant_noise",
]
