"""The post-filter's haze band (``postfilter/haze.py``): a bounded, checked dehaze where the detectors find haze."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from airnet_restore.constants import HAZE_MAPS
from airnet_restore.degradations import haze_any
from airnet_restore.errors import AirNetError
from airnet_restore.inspection import Inspection
from airnet_restore.postfilter import PostFilter, PostFilterParams
from airnet_restore.postfilter.haze import dehaze, haze_confidence, haze_map, haziness, map_output
from airnet_restore.postfilter.params import HazeSettings
from airnet_restore.postfilter.stage import Blend

ON = HazeSettings(enabled=True, radius=8)  # a guided filter sized for 64-px test images
MAPPED = HazeSettings(enabled=True, map="hazemap-v1", max_clipped=1.0, hazy_dark=(0.0, 1e-6))
LIGHT = np.array([0.9, 0.88, 0.86])


def scene(size: int = 64) -> np.ndarray:
    """A clean HxWx3 scene in [0.05, 0.75]: colourful gradients, one channel dark in every patch (the prior holds)."""
    y, x = np.mgrid[0:size, 0:size] / (size - 1)
    img = np.stack([0.05 + 0.7 * x, 0.05 + 0.7 * y, 0.05 + 0.35 * (1 - x) * (1 - y)], axis=2)
    img[:, :, 2] = np.minimum(img[:, :, 2], 0.1 + 0.3 * (np.sin(9 * x) > 0))  # a dark channel near 0.05-0.1
    return img


def hazy(clean: np.ndarray, t: float) -> np.ndarray:
    """``clean`` under haze of transmission ``t`` and airlight ``LIGHT``, its top 12 rows a distant horizon
    (transmission 0.02: the airlight itself, where the prior finds it)."""
    tmap = np.full((*clean.shape[:2], 1), t)
    tmap[:12] = 0.02
    return clean * tmap + LIGHT * (1 - tmap)


def rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a - b) ** 2)))


def test_a_sure_call_dehazes_a_synthetic_hazy_scene_towards_the_clean_one():
    clean = scene()
    veiled = hazy(clean, 0.45)
    assert haziness(veiled, ON) > ON.hazy_dark[1] > haziness(clean, ON)  # haze lifts the dark channel
    out, used = dehaze(veiled, veiled, 1.0, ON)
    assert used == 1.0 and out.shape == veiled.shape
    assert rmse(out[12:], clean[12:]) < 0.35 * rmse(veiled[12:], clean[12:])


def test_an_unsure_call_only_lightens_the_haze_a_little():
    veiled = hazy(scene(), 0.45)
    out, used = dehaze(veiled, veiled, 0.1, ON)
    bound = 1.0 - 0.1 * (1.0 - ON.floor)  # the transmission's lower bound: the radiance moves at most 1/bound - 1
    assert used == 0.1 and 0.0 < np.abs(out - veiled).max() <= (1.0 / bound - 1.0) + 1e-9


def test_a_clean_photo_is_left_as_it_is_even_on_a_sure_call():
    clean = scene()
    out, used = dehaze(clean, clean, 1.0, ON)  # its dark channel is near black: no haze to remove
    assert used == 0.0 and np.array_equal(out, clean)


def test_a_result_that_clips_many_pixels_is_scaled_back():
    rng = np.random.default_rng(0)
    # a bright misty picture with dark specks: a full dehaze pushes many pixels below black
    misty = np.clip(0.6 + 0.15 * rng.standard_normal((64, 64, 3)), 0, 1)
    strict = dataclasses.replace(ON, hazy_dark=(0.0, 1e-6), max_clipped=0.001)
    out, used = dehaze(misty, misty, 1.0, strict)
    loose, full = dehaze(misty, misty, 1.0, dataclasses.replace(strict, max_clipped=1.0))
    assert full == 1.0 and used < 1.0
    assert rmse(out, misty) < rmse(loose, misty)


def test_the_confidence_comes_from_the_haze_probability_less_rain_and_noise():
    assert haze_confidence({"haze": 0.9}, None, HazeSettings()) == 0.0  # disabled by default
    assert haze_confidence({"haze": 0.9, "noise": 0.1}, 0.0, ON) == 1.0
    assert haze_confidence({"haze": 0.1}, 0.0, ON) == 0.0
    assert haze_confidence({"haze": 0.9, "rain": 0.5}, 0.0, ON) == pytest.approx(0.5)
    assert haze_confidence({"haze": 0.9}, 20.0, ON) == 0.0  # noise over ``noise_sigmas``: the band stays off


def test_the_stage_plans_the_band_under_auto_only_and_applies_it():
    params = PostFilterParams(haze=ON)
    found = Inspection("haze", 0.9, None, 0.5, {"haze": 1.0, "noise": 0.0, "rain": 0.0})
    stage = PostFilter(params)
    auto = stage.plan(found)
    assert auto.haze == 1.0 and auto.strength == 1.0 and auto.anchor == 0.0 and not auto.as_is
    assert stage.plan(found, strength=1.0).haze == 0.0 and stage.plan(found, anchor=0.0).haze == 0.0
    assert PostFilter().plan(found).haze == 0.0 and PostFilter().plan(found).as_is  # the default record: no band
    clean, veiled = scene(), hazy(scene(), 0.45)
    x = torch.from_numpy(veiled).permute(2, 0, 1)[None].float()

    def crops(y: int, x0: int, th: int, tw: int) -> torch.Tensor:
        return x[:, :, y : y + th, x0 : x0 + tw]

    settled, bands = stage.finish(auto, crops, x.clone(), lambda crop: pytest.fail("ran twice"), 64)
    out = torch.cat([band for _, band in bands], 2)[0].permute(1, 2, 0).double().numpy()
    assert settled.haze == 1.0 and "dehazed 1.00" in settled.describe()
    assert rmse(out[12:], clean[12:]) < 0.35 * rmse(veiled[12:], clean[12:])
    off, bands = stage.finish(Blend(0.5, 0.5, params=params), crops, x.clone(), lambda crop: pytest.fail("ran"), 64)
    assert off.haze == 0.0 and torch.equal(torch.cat([band for _, band in bands], 2), x)


def test_the_settings_are_stored_with_the_record_and_default_where_absent():
    own = PostFilterParams(haze=dataclasses.replace(ON, sure=(0.3, 0.6), floor=0.2))
    assert PostFilterParams.from_json(own.to_json()) == own
    data = json.loads(own.to_json())
    assert PostFilterParams.from_json(json.dumps({k: v for k, v in data.items() if k != "haze"})) == PostFilterParams()
    partial = PostFilterParams.from_json(json.dumps({**data, "haze": {"enabled": True}}))
    assert partial.haze == HazeSettings(enabled=True)
    for broken in ({**data, "haze": {"shade": 1}}, {**data, "haze": {"sure": [0.6, 0.3]}}, {**data, "haze": [1]}):
        with pytest.raises(AirNetError, match="unreadable post-filter parameters"):
            PostFilterParams.from_json(json.dumps(broken), "w")
    for bad in ({"floor": 0.0}, {"enabled": 1}, {"patch": 0}, {"max_clipped": 2.0}):
        with pytest.raises(AirNetError):
            HazeSettings(**bad)


def photo_pair(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A 128-px crop of a real photo (scikit-image's coffee) and the same under the general family's haze."""
    from skimage import data

    clean = np.ascontiguousarray(data.coffee()[100:356:2, 150:406:2])
    return clean.astype(np.float64) / 255, haze_any(clean, np.random.default_rng(seed)).astype(np.float64) / 255


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((a - b) ** 2)))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_bundled_haze_map_dehazes_a_hazy_photo(seed):
    clean, veiled = photo_pair(seed)
    out, used = dehaze(veiled, veiled, 1.0, MAPPED)
    assert used == 1.0 and out.shape == veiled.shape and 0.0 <= out.min() and out.max() <= 1.0
    assert psnr(out, clean) > psnr(veiled, clean) + 3.0


def test_the_haze_map_moves_the_output_towards_the_map_of_the_input_by_the_confidence():
    clean, veiled = photo_pair(0)
    output = 0.5 * (clean + veiled)  # what a network might leave
    half, used = dehaze(output, veiled, 0.5, MAPPED)
    assert used == 0.5
    np.testing.assert_allclose(half, np.clip(output + 0.5 * (map_output(veiled, "hazemap-v1") - output), 0, 1), atol=1e-12)
    same, _ = dehaze(veiled, veiled, 0.5, MAPPED)
    assert not np.allclose(same, half)  # the map sees the input; the output is what moves


def test_a_haze_map_is_a_bundled_name_whose_bytes_are_checked(monkeypatch):
    assert HazeSettings(map="hazemap-v1").map == "hazemap-v1" and HazeSettings().map == ""
    for bad in ("hazemap-v0", 5, ["hazemap-v1"]):
        with pytest.raises(AirNetError, match="haze map must be"):
            HazeSettings(map=bad)
    own = PostFilterParams(haze=MAPPED)
    assert PostFilterParams.from_json(own.to_json()) == own
    haze_map.cache_clear()
    monkeypatch.setitem(HAZE_MAPS, "hazemap-v1", "0" * 64)
    try:
        with pytest.raises(AirNetError, match="sha256 differs"):
            haze_map("hazemap-v1")
    finally:
        haze_map.cache_clear()
