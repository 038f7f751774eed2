import numpy as np
import pytest

from airnet_restore.degradations import REGISTRY, get_degradation
from airnet_restore.degradations.heldout import (
    HELDOUT_KINDS,
    box_muller,
    ground_depth,
    ho_haze,
    ho_noise,
    ho_rain,
)
from airnet_restore.errors import AirNetError


@pytest.fixture
def photo():
    y, x = np.mgrid[0:48, 0:64]
    img = np.stack([x * 3 + 20, y * 4 + 30, (x + y) * 1.5 + 40], axis=2)
    return np.clip(img, 0, 255).astype(np.uint8)


def test_every_heldout_name_is_registered_after_the_training_ones():
    assert set(HELDOUT_KINDS) <= set(REGISTRY)
    assert all(REGISTRY[n].id >= 100 for n in HELDOUT_KINDS)
    assert [n for n in REGISTRY if n.startswith("ho_")] == list(HELDOUT_KINDS)


@pytest.mark.parametrize("name", list(HELDOUT_KINDS))
def test_seeded_and_deterministic(photo, name):
    fn = get_degradation(name)
    a, b = fn(photo, np.random.default_rng(3)), fn(photo, np.random.default_rng(3))
    c = fn(photo, np.random.default_rng(4))
    assert a.shape == photo.shape and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c) and not np.array_equal(a, photo)


@pytest.mark.parametrize("sigma", [15, 25, 50])
def test_noise_std_exact_and_rounded(sigma):
    clean = np.full((96, 96, 3), 128, np.uint8)
    diff = ho_noise(clean, np.random.default_rng(0), sigma).astype(np.float64) - 128
    assert abs(diff.std() - sigma) < 0.03 * sigma
    assert abs(diff.mean()) < 0.25 * sigma / 15  # rounded: no -0.5 truncation bias


def test_box_muller_is_standard_normal_and_not_numpys_sampler():
    z = box_muller(np.random.default_rng(0), (20000,))
    assert abs(z.mean()) < 0.03 and abs(z.std() - 1) < 0.03
    assert not np.allclose(z[:10], np.random.default_rng(0).standard_normal(10))


def test_mixtures_are_haze_or_rain_then_sigma15_noise(photo):
    for name, first in (("ho_haze_noise", ho_haze), ("ho_rain_noise", ho_rain)):
        rng = np.random.default_rng(7)
        expected = ho_noise(first(photo, rng), rng, 15)
        np.testing.assert_array_equal(get_degradation(name)(photo, np.random.default_rng(7)), expected)


def test_rain_only_brightens_with_sparse_streaks(photo):
    rainy = ho_rain(photo, np.random.default_rng(1)).astype(int)
    assert (rainy >= photo.astype(int) - 1).all()  # screen blend never darkens (up to rounding)
    changed = (np.abs(rainy - photo).max(axis=2) > 8).mean()
    assert 0.01 < changed < 0.5


def test_haze_lowers_contrast_with_a_coloured_airlight(photo):
    hazy = ho_haze(photo, np.random.default_rng(2))
    assert hazy.astype(float).std() < photo.astype(float).std()
    black = ho_haze(np.zeros((32, 32, 3), np.uint8), np.random.default_rng(2)).reshape(-1, 3).mean(axis=0)
    assert black.min() > 20 and np.ptp(black) > 1  # the airlight shows through, tinted


def test_ground_depth_is_far_at_the_top():
    d = ground_depth(40, 50, np.random.default_rng(0))
    assert d.min() == 0 and d.max() == 1
    assert d[:5].mean() > d[-5:].mean() + 0.3


def test_bad_inputs_are_clear_errors(photo):
    with pytest.raises(AirNetError, match="uint8 HxWx3"):
        ho_rain(photo[:, :, 0], np.random.default_rng(0))
    with pytest.raises(AirNetError, match="sigma must be >= 0"):
        ho_noise(photo, np.random.default_rng(0), -1)
