import numpy as np
import pytest

from airnet_restore.baselines import cbm3d, cbm3d_blind, dehaze_dcp, estimate_sigma, is_grey, nlm, wavelet
from airnet_restore.errors import AirNetError


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((a - b) ** 2)))


@pytest.fixture
def clean():
    """Smooth 48x48 RGB float in [0.2, 0.8]: gradients and a soft blob."""
    y, x = np.mgrid[0:48, 0:48] / 47.0
    blob = np.exp(-((x - 0.5) ** 2 + (y - 0.4) ** 2) / 0.05)
    return 0.2 + 0.6 * np.stack([x, y, blob], axis=2)


def _noisy(img: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    return img + np.random.default_rng(seed).normal(0, sigma / 255, img.shape)


def test_estimated_sigma_is_close(clean):
    for sigma in (15, 30):
        assert abs(estimate_sigma(_noisy(clean, sigma)) - sigma) < 0.15 * sigma


def test_grey_rgb_input_is_not_turned_black(clean):
    grey = np.repeat(clean[:, :, :1], 3, axis=2)
    assert is_grey(grey) and not is_grey(clean)
    out = cbm3d(grey, 10)  # bm3d's colour transform divides by zero chroma range here
    assert np.isfinite(out).all() and is_grey(out)
    assert _psnr(out, grey) > 35
    noisy_grey = np.repeat(_noisy(clean[:, :, :1], 25), 3, axis=2)
    assert _psnr(cbm3d(noisy_grey, 25), grey) > _psnr(noisy_grey, grey) + 3


def test_blind_denoisers_denoise(clean):
    noisy = _noisy(clean, 25)
    before = _psnr(np.clip(noisy, 0, 1), clean)
    for fn in (cbm3d_blind, wavelet, nlm):
        out = fn(noisy)
        assert out.shape == clean.shape and out.min() >= 0 and out.max() <= 1
        assert _psnr(out, clean) > before + 3, fn.__name__


def test_wavelet_then_dcp_runs_on_hazy_noise(clean):
    hazy = 0.5 * clean + 0.45
    out = dehaze_dcp(wavelet(_noisy(hazy, 15)))
    assert out.shape == clean.shape and out.std() > hazy.std()


def test_sigma_and_shape_checks(clean):
    np.testing.assert_array_equal(cbm3d(clean, 0), clean)  # nothing to remove
    with pytest.raises(AirNetError, match="sigma >= 0"):
        cbm3d(clean, -1)
    with pytest.raises(AirNetError, match="HxWx3 RGB"):
        wavelet(clean[:, :, 0])
