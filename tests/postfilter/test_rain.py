"""The post-filter's rain band (``postfilter/rain.py``): the thin bright streaks the network removed, removed."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F

import airnet_restore.postfilter.rain as rain_module
from airnet_restore.errors import AirNetError
from airnet_restore.inspection import Inspection
from airnet_restore.postfilter import PostFilter, PostFilterParams
from airnet_restore.postfilter.params import RainSettings
from airnet_restore.postfilter.rain import (
    TILTS,
    box_mean,
    denoised_confidence,
    denoised_weight,
    elongation,
    line_kernels,
    rain_confidence,
    remove_streaks,
    shape_confidence,
)
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
    assert not PostFilterParams.from_json(json.dumps({**data, "rain": {"enabled": True}})).rain.elongated
    shaped = PostFilterParams(rain=dataclasses.replace(ON, elongated=True, elongation_gate=(1.0, 2.0), line=11))
    assert PostFilterParams.from_json(shaped.to_json()) == shaped
    for bad in ({"window": 8}, {"window": 1}, {"enabled": "yes"}, {"noise_sigmas": (16.0, 8.0)}, {"denoised": 1},
                {"denoised_sure": (0.6, 0.2)}, {"strong_sigmas": (25.0, 300.0)}, {"elongated": "no"},
                {"elongation_gate": (2.5, 1.5)}, {"elongation_sure": (3.0, float("inf"))}, {"line": 2}, {"line": 15.0}):
        with pytest.raises(AirNetError):
            RainSettings(**bad)
    with pytest.raises(AirNetError, match="rain must be RainSettings"):
        PostFilterParams(rain={"enabled": True})  # type: ignore[arg-type]


def rain_streaks(scene: torch.Tensor, tilt: float = 10.0, count: int = 60, length: int = 24, seed: int = 0) -> torch.Tensor:
    """``scene`` with ``count`` thin bright streaks of ``length`` px, ``tilt`` degrees from vertical, at random places."""
    g = torch.Generator().manual_seed(seed)
    out = scene.clone()
    height, width = scene.shape[-2:]
    dy, dx = torch.cos(torch.deg2rad(torch.tensor(tilt))), torch.sin(torch.deg2rad(torch.tensor(tilt)))
    for _ in range(count):
        y0, x0 = torch.randint(0, height, (1,), generator=g).item(), torch.randint(0, width, (1,), generator=g).item()
        for step in range(length):
            y, x = int(y0 + step * dy), int(x0 + step * dx)
            if 0 <= y < height and 0 <= x < width:
                out[..., y, x] += 0.25
    return out


def grain(scene: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """``scene`` with fine bright isotropic texture (specks of 1-2 px, as grain, gravel or foliage highlights)."""
    g = torch.Generator().manual_seed(seed)
    specks = (torch.rand(scene.shape[-2:], generator=g) > 0.9).float()
    specks = F.max_pool2d(specks[None, None], 2, stride=1, padding=1)[0, 0, : scene.shape[-2], : scene.shape[-1]]
    return scene + 0.25 * specks


def direct_elongation(x: torch.Tensor, out: torch.Tensor, settings: RainSettings) -> float:
    """The elongation as its docstring states it, over the whole image at once."""
    d = (x - out).mean(1, keepdim=True).double()
    s = (d - box_mean(d, settings.window)).clamp(min=0)
    lines = F.conv2d(s - s.mean(), line_kernels(settings.line).double())
    energy = lines.square().mean((0, 2, 3))
    along, across = energy[: len(TILTS)], energy[len(TILTS) :]
    best = int(along.argmax())
    return float(along[best] / across[best])


def test_line_kernels_average_along_lines_at_every_tilt_and_across_them():
    kernels = line_kernels(15)
    assert kernels.shape == (2 * len(TILTS), 1, 17, 17)
    torch.testing.assert_close(kernels.sum((1, 2, 3)), torch.ones(2 * len(TILTS)))
    vertical, level = kernels[TILTS.index(0), 0], kernels[len(TILTS) + TILTS.index(0), 0]
    assert vertical[1:16, 8].sum() > 0.99 and level[8, 1:16].sum() > 0.99  # tilt 0: a column, and a row across it
    tilted = kernels[TILTS.index(30), 0]  # 30 degrees from vertical: the bottom end lies right of the top end
    rows, cols = torch.nonzero(tilted > 0.02, as_tuple=True)
    assert cols[rows.argmax()] > cols[rows.argmin()] + 4


def test_elongation_tells_parallel_streaks_from_texture():
    scene = background(96, 96)
    settings = RainSettings(enabled=True)
    for tilt in (-20.0, 0.0, 15.0):
        assert elongation(crops_of(rain_streaks(scene, tilt)), scene, settings) > 3.0
    assert elongation(crops_of(grain(scene)), scene, settings) < 1.5
    level = scene.clone()
    level[..., 4::8, :] += 0.25  # level lines (blinds, mortar): long, but across rain's direction
    assert elongation(crops_of(level), scene, settings) < 1.5
    assert elongation(crops_of(scene), scene, settings) == 0.0  # nothing removed: nothing elongated


def test_elongation_in_bands_of_rows_is_the_whole_images_and_zero_for_an_image_too_small(monkeypatch):
    scene = background(70, 50)
    x = grain(rain_streaks(scene, 5.0, count=20), seed=3)
    settings = RainSettings(enabled=True, window=9, line=11)
    whole = direct_elongation(x, scene, settings)
    assert elongation(crops_of(x), scene, settings) == pytest.approx(whole, rel=1e-5)
    for rows in (7, 16, 33):  # bands whose line filters have fewer rows than they reach, or none at all
        monkeypatch.setattr(rain_module, "ELONGATION_ROWS", rows)
        assert elongation(crops_of(x), scene, settings) == pytest.approx(whole, rel=1e-5)
    assert elongation(crops_of(x[..., :12, :]), scene[..., :12, :], settings) == 0.0  # shorter than the line
    assert elongation(crops_of(x[..., :, :12]), scene[..., :, :12], settings) == 0.0


def test_the_shape_scales_the_detectors_confidence_and_finds_rain_they_missed():
    shaped = dataclasses.replace(ON, elongated=True, elongation_gate=(1.5, 2.5), elongation_sure=(3.0, 4.0))
    assert shape_confidence(0.7, 1.0, None, ON) == 0.7  # off unless the record enables it
    assert [shape_confidence(0.8, e, None, shaped) for e in (1.0, 2.0, 2.5, 3.5, 5.0)] == pytest.approx(
        [0.0, 0.4, 0.8, 0.8, 1.0])  # texture: the detectors' call dropped; streaks: found without them
    assert shape_confidence(0.0, 3.5, None, shaped) == pytest.approx(0.5)
    assert shape_confidence(0.0, 3.5, 12.0, shaped) == pytest.approx(0.25)  # less where noise is found
    assert shape_confidence(0.0, 5.0, 16.0, shaped) == 0.0


def test_the_stage_judges_the_shape_of_what_the_network_removed():
    """A photo the detectors call clean but whose removed part is streaks gets the band; a texture they call rainy
    does not."""
    params = PostFilterParams(rain=dataclasses.replace(ON, elongated=True))
    stage = PostFilter(params)
    clean_call = Inspection("clean", 0.9, None, None, {"rain": 0.001, "noise": 0.0, "haze": 0.0})
    rain_call = Inspection("rain", 0.9, None, None, {"rain": 0.9, "noise": 0.0, "haze": 0.0})
    noise_call = Inspection("noise", 0.9, 30.0, None, {"rain": 0.0, "noise": 1.0, "haze": 0.0})
    blend = stage.plan(clean_call)
    assert blend.shape and blend.rain == 0.0 and not blend.as_is
    assert not stage.plan(clean_call, strength=0.5).shape and not stage.plan(clean_call, anchor=0.0).shape
    assert not PostFilter(PostFilterParams(rain=ON)).plan(clean_call).shape and not stage.plan(noise_call).shape
    scene = background(96, 96)

    def run(blend: Blend, x: torch.Tensor) -> tuple[Blend, torch.Tensor]:
        settled, bands = stage.finish(blend, crops_of(x), scene.clone(), lambda crop: pytest.fail("ran twice"), 64)
        return settled, torch.cat([band for _, band in bands], 2)

    rainy = rain_streaks(scene)
    settled, got = run(dataclasses.replace(blend, strength=0.05), rainy)  # called clean: the blend keeps almost all the input
    assert settled.rain == 1.0
    kept = settled.mix(rainy, scene, rainy)  # no noise: the noise model's estimate is the input
    torch.testing.assert_close(got, remove_streaks(kept, scene, 1.0, params.rain), atol=1e-6, rtol=0)
    assert (got - scene).square().mean() < 0.1 * (rainy - scene).square().mean()
    textured = grain(scene)
    settled, got = run(stage.plan(rain_call), textured)  # called rainy: most of the correction, but no band
    assert stage.plan(rain_call).rain == 1.0 and settled.rain == 0.0
    torch.testing.assert_close(got, settled.mix(textured, scene, textured))
