import math

import numpy as np
import pytest
import skimage.data
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from airnet_restore.metrics import average, crop_to_multiple, get_protocol, psnr, rgb_to_y, ssim


def t(a):
    return torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None]


def pairs():
    rng = np.random.default_rng(0)
    a = rng.random((45, 61, 3))
    yield a, np.clip(a + 0.1 * rng.standard_normal(a.shape), 0, 1)
    real = skimage.data.coffee()[:200, :240] / 255.0  # a real photo bundled with scikit-image (CC0)
    noisy = np.clip(real + 25 / 255 * rng.standard_normal(real.shape), 0, 1)
    yield real, noisy


def test_airnet_preset_matches_scikit_image():
    protocol = get_protocol("airnet")
    for clean, noisy in pairs():
        c16 = crop_to_multiple(t(clean))[0].permute(1, 2, 0).numpy()
        n16 = crop_to_multiple(t(noisy))[0].permute(1, 2, 0).numpy()
        p, s = protocol.score(t(noisy), t(clean))
        assert abs(p.item() - peak_signal_noise_ratio(c16, n16, data_range=1)) < 1e-4
        assert abs(s.item() - structural_similarity(c16, n16, data_range=1, channel_axis=-1)) < 1e-5


def test_basicsr_preset_matches_scikit_image_on_y():
    protocol = get_protocol("basicsr", crop_border=4)
    for clean, noisy in pairs():
        yc = rgb_to_y(t(clean))[0, 0].numpy()[4:-4, 4:-4]
        yn = rgb_to_y(t(noisy))[0, 0].numpy()[4:-4, 4:-4]
        p, s = protocol.score(t(noisy), t(clean))
        assert abs(p.item() - peak_signal_noise_ratio(yc, yn, data_range=1)) < 1e-4
        ref = structural_similarity(yc, yn, data_range=1, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
        assert abs(s.item() - ref) < 1e-5


def test_crop_to_multiple_of_16_like_the_official_loader():
    x = torch.arange(321 * 481).reshape(1, 1, 321, 481)
    y = crop_to_multiple(x)
    assert y.shape[-2:] == (320, 480)
    assert y[0, 0, 0, 0] == 0  # 321 % 16 = 1: nothing off the top, the last row goes
    x = torch.zeros(1, 1, 413, 20)
    x[..., 6, :] = 1
    assert crop_to_multiple(x)[0, 0, 0, 0] == 1  # SOTS height 413: 6 rows off the top, 7 off the bottom
    assert crop_to_multiple(x).shape[-2:] == (400, 16)


def test_identical_images_give_infinite_psnr_and_the_average_follows_the_paper():
    a = torch.rand(1, 3, 16, 16)
    assert math.isinf(psnr(a, a).item()) and ssim(a, a).item() == pytest.approx(1.0)
    assert math.isinf(average([30.0, float("inf")]))  # the official AverageMeter gives inf too
    assert average([30.0, 32.0]) == 31.0


def test_batched_scores_are_per_image():
    a, b = torch.rand(3, 3, 32, 32), torch.rand(3, 3, 32, 32)
    batched = psnr(a, b)
    assert batched.shape == (3,)
    for i in range(3):
        assert batched[i] == psnr(a[i : i + 1], b[i : i + 1])[0]
