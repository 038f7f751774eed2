"""Dark channel prior dehazing (He, Sun, Tang, CVPR 2009), with guided-filter refinement (He et al. 2010).

The steps are separate functions so that the post-filter's haze band (``postfilter/haze.py``) reuses them:
``dark_channel``, ``atmospheric_light``, ``transmission`` (refined by ``guided_filter``) and ``recover``.
"""

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


def transmission(img: np.ndarray, light: np.ndarray, omega: float = 0.95, patch: int = 15, radius: int = 60,
                 eps: float = 1e-3) -> np.ndarray:
    """The transmission map of HxWx3 ``img`` under atmospheric ``light``: ``1 - omega * dark(img / light)``,
    refined by the guided filter with the image's grey as the guide (not yet bounded below)."""
    t = 1.0 - omega * dark_channel(img / np.maximum(light, 1e-6), patch)
    return guided_filter(img.mean(axis=2), t, radius, eps)


def recover(img: np.ndarray, light: np.ndarray, t: np.ndarray, t0: float = 0.1) -> np.ndarray:
    """The scene radiance of the scattering model ``img = J t + light (1 - t)``, with ``t`` bounded below by
    ``t0`` (scalar or map), clipped to [0, 1]."""
    j = (img - light) / np.maximum(t, t0)[:, :, None] + light
    return np.clip(j, 0.0, 1.0)


def dehaze_dcp(hazy: np.ndarray, omega: float = 0.95, t0: float = 0.1, patch: int = 15) -> np.ndarray:
    """Dehaze an RGB float image in [0, 1]; returns RGB float in [0, 1]."""
    img = hazy.astype(np.float64)
    a = atmospheric_light(img, dark_channel(img, patch))
    return recover(img, a, transmission(img, a, omega, patch), t0)
