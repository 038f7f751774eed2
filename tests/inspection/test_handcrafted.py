"""The hand-crafted pixel statistics: what each group measures, on tiny synthetic images."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from airnet_restore.inspection.features import CELL, cell_regions, cell_windows
from airnet_restore.inspection.handcrafted import HAND_SET, NAMES, hand_grid

SIZE = 96


def column(name: str) -> int:
    return NAMES.index(name)


def scene(seed: int = 0) -> np.ndarray:
    """A smooth colour ramp with a few dark and bright discs: float HxWx3 in [0, 1]."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    img = np.stack([0.2 + 0.5 * x, 0.3 + 0.4 * y, 0.6 - 0.3 * x * y], axis=2)
    for _ in range(5):
        cy, cx = rng.uniform(0.1, 0.9, 2)
        img[(y - cy) ** 2 + (x - cx) ** 2 < 0.01] *= rng.uniform(0.1, 1.4)
    return np.clip(img, 0, 1)


def features(img: np.ndarray) -> np.ndarray:
    return hand_grid(np.rint(np.clip(img, 0, 1) * 255).astype(np.uint8)).features()


@pytest.mark.parametrize("sigma", [5.0, 20.0, 40.0])
def test_noise_sigma_is_read_in_the_flat_cells_and_ignores_ramps_and_edges(sigma):
    img = scene() + sigma / 255 * np.random.default_rng(1).standard_normal((SIZE, SIZE, 3))
    found = math.exp(features(img)[column("noise sigma q25")]) - 0.1
    assert found == pytest.approx(sigma, rel=0.15)
    assert math.exp(features(scene())[column("noise sigma q25")]) - 0.1 < 1.0  # the clean scene has no noise


def test_the_common_residual_is_a_third_for_independent_noise_and_one_for_grey_noise():
    rng = np.random.default_rng(2)
    independent = features(0.5 + 0.06 * rng.standard_normal((SIZE, SIZE, 3)))[column("common residual, flat cells")]
    grey = features(0.5 + 0.06 * rng.standard_normal((SIZE, SIZE, 1)).repeat(3, axis=2))[column("common residual, flat cells")]
    assert independent == pytest.approx(1 / 3, abs=0.05) and grey == pytest.approx(1.0, abs=0.05)


def test_haze_raises_the_dark_channel_and_lowers_contrast_and_saturation():
    clean = scene()
    hazy = 0.4 * clean + 0.6 * np.array([0.8, 0.8, 0.82])
    a, b = features(clean), features(hazy)
    assert b[column("dark q10")] > a[column("dark q10")] + 0.3
    assert b[column("contrast q50")] < a[column("contrast q50")]
    assert b[column("saturation q50")] < a[column("saturation q50")]


def streaks(angles: list[float], bright: bool) -> np.ndarray:
    """Thin lines of 1 px, bright or dark, over a mid-grey scene, one per angle (degrees from vertical)."""
    img = 0.5 * np.ones((SIZE, SIZE), np.float32)
    rng = np.random.default_rng(3)
    for angle in angles:
        x, y = rng.uniform(0, SIZE, 2)
        dx, dy = 10 * math.sin(math.radians(angle)), 10 * math.cos(math.radians(angle))
        cv2.line(img, (round(x - dx), round(y - dy)), (round(x + dx), round(y + dy)), 0.9 if bright else 0.1, 1)
    return np.repeat(img[:, :, None], 3, axis=2)


def test_rain_like_streaks_share_one_direction_and_are_brighter_than_their_surroundings():
    rng = np.random.default_rng(4)
    rain = features(streaks([10.0] * 40, bright=True))
    scattered = features(streaks(list(rng.uniform(0, 180, 40)), bright=True))
    sparse, dark = features(streaks([10.0] * 15, bright=True)), features(streaks([10.0] * 15, bright=False))
    assert rain[column("orientation dominance")] > scattered[column("orientation dominance")] + 0.2
    assert rain[column("best/perpendicular")] > scattered[column("best/perpendicular")] + 0.5
    assert sparse[column("white/black")] > 1.0 > -1.0 > dark[column("white/black")]  # text and wires are often dark
    level = features(streaks([90.0] * 40, bright=True))  # mortar and text run level; rain falls near vertical
    assert rain[column("vertical/horizontal")] > 0.5 > -0.5 > level[column("vertical/horizontal")]
    assert rain[column("vertical share")] > 0.45 > 0.3 > level[column("vertical share")]


def test_windows_and_regions_match_the_encoder_grid_and_every_input_kind_agrees():
    img = np.rint(scene()[:70, :90] * 255).astype(np.uint8)
    grid = hand_grid(img)
    assert grid.counts.shape == (-(-70 // CELL), -(-90 // CELL)) and grid.counts.sum() == 70 * 90
    assert grid.window_features(2, 1).shape == (len(cell_windows(grid.counts.shape, 2, 1)), len(NAMES))
    rows = cell_regions(grid.counts.shape, 2, 4)
    assert grid.region_features(2, 4).shape == (len(rows), len(rows[0]), len(NAMES))
    np.testing.assert_allclose(hand_grid(torch.from_numpy(img).permute(2, 0, 1).float() / 255).sums, grid.sums, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(hand_grid(img.astype(np.uint16) * 257).sums, grid.sums, rtol=1e-5, atol=1e-6)
    assert np.isfinite(grid.features()).all() and f"x{len(NAMES)}" in HAND_SET
