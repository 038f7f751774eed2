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
from airnet_restore.postfilter.rain import box_mean, denoised_confidence, denoised_weight, rain_confidence, remove_streaks
from airnet_restore.postfilter.stage import MIX_ROWS, Blend, noise_estimate

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


def test_the_denoised_judgement_takes_the_share_noise_took_and_fades_for_strong_noise():
    denoised = dataclasses.replace(ON, denoised=True, denoised_sure=(0.2, 0.6), strong_sigmas=(30.0, 50.0))
    assert denoised_weight(20.0, ON) == 0.0 and denoised_weight(20.0, RainSettings(denoised=True)) == 0.0  # off
    assert [denoised_weight(s, denoised) for s in (None, 8.0, 12.0, 16.0, 30.0, 40.0, 50.0)] == pytest.approx(
        [0.0, 0.0, 0.5, 1.0, 1.0, 0.5, 0.0])
    for sigma in (4.0, 12.0, 20.0):  # the two judgements share the band between them
        assert rain_confidence({"rain": 1.0}, sigma, denoised) + denoised_weight(sigma, denoised) == pytest.approx(1.0)
    assert denoised_confidence({"rain": 0.4, "noise": 0.0}, 40.0, denoised) == pytest.approx(0.25)
    assert denoised_confidence({"noise": 1.0}, 20.0, denoised) == 0.0


def test_under_noise_the_band_judges_the_noise_models_estimate_with_the_detectors():
    """Noise hides rain from the detectors: where noise is found, ``finish`` asks them again about the noise
    model's estimate (``judge``), and the band takes the streaks that judgement finds."""
    rain = dataclasses.replace(ON, denoised=True, denoised_sure=(0.2, 0.6))
    params = PostFilterParams(rain=rain)
    stage = PostFilter(params)
    scene = background()
    noisy = (streaked(scene) + 0.08 * torch.randn(scene.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    network = scene - 0.02  # the streaks and the noise removed
    found = Inspection("noise", 0.9, 20.0, None, {"rain": 0.01, "noise": 1.0, "haze": 0.0})
    blend = stage.plan(found)
    assert blend.rejudge and blend.rain == 0.0 and not blend.as_is
    assert not stage.plan(found, strength=1.0).rejudge and not PostFilter(PostFilterParams(rain=ON)).plan(found).rejudge
    assert not stage.plan(Inspection("rain", 0.9, None, None, {"rain": 0.9, "noise": 0.0, "haze": 0.0})).rejudge
    seen: list[torch.Tensor] = []

    def judge(rain_found: float):
        def look(image: torch.Tensor) -> Inspection:
            seen.append(image)
            return Inspection("rain", 0.9, None, None, {"rain": rain_found, "noise": 0.0, "haze": 0.0})
        return look

    def run(judged):
        settled, bands = stage.finish(blend, crops_of(noisy), network.clone(), lambda crop: pytest.fail("ran twice"), 64,
                                      judged)
        return settled, torch.cat([band for _, band in bands], 2)

    plain, without = run(None)
    assert plain.rain == 0.0 and not seen
    unsure, same = run(judge(0.1))
    assert unsure.rain == 0.0
    torch.testing.assert_close(same, without)
    sure, got = run(judge(0.9))
    assert sure.rain == 1.0 and "streaks 1.00" in sure.describe()
    estimate = noise_estimate(noisy, network, sure.sigma, params).clamp(0, 1)
    assert seen[-1].shape == (3, 64, 64)
    torch.testing.assert_close(seen[-1], estimate[0], atol=1e-5, rtol=0)  # the detectors saw the noise model's estimate
    torch.testing.assert_close(got, remove_streaks(without, network, 1.0, rain), atol=1e-6, rtol=0)
    streak = (..., slice(None), slice(8, None, 16))
    assert (got - scene)[streak].abs().mean() < 0.5 * (without - scene)[streak].abs().mean()


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
    assert not PostFilterParams.from_json(json.dumps({**data, "rain": {"enabled": True}})).rain.denoised  # v11's record
    for bad in ({"window": 8}, {"window": 1}, {"enabled": "yes"}, {"noise_sigmas": (16.0, 8.0)}, {"denoised": 1},
                {"denoised_sure": (0.6, 0.2)}, {"strong_sigmas": (25.0, 300.0)}):
        with pytest.raises(AirNetError):
            RainSettings(**bad)
    with pytest.raises(AirNetError, match="rain must be RainSettings"):
        PostFilterParams(rain={"enabled": True})  # type: ignore[arg-type]
