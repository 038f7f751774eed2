"""The classical denoisers (baselines/denoise.py): sigma estimate, grey input, blind denoising, checks."""

import numpy as np
import pytest

from airnet_restore.baselines import cbm3d, cbm3d_blind, estimate_sigma, is_grey, nlm, wavelet
from airnet_restore.errors import AirNetError
from tests.baselines.conftest import add_noise, psnr


def test_estimated_sigma_is_close(clean):
    for sigma in (15, 30):
        assert abs(estimate_sigma(add_noise(clean, sigma)) - sigma) < 0.15 * sigma


def test_grey_rgb_input_is_not_turned_black(clean):
    grey = np.repeat(clean[:, :, :1], 3, axis=2)
    assert is_grey(grey) and not is_grey(clean)
    out = cbm3d(grey, 10)  # bm3d's colour transform divides by zero chroma range here
    assert np.isfinite(out).all() and is_grey(out)
    assert psnr(out, grey) > 35
    noisy_grey = np.repeat(add_noise(clean[:, :, :1], 25), 3, axis=2)
    assert psnr(cbm3d(noisy_grey, 25), grey) > psnr(noisy_grey, grey) + 3


def test_blind_denoisers_denoise(clean):
    noisy = add_noise(clean, 25)
    before = psnr(np.clip(noisy, 0, 1), clean)
    for fn in (cbm3d_blind, wavelet, nlm):
        out = fn(noisy)
        assert out.shape == clean.shape and out.min() >= 0 and out.max() <= 1
        assert psnr(out, clean) > before + 3, fn.__name__


def test_sigma_and_shape_checks(clean):
    np.testing.assert_array_equal(cbm3d(clean, 0), clean)  # nothing to remove
    with pytest.raises(AirNetError, match="sigma >= 0"):
        cbm3d(clean, -1)
    with pytest.raises(AirNetError, match="HxWx3 RGB"):
        wavelet(clean[:, :, 0])
