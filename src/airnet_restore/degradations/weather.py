"""Synthetic rain streaks and haze, for training and testing without the paper's datasets.

Both take and return uint8 HxWx3 RGB images; parameters not given are drawn from ``rng``.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

RAIN_PRESETS = {
    # density = fraction of pixels seeding a streak; Rain100L-like light rain by default.
    "light": {"density": (0.002, 0.006), "length": (10, 25), "width": (1, 1), "brightness": (0.5, 0.8)},
    "heavy": {"density": (0.006, 0.012), "length": (20, 40), "width": (1, 2), "brightness": (0.6, 0.9)},
}


def line_kernel(length: int, angle_deg: float, width: int = 1) -> np.ndarray:
    """A normalised line of ``length`` pixels at ``angle_deg`` from vertical (positive = leaning right)."""
    size = length + 2 * width + 1
    k = np.zeros((size, size), np.float32)
    c = size / 2.0
    dx = math.sin(math.radians(angle_deg)) * length / 2
    dy = math.cos(math.radians(angle_deg)) * length / 2
    p0 = (round(c - dx), round(c - dy))
    p1 = (round(c + dx), round(c + dy))
    cv2.line(k, p0, p1, 1.0, thickness=width, lineType=cv2.LINE_AA)
    return k / k.sum()


def rain_layer(
    height: int,
    width: int,
    rng: np.random.Generator,
    *,
    density: float,
    length: int,
    angle: float,
    streak_width: int,
    brightness: float,
) -> np.ndarray:
    """A rain-streak layer in [0, 1]: sparse seeds smeared by a motion line, as in the rain-synthesis literature."""
    seeds = (rng.random((height, width)) < density).astype(np.float32) * rng.uniform(0.5, 1.0, (height, width)).astype(np.float32)
    streaks = cv2.filter2D(seeds, -1, line_kernel(length, angle, streak_width), borderType=cv2.BORDER_REFLECT)
    streaks = cv2.GaussianBlur(streaks, (3, 3), 0.5)
    peak = float(np.percentile(streaks[streaks > 0], 99)) if np.any(streaks > 0) else 1.0
    return np.clip(streaks / max(peak, 1e-6), 0, 1) * brightness


def add_rain(
    clean: np.ndarray,
    rng: np.random.Generator,
    preset: str = "light",
    angle: float | None = None,
    **overrides: float,
) -> np.ndarray:
    """Rainy = clip(clean + streaks): additive bright streaks (the Rain100L model O = B + S).

    Density, length, width and brightness are drawn from the preset's ranges; the angle
    from [-30, 30] degrees off vertical unless given.
    """
    ranges = {**RAIN_PRESETS[preset], **{k: (v, v) for k, v in overrides.items()}}
    h, w = clean.shape[:2]
    layer = rain_layer(
        h,
        w,
        rng,
        density=rng.uniform(*ranges["density"]),
        length=int(rng.integers(int(ranges["length"][0]), int(ranges["length"][1]) + 1)),
        angle=float(rng.uniform(-30, 30)) if angle is None else angle,
        streak_width=int(rng.integers(int(ranges["width"][0]), int(ranges["width"][1]) + 1)),
        brightness=rng.uniform(*ranges["brightness"]),
    )
    out = clean.astype(np.float32) / 255.0 + layer[:, :, None]
    return np.rint(np.clip(out, 0, 1) * 255).astype(np.uint8)


def depth_proxy(clean: np.ndarray) -> np.ndarray:
    """A smooth, plausible relative depth in [0, 1] for an ordinary photo (1 = far).

    Scenes usually recede upwards (sky and horizon at the top), and bright, low-saturation
    regions (sky, distant haze) tend to be far: a vertical ramp blended with heavily blurred
    brightness and inverse saturation. Not a depth estimator, but smooth and monotone enough
    to make haze denser where a viewer expects distance.
    """
    h, w = clean.shape[:2]
    # The proxy is smooth, so it is computed on a small copy (fast) and resized back.
    scale = min(1.0, 128.0 / max(h, w))
    small = cv2.resize(clean, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    sh, sw = small.shape[:2]
    img = small.astype(np.float32) / 255.0
    ramp = np.linspace(1.0, 0.0, sh, dtype=np.float32)[:, None].repeat(sw, axis=1)
    value = img.max(axis=2)
    saturation = (value - img.min(axis=2)) / np.maximum(value, 1e-3)
    cue = 0.5 * value + 0.5 * (1.0 - saturation)
    sigma = 0.08 * max(sh, sw)
    cue = cv2.GaussianBlur(cue, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    depth = 0.6 * ramp + 0.4 * (cue - cue.min()) / max(float(np.ptp(cue)), 1e-6)
    depth = cv2.GaussianBlur(depth, (0, 0), sigma / 2, borderType=cv2.BORDER_REFLECT)
    depth = cv2.resize(depth, (w, h), interpolation=cv2.INTER_LINEAR)
    return (depth - depth.min()) / max(float(np.ptp(depth)), 1e-6)


def haze_with_depth(clean: np.ndarray, depth: np.ndarray, airlight: float, beta: float) -> np.ndarray:
    """Atmospheric scattering: I = J t + A (1 - t), t = exp(-beta d)."""
    t = np.exp(-beta * depth.astype(np.float64))[:, :, None]
    out = clean.astype(np.float64) / 255.0 * t + airlight * (1.0 - t)
    return np.rint(np.clip(out, 0, 1) * 255).astype(np.uint8)


def add_haze(
    clean: np.ndarray,
    rng: np.random.Generator,
    airlight: float | None = None,
    beta: float | None = None,
    max_depth: float = 8.0,
) -> np.ndarray:
    """RESIDE-OTS-like haze: A in [0.8, 1], beta in [0.04, 0.2], depth = proxy scaled to [1, max_depth]."""
    a = float(rng.uniform(0.8, 1.0)) if airlight is None else airlight
    b = float(rng.uniform(0.04, 0.2)) if beta is None else beta
    depth = 1.0 + (max_depth - 1.0) * depth_proxy(clean)
    return haze_with_depth(clean, depth, a, b)
