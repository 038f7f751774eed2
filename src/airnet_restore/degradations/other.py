"""Degradations beyond the paper: Gaussian and motion blur, JPEG, low light, and composition.

All take and return uint8 HxWx3 RGB images; parameters not given are drawn from ``rng``.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from airnet_restore.degradations.weather import line_kernel


def gaussian_blur(clean: np.ndarray, rng: np.random.Generator, sigma: float | None = None) -> np.ndarray:
    """Isotropic Gaussian blur, sigma in [0.8, 3] pixels unless given."""
    s = float(rng.uniform(0.8, 3.0)) if sigma is None else sigma
    return cv2.GaussianBlur(clean, (0, 0), s, borderType=cv2.BORDER_REFLECT)


def motion_blur(clean: np.ndarray, rng: np.random.Generator, length: int | None = None, angle: float | None = None) -> np.ndarray:
    """Linear camera-shake blur: a line kernel of 5-21 pixels at any angle unless given."""
    n = int(rng.integers(5, 22)) if length is None else length
    a = float(rng.uniform(0, 180)) if angle is None else angle
    return cv2.filter2D(clean, -1, line_kernel(n, a), borderType=cv2.BORDER_REFLECT)


def jpeg(clean: np.ndarray, rng: np.random.Generator, quality: int | None = None) -> np.ndarray:
    """JPEG compression artefacts at quality 10-50 unless given."""
    q = int(rng.integers(10, 51)) if quality is None else quality
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(clean, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, q])
    if not ok:
        raise RuntimeError("OpenCV failed to encode JPEG")
    decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if decoded is None:
        raise RuntimeError("OpenCV failed to decode JPEG")
    return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)


def low_light(clean: np.ndarray, rng: np.random.Generator, gain: float | None = None, gamma: float | None = None) -> np.ndarray:
    """Under-exposure: I = gain * J ** gamma (gain 0.1-0.5, gamma 1.2-2.0) plus faint shot-like noise."""
    g = float(rng.uniform(0.1, 0.5)) if gain is None else gain
    y = float(rng.uniform(1.2, 2.0)) if gamma is None else gamma
    x = g * (clean.astype(np.float64) / 255.0) ** y
    x = x + rng.standard_normal(clean.shape) * np.sqrt(x * 0.002)
    return np.rint(np.clip(x, 0, 1) * 255).astype(np.uint8)


def compose(*steps: Callable[[np.ndarray, np.random.Generator], np.ndarray]) -> Callable[[np.ndarray, np.random.Generator], np.ndarray]:
    """Apply several degradations in order (e.g. haze then rain then noise) with one generator."""

    def apply(clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        for step in steps:
            clean = step(clean, rng)
        return clean

    return apply
