"""The post-filter's rain band (``postfilter/rain.py``): the thin bright streaks the network removed, removed."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from airnet_restore.errors import AirNetError
from airnet_restore.inspection import Inspection
from airnet_restore.postfilter import PostFilter, PostFilterParams
from airnet_restore.postfilter.params import RainSettings
from airnet_restore.postfilter.rain import box_mean, rain_confidence, remove_streaks
from airnet_restore.postfilter.stage import MIX_ROWS, Blend

ON = RainSettings(enabled=True, sure=(0.01, 0.1), window=9)


def background(height: int = 64, width: int = 64) -> torch.Tensor:
    """A (1,3,H,W) smooth scene in [0.2, 0.6]."""
    y = torch.linspace(0, 1, height)[:, None]
    x = torch.linspace(0, 1, width)[None, :]
    return torch.stack([0.2 + 0.4 * x.expand(height, width), 0.2 + 0.4 * y.expand(height, width),
                        0.3 + 0.1 * (x * y)])[None]


def streaked(scene: torch.Tensor, every: int = 16, value: float = 0.3) -> torch.Tensor:
    """``scene`` with a one-pixel bright vertical streak every ``every`` columns (brighter by ``value``)."""
    out = scene.clone()
    out[..., every // 2 :: every] += value
    return out


def crops_of(x: torch.Tensor):
    return lambda y, x0, th, tw: x[:, :, y : y + th, x0 : x0 + tw]


def test_box_mean_is_the_mean_over_the_pixels_inside_the_image():
    t = torch.rand(1, 2, 11, 13, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    got = box_mean(t, 5)
    for y, x in ((0, 0), (5, 6), (10, 12), (3, 0)):
        window = t[:, :, max(0, y - 2) : y + 3, max(0, x - 2) : x + 3]
        torch.testing.assert_close(got[:, :, y, x], window.mean((-2, -1)))


def test_the_band_removes_thin_bright_streaks_and_leaves_tones_and_dark_detail_alone():
    scene = background()
    rainy = streaked(scene)
    network = scene - 0.05  # streaks gone, but the tones shifted darker (as small networks do)
    network[..., 20:24, 30] -= 0.2  # and a dark detail of the scene removed
    rainy[..., 20:24, 30] -= 0.2
    out = remove_streaks(rainy, network, 1.0, ON)
    streak = (..., slice(None), slice(8, None, 16))
    assert (out - scene)[streak].abs().max() < 0.3 * 0.2  # most of each 0.3 streak is gone
    rest = torch.ones_like(scene, dtype=torch.bool)
    rest[streak] = False
    assert (out - rainy)[rest].abs().max() < 1e-6  # the tone shift and the dark detail stay as the input had them
    half = remove_streaks(rainy, network, 0.5, ON)
    torch.testing.assert_close(half, 0.5 * (rainy + out))
    assert remove_streaks(rainy, network, 0.0, ON) is rainy


def test_the_confidence_comes_from_the_rain_probability_less_noise():
    presence = {"rain": 0.055, "haze": 0.0, "noise": 0.0}
    assert rain_confidence(presence, None, RainSettings()) == 0.0  # off unless the record enables it
    assert rain_confidence(presence, None, ON) == pytest.approx(0.5)
    assert rain_confidence({**presence, "rain": 0.5}, 4.0, ON) == 1.0
    assert rain_confidence({**presence, "rain": 0.5}, 12.0, ON) == pytest.approx(0.5)  # noise: the fine part is noise too
    assert rain_confidence({**presence, "rain": 0.5}, 20.0, ON) == 0.0
    assert rain_confidence({"noise": 1.0}, None, ON) == 0.0  # a probe without a rain family


def test_the_stage_plans_the_band_under_auto_only_and_applies_it_band_by_band():
    params = PostFilterParams(rain=ON)
    stage = PostFilter(params)
    found = Inspection("rain", 0.3, None, None, {"rain": 0.3, "noise": 0.0, "haze": 0.0})
    auto = stage.plan(found)
    assert auto.rain == 1.0 and not auto.as_is and "streaks 1.00" in auto.describe()
    assert stage.plan(found, strength=0.5).rain == 0.0 and stage.plan(found, anchor=0.0).rain == 0.0
    assert PostFilter().plan(found).rain == 0.0  # the default record: no band
    height = MIX_ROWS + 40  # two bands of rows: each sees the rows around it that the window needs
    scene = background(height, 48)
    rainy = streaked(scene, every=12)
    rainy[..., 100:300:7, :] += 0.2  # level streaks too, across the bands' seam
    network = scene - 0.03
    blend = Blend(0.4, 0.0, params=params, rain=0.8)
    settled, bands = stage.finish(blend, crops_of(rainy), network.clone(), lambda crop: pytest.fail("ran twice"), 64)
    got = torch.cat([band for _, band in bands], 2)
    expected = remove_streaks(rainy + 0.4 * (network - rainy), network, 0.8, ON)
    assert settled.rain == 0.8 and got.shape == rainy.shape
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)
    assert ((got - scene).square().mean() < 0.25 * (rainy - scene).square().mean())


def test_the_settings_are_stored_with_the_record_and_default_where_absent():
    own = PostFilterParams(rain=dataclasses.replace(ON, sure=(0.02, 0.2), noise_sigmas=(6.0, 12.0)))
    assert PostFilterParams.from_json(own.to_json()) == own
    data = json.loads(own.to_json())
    assert PostFilterParams.from_json(json.dumps({k: v for k, v in data.items() if k != "rain"})) == PostFilterParams()
    assert PostFilterParams.from_json(json.dumps({**data, "rain": {"enabled": True}})).rain == RainSettings(enabled=True)
    for broken in ({**data, "rain": {"drops": 1}}, {**data, "rain": {"sure": [0.2, 0.1]}}, {**data, "rain": 1}):
        with pytest.raises(AirNetError, match="unreadable post-filter parameters"):
            PostFilterParams.from_json(json.dumps(broken), "w")
    for bad in ({"window": 8}, {"window": 1}, {"enabled": "yes"}, {"noise_sigmas": (16.0, 8.0)}):
        with pytest.raises(AirNetError):
            RainSettings(**bad)
    with pytest.raises(AirNetError, match="rain must be RainSettings"):
        PostFilterParams(rain={"enabled": True})  # type: ignore[arg-type]
