"""Shared by the baseline tests: a smooth test image, Gaussian noise and PSNR."""

import numpy as np
import pytest


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two float images in [0, 1]."""
    return float(10 * np.log10(1.0 / np.mean((a - b) ** 2)))


@pytest.fixture
def clean() -> np.ndarray:
    """Smooth 48x48 RGB float in [0.2, 0.8]: gradients and a soft blob."""
    y, x = np.mgrid[0:48, 0:48] / 47.0
    blob = np.exp(-((x - 0.5) ** 2 + (y - 0.4) ** 2) / 0.05)
    return 0.2 + 0.6 * np.stack([x, y, blob], axis=2)


def add_noise(img: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    """``img`` plus Gaussian noise of ``sigma`` (in 8-bit units), not clipped."""
    return img + np.random.default_rng(seed).normal(0, sigma / 255, img.shape)
