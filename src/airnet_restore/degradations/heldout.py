"""Held-out degradations for honest evaluation: synthesis models that no training code uses.

Written independently of ``noise.py``, ``weather.py`` and ``general.py`` so that a model
trained on those cannot have learnt the synthesis itself:

- noise: i.i.d. Gaussian drawn by the Box-Muller transform from uniforms (not NumPy's
  normal sampler), at exact sigmas 15/25/50, *rounded* (not truncated) to uint8;
- rain: anti-aliased line segments rendered one by one, each with its own length,
  thickness, slant and opacity, slightly blurred and *screen*-blended (not added);
- haze: scattering in *linear* light over a content-independent depth (a tilted ground
  plane with a random horizon and smooth random undulation), with a coloured airlight;
- mixtures: haze or rain, then sigma-15 noise, drawn from the same generator.

Every function maps a clean uint8 HxWx3 RGB image and a ``numpy.random.Generator`` to a
degraded uint8 image; the output depends only on the image and the generator's state.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from airnet_restore.errors import AirNetError

HELDOUT_SIGMAS = (15, 25, 50)
MIXTURE_SIGMA = 15

# name -> (task kind, noise sigma on the 0-255 scale or None): what evaluation needs to pick baselines
HELDOUT_KINDS: dict[str, tuple[str, float | None]] = {
    **{f"ho_noise{s}": ("noise", float(s)) for s in HELDOUT_SIGMAS},
    "ho_rain": ("rain", None),
    "ho_haze": ("haze", None),
    "ho_haze_noise": ("haze+noise", float(MIXTURE_SIGMA)),
    "ho_rain_noise": ("rain+noise", float(MIXTURE_SIGMA)),
}


def _check(clean: np.ndarray) -> None:
    if clean.dtype != np.uint8 or clean.ndim != 3 or clean.shape[2] != 3:
        raise AirNetError(f"held-out degradations expect a uint8 HxWx3 RGB image, got {clean.dtype} {clean.shape}")


def _round8(x: np.ndarray) -> np.ndarray:
    """Float on the 0-255 scale -> uint8, clipped and rounded to nearest."""
    return np.rint(np.clip(x, 0.0, 255.0)).astype(np.uint8)


def box_muller(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Standard normal samples from pairs of uniforms (Box-Muller, cosine branch)."""
    u1 = 1.0 - rng.random(shape)  # in (0, 1]: log is finite
    u2 = rng.random(shape)
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * math.pi * u2)


def ho_noise(clean: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    """Additive white Gaussian noise of exactly ``sigma`` (0-255 scale), rounded to uint8."""
    _check(clean)
    if sigma < 0:
        raise AirNetError(f"noise sigma must be >= 0, got {sigma}")
    return _round8(clean.astype(np.float64) + sigma * box_muller(rng, clean.shape))


def streak_layer(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Rain opacity in [0, 1]: rendered line segments with per-streak length, thickness, slant and alpha."""
    count = int(rng.uniform(0.0008, 0.0025) * height * width) + 1
    slant = rng.uniform(-25.0, 25.0)  # degrees off vertical, shared by the shower
    layer = np.zeros((height, width), np.uint8)
    for _ in range(count):
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        length = rng.uniform(0.04, 0.12) * min(height, width) + 4.0
        angle = math.radians(slant + rng.normal(0.0, 3.0))
        dx, dy = 0.5 * length * math.sin(angle), 0.5 * length * math.cos(angle)
        thickness = int(rng.choice([1, 1, 1, 2]))
        alpha = round(255 * rng.uniform(0.25, 0.75))
        p0, p1 = (round(x - dx), round(y - dy)), (round(x + dx), round(y + dy))
        cv2.line(layer, p0, p1, alpha, thickness=thickness, lineType=cv2.LINE_AA)
    return cv2.GaussianBlur(layer.astype(np.float32) / 255.0, (0, 0), rng.uniform(0.4, 0.8))


def ho_rain(clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Screen-blend slightly blue-white streaks over the photo: 1 - (1 - I)(1 - S)."""
    _check(clean)
    h, w = clean.shape[:2]
    tint = np.array([0.92, 0.96, 1.0]) * rng.uniform(0.8, 1.0)
    s = streak_layer(h, w, rng)[:, :, None].astype(np.float64) * tint
    out = 1.0 - (1.0 - clean.astype(np.float64) / 255.0) * (1.0 - s)
    return _round8(out * 255.0)


def ground_depth(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Relative depth in [0, 1] (1 = far) independent of content: a tilted ground plane receding
    to a random horizon (everything above it far), with smooth random undulation."""
    horizon = rng.uniform(0.15, 0.5)  # as a fraction of the height
    tilt = rng.uniform(-0.2, 0.2)  # horizon rise across the width
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    below = y / max(height - 1, 1) - (horizon + tilt * (x / max(width - 1, 1) - 0.5))
    depth = np.clip(1.0 / (1.0 + 6.0 * np.maximum(below, 0.0)), 0.0, 1.0)  # perspective: 1 at the horizon
    bumps = cv2.resize(rng.random((4, 4)), (width, height), interpolation=cv2.INTER_CUBIC)
    depth = depth * (0.8 + 0.2 * np.clip(bumps, 0.0, 1.0))
    return (depth - depth.min()) / max(float(np.ptp(depth)), 1e-6)


def _to_linear(srgb: np.ndarray) -> np.ndarray:
    return np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)


def _to_srgb(lin: np.ndarray) -> np.ndarray:
    lin = np.clip(lin, 0.0, 1.0)
    return np.where(lin <= 0.0031308, lin * 12.92, 1.055 * lin ** (1 / 2.4) - 0.055)


def ho_haze(clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Scattering in linear light, I = J t + A (1 - t), t = exp(-beta d), with a coloured airlight A."""
    _check(clean)
    h, w = clean.shape[:2]
    beta = rng.uniform(0.5, 1.5)
    depth = 0.1 + 0.9 * ground_depth(h, w, rng)
    airlight_srgb = np.clip(rng.uniform(0.65, 0.9) * (1.0 + rng.uniform(-0.08, 0.08, 3)), 0.0, 1.0)
    t = np.exp(-beta * depth)[:, :, None]
    lin = _to_linear(clean.astype(np.float64) / 255.0) * t + _to_linear(airlight_srgb) * (1.0 - t)
    return _round8(_to_srgb(lin) * 255.0)


def ho_haze_noise(clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Held-out haze, then held-out sigma-15 noise."""
    return ho_noise(ho_haze(clean, rng), rng, MIXTURE_SIGMA)


def ho_rain_noise(clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Held-out rain, then held-out sigma-15 noise."""
    return ho_noise(ho_rain(clean, rng), rng, MIXTURE_SIGMA)
