import cv2
import numpy as np
import pytest

from airnet_restore.degradations import (
    REGISTRY,
    add_haze,
    add_rain,
    depth_proxy,
    gaussian_noise,
    get_degradation,
    haze_with_depth,
    official_test_noise,
    spatially_variant_noise,
)
from airnet_restore.errors import AirNetError


@pytest.fixture
def photo():
    """A smooth synthetic 'photo': gradients plus a few shapes, uint8 RGB."""
    y, x = np.mgrid[0:96, 0:128]
    img = np.stack([x * 1.5 + 30, y * 1.8 + 20, (x + y) * 0.6 + 40], axis=2)
    cv2.circle(img, (40, 50), 15, (200, 60, 60), -1)
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("name", list(REGISTRY))
def test_every_degradation_keeps_shape_dtype_and_is_seeded(photo, name):
    fn = get_degradation(name)
    a = fn(photo, np.random.default_rng(5))
    b = fn(photo, np.random.default_rng(5))
    c = fn(photo, np.random.default_rng(6))
    assert a.shape == photo.shape and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    if name == "clean":
        np.testing.assert_array_equal(a, photo)
        return
    assert not np.array_equal(a, photo)
    if name not in ("blur",):  # Gaussian blur with a drawn sigma may coincide; the rest must differ
        assert not np.array_equal(a, c)


def test_registry_ids_follow_the_paper_and_compose():
    assert [REGISTRY[n].id for n in ("noise15", "noise25", "noise50", "rain", "haze")] == [0, 1, 2, 3, 4]
    assert len({d.id for d in REGISTRY.values()}) == len(REGISTRY)
    both = get_degradation("haze+noise25")(np.full((32, 32, 3), 100, np.uint8), np.random.default_rng(0))
    assert both.mean() > 100 and both.std() > 10
    with pytest.raises(AirNetError, match="unknown degradation 'fog'"):
        get_degradation("haze+fog")


@pytest.mark.parametrize("sigma", [15, 25, 50])
def test_noise_std_and_truncation(sigma):
    clean = np.full((200, 200, 3), 128, np.uint8)
    rng = np.random.default_rng(0)
    noisy = gaussian_noise(clean, sigma, rng)
    diff = noisy.astype(np.float64) - 128
    assert abs(diff.std() - sigma) < 0.03 * sigma
    # truncation: values are floor(128 + n), so the mean is about -0.5 below the clean value
    assert -0.6 < diff.mean() < -0.4
    expected = np.clip(128 + sigma * np.random.default_rng(0).standard_normal(clean.shape), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(noisy, expected)


def test_official_test_noise_is_one_legacy_stream_in_order():
    cleans = [np.full((4, 5, 3), v, np.uint8) for v in (10, 200)]
    noise = official_test_noise(cleans)
    np.random.seed(0)  # what the official test script does
    for sigma in (15, 25, 50):
        for clean, got in zip(cleans, noise[sigma]):
            ref = np.clip(clean + sigma * np.random.randn(*clean.shape), 0, 255).astype(np.uint8)
            np.testing.assert_array_equal(got, ref)
    again = official_test_noise(cleans)
    assert all(np.array_equal(a, b) for s in noise for a, b in zip(noise[s], again[s]))


def test_spatially_variant_noise_quadrants():
    clean = np.full((200, 200, 3), 128, np.uint8)
    noisy = spatially_variant_noise(clean, np.random.default_rng(0)).astype(np.float64) - 128
    stds = [noisy[:100, :100].std(), noisy[:100, 100:].std(), noisy[100:, :100].std(), noisy[100:, 100:].std()]
    assert stds[0] == 0
    for got, want in zip(stds[1:], (15, 25, 50)):
        assert abs(got - want) < 0.05 * want


def test_haze_transmission_is_monotone_in_depth():
    clean = np.full((1, 50, 3), 60, np.uint8)
    depth = np.linspace(0, 10, 50)[None]
    hazy = haze_with_depth(clean, depth, airlight=0.9, beta=0.1).astype(int)[0, :, 0]
    assert (np.diff(hazy) >= 0).all() and hazy[-1] > hazy[0] + 50  # farther = closer to the airlight
    assert hazy.max() <= round(0.9 * 255)


def test_haze_depth_proxy_is_smooth_and_far_at_the_top(photo):
    d = depth_proxy(photo)
    assert d.shape == photo.shape[:2] and d.min() == 0 and d.max() == pytest.approx(1)
    assert d[:10].mean() > d[-10:].mean()
    assert np.abs(np.diff(d, axis=0)).max() < 0.1 and np.abs(np.diff(d, axis=1)).max() < 0.1
    hazy = add_haze(photo, np.random.default_rng(0))
    assert hazy.astype(float).std() < photo.astype(float).std()  # contrast drops


def test_rain_adds_bright_streaks_at_the_requested_angle():
    clean = np.full((160, 160, 3), 80, np.uint8)
    for angle in (-20.0, 0.0, 25.0):
        rainy = add_rain(clean, np.random.default_rng(1), angle=angle, length=30)
        diff = rainy.astype(float)[:, :, 0] - 80
        assert diff.min() >= 0 and (diff > 20).mean() > 0.01
        assert abs(streak_angle(diff) - angle) < 5, (angle, streak_angle(diff))


def streak_angle(layer):
    """Orientation (degrees from vertical) of the elongated central peak of the autocorrelation."""
    f = np.fft.fft2(layer - layer.mean())
    ac = np.fft.fftshift(np.real(np.fft.ifft2(np.abs(f) ** 2)))
    c = np.array(ac.shape) // 2
    win = ac[c[0] - 15 : c[0] + 16, c[1] - 15 : c[1] + 16]
    w = np.where(win > 0.3 * win.max(), win, 0)
    ys, xs = np.mgrid[-15:16, -15:16]
    cyy, cxx, cxy = (w * ys * ys).sum(), (w * xs * xs).sum(), (w * xs * ys).sum()
    major = 0.5 * np.degrees(np.arctan2(2 * cxy, cxx - cyy))  # principal axis, from the x axis
    return 90 - major if major > 0 else -90 - major
