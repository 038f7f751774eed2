"""Gaussian noise as the paper adds it, and its spatially variant form (paper Table 6).

Noise works on uint8 HxWxC images: noisy = clip(clean + sigma * N(0, 1), 0, 255), cast
to uint8 by truncation (not rounding), sigma on the 0-255 scale.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Rng = np.random.Generator | np.random.RandomState
TEST_SIGMAS = (15, 25, 50)


def _normal(rng: Rng, shape: tuple[int, ...]) -> np.ndarray:
    return rng.standard_normal(shape)


def gaussian_noise(clean: np.ndarray, sigma: float, rng: Rng) -> np.ndarray:
    """The paper's noise: float64 add, clip to [0, 255], truncate to uint8."""
    if clean.dtype != np.uint8:
        raise ValueError(f"gaussian_noise expects a uint8 image, got {clean.dtype}")
    noisy = clean.astype(np.float64) + sigma * _normal(rng, clean.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def spatially_variant_noise(clean: np.ndarray, rng: Rng, sigmas: Sequence[float] = (0, 15, 25, 50)) -> np.ndarray:
    """Four quadrants with their own sigma: top-left, top-right, bottom-left, bottom-right."""
    if len(sigmas) != 4:
        raise ValueError("spatially variant noise needs four sigmas, one per quadrant")
    h, w = clean.shape[:2]
    sigma_map = np.empty((h, w) + (1,) * (clean.ndim - 2))
    sigma_map[: h // 2, : w // 2], sigma_map[: h // 2, w // 2 :] = sigmas[0], sigmas[1]
    sigma_map[h // 2 :, : w // 2], sigma_map[h // 2 :, w // 2 :] = sigmas[2], sigmas[3]
    noisy = clean.astype(np.float64) + sigma_map * _normal(rng, clean.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def official_test_noise(
    cleans: Sequence[np.ndarray], sigmas: Sequence[float] = TEST_SIGMAS, seed: int = 0
) -> dict[float, list[np.ndarray]]:
    """The official test noise: one NumPy legacy stream seeded once, sigma 15 then 25 then 50,
    images in the given (sorted) order, exactly as ``np.random.seed(0)`` + ``np.random.randn``."""
    rng = np.random.RandomState(seed)
    return {sigma: [gaussian_noise(c, sigma, rng) for c in cleans] for sigma in sigmas}
