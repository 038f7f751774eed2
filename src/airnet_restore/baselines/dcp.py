"""Dark channel prior dehazing (He, Sun, Tang, CVPR 2009), with guided-filter refinement (He et al. 2010)."""

from __future__ import annotations

import cv2
import numpy as np


def dark_channel(img: np.ndarray, patch: int = 15) -> np.ndarray:
    """Minimum over colour channels and a ``patch`` x ``patch`` neighbourhood."""
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (patch, patch))
    return cv2.erode(img.min(axis=2), kernel, borderType=cv2.BORDER_REPLICATE)


def atmospheric_light(img: np.ndarray, dark: np.ndarray, fraction: float = 0.001) -> np.ndarray:
    """Among the brightest ``fraction`` of dark-channel pixels, the colour of the most intense input pixel."""
    n = max(1, int(dark.size * fraction))
    idx = np.argpartition(dark.ravel(), -n)[-n:]
    candidates = img.reshape(-1, 3)[idx]
    return candidates[candidates.sum(axis=1).argmax()]


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int = 60, eps: float = 1e-3) -> np.ndarray:
    """Edge-preserving smoothing of ``src`` steered by the grey ``guide`` (box-filter form)."""
    size = (2 * radius + 1, 2 * radius + 1)

    def box(x: np.ndarray) -> np.ndarray:
        return cv2.boxFilter(x, -1, size, borderType=cv2.BORDER_REFLECT)

    mean_i, mean_p = box(guide), box(src)
    cov_ip = box(guide * src) - mean_i * mean_p
    var_i = box(guide * guide) - mean_i * mean_i
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    return box(a) * guide + box(b)


def dehaze_dcp(hazy: np.ndarray, omega: float = 0.95, t0: float = 0.1, patch: int = 15) -> np.ndarray:
    """Dehaze an RGB float image in [0, 1]; returns RGB float in [0, 1]."""
    img = hazy.astype(np.float64)
    a = atmospheric_light(img, dark_channel(img, patch))
    t = 1.0 - omega * dark_channel(img / np.maximum(a, 1e-6), patch)
    t = guided_filter(img.mean(axis=2), t)
    j = (img - a) / np.maximum(t, t0)[:, :, None] + a
    return np.clip(j, 0.0, 1.0)
