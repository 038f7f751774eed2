"""Classical denoisers for the evaluation tables: CBM3D (true or estimated sigma), wavelet, non-local means.

All take and return RGB float images in [0, 1]; sigmas are on the 0-255 scale. The *blind*
ones estimate the noise level from the image itself (Donoho's wavelet MAD estimator), so
they can be run on any input, including clean photos, to show the damage they do there.
"""

from __future__ import annotations

import cv2
import numpy as np

from airnet_restore.errors import AirNetError

# OpenCV NLM filter strength per unit of estimated sigma: best mean PSNR over sigmas 15/25/50 on three
# training photos (Aqua, Garden, Wood), never on the held-out ones
NLM_H_PER_SIGMA = 0.8


def _check(img: np.ndarray) -> np.ndarray:
    if img.ndim != 3 or img.shape[2] != 3:
        raise AirNetError(f"expected an HxWx3 RGB image, got shape {img.shape}")
    return img.astype(np.float64)


def is_grey(img: np.ndarray) -> bool:
    """True when all three channels are identical (a grey photo stored as RGB)."""
    return bool(np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 0], img[..., 2]))


def estimate_sigma(img: np.ndarray) -> float:
    """Noise sigma on the 0-255 scale estimated from the image (wavelet MAD, averaged over channels)."""
    from skimage.restoration import estimate_sigma as mad_sigma

    return float(mad_sigma(_check(img), channel_axis=-1, average_sigmas=True)) * 255.0


def cbm3d(noisy: np.ndarray, sigma: float) -> np.ndarray:
    """CBM3D (the ``bm3d`` package) given the noise sigma; grey-as-RGB input runs grey BM3D on one channel,
    because bm3d's colour transform divides by the (zero) chroma range and returns NaN (black) there."""
    try:
        import bm3d
    except ImportError:
        raise AirNetError("the CBM3D baseline needs the bm3d package: pip install 'airnet-restore[eval]'") from None
    img = _check(noisy)
    if sigma < 0:
        raise AirNetError(f"CBM3D needs a noise sigma >= 0, got {sigma}")
    if sigma == 0:
        return np.clip(img, 0.0, 1.0)  # nothing to remove
    if is_grey(img):
        grey = np.asarray(bm3d.bm3d(img[..., 0], sigma / 255.0))
        return np.clip(np.repeat(grey[..., None], 3, axis=2), 0.0, 1.0)
    return np.clip(bm3d.bm3d_rgb(img, sigma / 255.0), 0.0, 1.0)


def cbm3d_blind(noisy: np.ndarray) -> np.ndarray:
    """CBM3D with the sigma estimated from the image itself."""
    return cbm3d(noisy, estimate_sigma(noisy))


def wavelet(noisy: np.ndarray) -> np.ndarray:
    """Wavelet BayesShrink (scikit-image), in YCbCr, sigma estimated per channel: blind."""
    from skimage.restoration import denoise_wavelet

    out = denoise_wavelet(
        _check(noisy), method="BayesShrink", mode="soft", channel_axis=-1, convert2ycbcr=True, rescale_sigma=True
    )
    return np.clip(out, 0.0, 1.0)


def nlm(noisy: np.ndarray) -> np.ndarray:
    """OpenCV's colour non-local means, filter strength from the estimated sigma: blind."""
    img = _check(noisy)
    h = NLM_H_PER_SIGMA * estimate_sigma(img)
    rgb8 = np.rint(np.clip(img, 0.0, 1.0) * 255.0).astype(np.uint8)
    out = cv2.fastNlMeansDenoisingColored(rgb8, None, h, h, 7, 21)
    return out.astype(np.float64) / 255.0
