"""The general training family: ranges, forms and mixtures behave as documented."""

import numpy as np
import pytest

from airnet_restore.degradations import get_degradation, haze_any, identity, noise_any, rain_any
from airnet_restore.degradations.general import NOISE_SIGMA_MAX, haze_depth, noise_field


@pytest.fixture
def texture():
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:64, 0:80]
    img = np.stack([60 + x, 50 + y, 90 + 0.5 * (x + y)], axis=2) + rng.integers(-20, 20, (64, 80, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def test_identity_is_an_equal_copy(texture):
    out = identity(texture, np.random.default_rng(0))
    np.testing.assert_array_equal(out, texture)
    assert out is not texture


def test_every_noise_form_has_the_drawn_strength_at_mid_grey():
    grey = np.full((64, 64, 3), 128, np.uint8)
    for seed in range(30):  # covers all three forms (drawn first from the generator)
        field = noise_field(grey, np.random.default_rng(seed), 20.0)
        assert field.shape == grey.shape
        assert abs(field.mean()) < 1.5 and 18.5 < field.std() < 21.5, seed


def test_noise_levels_span_mild_to_strong_without_bias():
    grey = np.full((48, 48, 3), 128, np.uint8)
    stds, means = [], []
    for seed in range(200):
        residual = noise_any(grey, np.random.default_rng(seed)).astype(float) - 128
        stds.append(residual.std())
        means.append(residual.mean())
    stds = np.array(stds)
    assert stds.min() < 3 and stds.max() > 45 and stds.max() < NOISE_SIGMA_MAX + 5
    assert np.mean(stds < 15) > 0.3  # mild levels are common, not a rarity
    assert abs(np.mean(means)) < 0.5  # rounding, not the paper's truncation: no darkening


def test_rain_adds_bright_streaks_of_varied_coverage(texture):
    dark = (texture // 3).astype(np.uint8)
    coverage = []
    for seed in range(40):
        out = rain_any(dark, np.random.default_rng(seed)).astype(int)
        changed = np.abs(out - dark).max(axis=2) > 8
        coverage.append(changed.mean())
        assert out.mean() >= dark.mean()  # streaks (and a veil) brighten a dark scene
    assert min(coverage) < 0.15 and max(coverage) > 0.3


def test_haze_lowers_contrast_towards_a_bright_airlight(texture):
    for seed in range(20):
        out = haze_any(texture, np.random.default_rng(seed)).astype(float)
        assert out.std() < texture.std()
        assert out.mean() > texture.mean()


def test_haze_mixes_in_stored_values_or_in_light():
    """Stored-value haze is affine in the scene (equal steps stay equal); haze mixed in light
    compresses the dark step far more than the bright one. The family holds both."""
    stripes = np.zeros((60, 60, 3), np.uint8)
    for k, level in enumerate((20, 100, 180)):
        stripes[:, k::3] = level
    ratios = []
    for seed in range(16):
        out = haze_any(stripes, np.random.default_rng(seed)).astype(float).mean(axis=2)
        dark_step, bright_step = out[:, 1::3] - out[:, 0::3], out[:, 2::3] - out[:, 1::3]
        ratios.append(float(np.median(dark_step / np.maximum(bright_step, 0.5))))
    affine = [r for r in ratios if abs(r - 1.0) < 0.1]
    in_light = [r for r in ratios if r < 0.7]
    assert len(affine) >= 4 and len(in_light) >= 4 and len(affine) + len(in_light) == len(ratios)


def test_haze_depth_is_normalised(texture):
    for seed in range(20):
        d = haze_depth(texture, np.random.default_rng(seed))
        assert d.shape == texture.shape[:2] and d.min() >= 0 and d.max() <= 1 + 1e-6


def test_mixtures_compose_in_order(texture):
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    mixed = get_degradation("haze_any+noise_any")(texture, rng_a)
    np.testing.assert_array_equal(mixed, noise_any(haze_any(texture, rng_b), rng_b))


def test_rain_drawn_streak_by_streak_keeps_each_streaks_own_opacity():
    """The drawn layer is not normalised: no streak exceeds the largest opacity (0.9), and separate
    streaks have clearly different peaks (faint and strong rain in one shower)."""
    import cv2

    from airnet_restore.degradations.general import _segments

    for seed in range(6):
        layer = _segments(160, 160, np.random.default_rng(seed), angle=10.0)
        assert 0.1 < layer.max() <= 0.9
        count, labels = cv2.connectedComponents((layer > 0.02).astype(np.uint8))
        peaks = np.array([layer[labels == k].max() for k in range(1, count)])
        assert len(peaks) >= 3 and peaks.std() > 0.08 and peaks.min() < 0.4
