"""The post-filter stage: strength and anchor (the noise model's estimate), that estimate, and the stage in the pipeline."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from PIL import Image

from airnet_restore.errors import AirNetError
from airnet_restore.inference import pipeline, restore_files, restore_tensor
from airnet_restore.inference.pipeline import restore_image, restore_pixels
from airnet_restore.inspection import Inspection
from airnet_restore.postfilter import PostFilter, PostFilterParams, WienerSettings
from airnet_restore.postfilter.stage import (
    Blend,
    auto_anchor,
    clipped_noise_mean,
    noise_estimate,
    noise_estimate_crops,
    noise_likeness,
    residual_sums,
)
from airnet_restore.postfilter.wiener import wiener
from tests.conftest import TINY, make_tiny

P = PostFilterParams()
REACH = P.wiener.reach(P.wiener.passes)


def crops_of(x: torch.Tensor):
    """The ``Crop`` of a (1,3,H,W) image."""
    return lambda y, x0, th, tw: x[:, :, y : y + th, x0 : x0 + tw]


def applied(blend: Blend, network, x: torch.Tensor) -> torch.Tensor:
    """The stage's output for a settled ``blend`` over the (1,3,H,W) image ``x`` and ``network``'s whole output."""
    out = network(x).clamp(0, 1)
    _, bands = PostFilter(blend.params).finish(blend, crops_of(x), out.clone(), lambda crop: pytest.fail("ran twice"),
                                               max(x.shape[-2:]))
    return torch.cat([band for _, band in bands], 2)


class Pointwise(torch.nn.Module):
    """A network whose output at a pixel depends on that pixel alone: tiling cannot change it."""

    config = TINY

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return 0.8 * t + 0.1 * t.mean(1, keepdim=True) + 0.05


def mid_grey_photo(seed: int, size: int = 48) -> torch.Tensor:
    """A (1,3,size,size) image in [0.2, 0.8]: room for a shift either way without clipping."""
    return 0.2 + 0.6 * torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(seed))


def textured_photo(seed: int, size: int = 64) -> torch.Tensor:
    """A (1,3,size,size) image in [0.2, 0.8] with smooth tones and fine detail (sums of random waves)."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    out = torch.zeros(3, size, size)
    for _ in range(12):
        f, phase, amp = torch.rand(2, generator=g) * 1.5, torch.rand(1, generator=g) * 6.3, torch.rand(3, 1, 1, generator=g)
        out += amp * torch.sin(f[0] * xx + f[1] * yy + phase)
    out = (out - out.amin()) / (out.amax() - out.amin())
    return (0.2 + 0.6 * out)[None]


def noisy(y: torch.Tensor, sigma: float, seed: int) -> torch.Tensor:
    """``y`` plus white Gaussian noise of ``sigma`` (0-255 scale), unclipped."""
    return y + sigma / 255 * torch.randn(y.shape, generator=torch.Generator().manual_seed(seed))


def test_the_noise_model_refines_its_estimate_with_itself_as_the_pilot():
    y = textured_photo(8, 96)
    x = noisy(y, 25.0, 9)
    pilot = torch.nn.functional.avg_pool2d(x, 5, 1, 2, count_include_pad=False)  # a poor pilot: noise and blur
    psnr = lambda t: (10 * torch.log10(1 / ((t - y) ** 2).mean())).item()  # noqa: E731
    refined = noise_estimate(x, pilot, 25 / 255, P)
    first = wiener(x - (clipped_noise_mean(pilot, 25 / 255) - pilot), pilot, 25 / 255)
    guide = first.clamp(0, 1)
    expected = wiener(x - (clipped_noise_mean(guide, 25 / 255) - guide), guide, 25 / 255, passes=1)  # P.rounds (3, 1)
    torch.testing.assert_close(refined, expected)
    assert psnr(refined) > psnr(first) + 0.1, (psnr(refined), psnr(first))
    one_round = PostFilterParams(rounds=(P.wiener.passes,))
    torch.testing.assert_close(noise_estimate(x, pilot, 25 / 255, one_round), first)


def test_the_anchor_removes_a_tone_shift_and_the_noise_keeps_the_detail():
    y = textured_photo(2)
    x = noisy(y, 15.0, 3)
    network = lambda t: y - 0.1  # noqa: E731 - denoises perfectly but darkens by 0.1
    torch.testing.assert_close(applied(Blend(1.0, 0.0, 15.0), network, x), y - 0.1)
    anchored = applied(Blend(1.0, 1.0, 15.0), network, x)
    assert (anchored - y).mean().abs() < 2e-3  # the shift is gone ...
    assert ((anchored - y) ** 2).mean() < 0.25 * ((x - y) ** 2).mean()  # ... and most of the noise
    half = applied(Blend(0.5, 0.5, 15.0), network, x)
    out = (y - 0.1).clamp(0, 1)
    estimate = noise_estimate(x, out, 15 / 255, P)
    torch.testing.assert_close(half, x + 0.5 * (0.5 * (out - x) + 0.5 * (estimate - x)))
    assert torch.equal(applied(Blend(0.0, 1.0), network, x), x)
    torch.testing.assert_close(applied(Blend(1.0, 1.0, 0.0), network, x), x)  # no noise found: the input stands


def test_clipped_noise_mean_is_the_mean_of_clipped_noise():
    y = torch.tensor([0.0, 0.03, 0.3, 0.5, 0.97, 1.0])
    draws = (y + 0.2 * torch.randn(400_000, 6, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    torch.testing.assert_close(clipped_noise_mean(y, 0.2), draws.mean(0), atol=1.5e-3, rtol=0)
    assert torch.equal(clipped_noise_mean(y, 0.0), y)


def test_the_anchor_knows_that_clipped_noise_brightens_shadows():
    """A dark photo under strong noise: the clipped input is brighter on average than the photo, and the
    anchor, told the noise, keeps the network's (here: perfect) shadows instead of the input's mean."""
    y = torch.full((1, 3, 48, 48), 0.04)
    x = (y + 50 / 255 * torch.randn(y.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    perfect = lambda t: y  # noqa: E731
    told = applied(Blend(1.0, 1.0, noise=50.0), perfect, x)
    untold = applied(Blend(1.0, 1.0), perfect, x)
    assert (told - y).mean().abs() < 2 / 255 < (untold - y).mean().abs() - 10 / 255


def test_restore_tensor_applies_the_blend_and_tiles_do_not_change_the_stage():
    model = make_tiny().eval()
    x = noisy(textured_photo(4, 300), 20.0, 5).clamp(0, 1)[0]
    net = restore_tensor(model, x, tile=None, postfilter="none")
    assert torch.equal(net, restore_tensor(model, x, tile=None, strength=1.0, anchor=0.0))
    whole = restore_tensor(model, x, tile=None, strength=0.8, anchor=0.6)  # no prototypes: no noise found
    torch.testing.assert_close(whole, (x + 0.8 * 0.4 * (net - x)).clamp(0, 1), atol=2e-6, rtol=0)
    blend = Blend(0.8, 0.6, 20.0)
    whole = restore_tensor(model, x, tile=None, blend=blend)
    estimate = noise_estimate(x[None], net[None], 20 / 255, P)[0]
    torch.testing.assert_close(whole, (x + 0.8 * (0.4 * (net - x) + 0.6 * (estimate - x))).clamp(0, 1), atol=2e-6, rtol=0)
    # The stage runs on the assembled network output with all the context it needs: tiles change only what
    # the network's own tiles change (nothing, for a network that looks at one pixel at a time).
    pointwise = Pointwise()
    for b in (blend, Blend(0.8, 0.2, 20.0, check=0.75)):
        tiled = restore_tensor(pointwise, x, tile=64, tile_overlap=16, blend=b)
        torch.testing.assert_close(tiled, restore_tensor(pointwise, x, tile=None, blend=b), atol=1e-5, rtol=0)


@pytest.mark.parametrize("params", [PostFilterParams(wiener=WienerSettings(levels=1), rounds=(2, 1)),
                                    pytest.param(P, marks=pytest.mark.slow)])
def test_the_noise_model_in_crops_with_its_context_equals_the_whole_image(params):
    """Crops with ``params.context`` around them filter each pixel as the whole image does, whatever the crop size
    (an image longer than a crop and its context on both sides, so that some crops reach neither end)."""
    long = 2 * params.context + 3 * 64 + 5
    x = noisy(textured_photo(7, long)[..., :20], 25.0, 2).clamp(0, 1)
    pilot = x.clone()
    pilot[..., 1:-1, :] = (x[..., :-2, :] + x[..., 1:-1, :] + x[..., 2:, :]) / 3  # a smoother guide
    whole = noise_estimate(x, pilot, 25 / 255, params)
    cropped = noise_estimate_crops(crops_of(x), pilot, 25 / 255, params, tile=64)
    torch.testing.assert_close(cropped, whole, atol=1e-5, rtol=0)
    short = PostFilterParams(wiener=params.wiener, rounds=params.rounds[:1])
    assert short.context <= params.context  # fewer rounds see less far


def test_the_check_takes_noise_removal_for_noise_alone_and_a_change_of_tones_for_more():
    y = textured_photo(6, 96)
    x = noisy(y, 25.0, 8)
    assert noise_likeness(residual_sums(x, y, 25 / 255, 4), P) == 1.0  # a perfect denoiser leaves white noise
    hazy = 0.6 * y + 0.35
    assert noise_likeness(residual_sums(noisy(hazy, 25.0, 9), y, 25 / 255, 4), P) == 0.0  # a dehazer moves local means
    streaks = torch.zeros_like(y)
    for start in range(0, 96, 12):
        streaks[..., start : start + 3] = 0.3
    assert noise_likeness(residual_sums(noisy(y + streaks, 25.0, 10), y, 25 / 255, 4), P) < 0.5  # rain streaks, mostly
    # bands of rows, each given the window's reach into the next, add up to the whole image's sums
    bands = sum(residual_sums(x[..., r : r + 35, :], y[..., r : r + 35, :], 0.1, 4, 32) for r in range(0, 96, 32))
    torch.testing.assert_close(bands, residual_sums(x, y, 0.1, 4), rtol=1e-12, atol=0)
    assert noise_likeness(torch.tensor([0.0, 0.0, 10.0, 9.0]), P) == 1.0  # nothing left: nothing but noise removed
    tiny = residual_sums(x[..., :3, :], y[..., :3, :], 0.1, 4)  # too small for a window: nothing to check ...
    assert tiny[3] == 0 and Blend(1.0, 0.3, 25.0, check=1.0).settle(tiny) == Blend(1.0, 0.3, 25.0)  # ... detectors decide


@pytest.mark.slow  # about 10 s; tiled = whole with a check stays in the default run (test_restore_tensor_applies_...)
@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device"))])
def test_a_blend_with_a_check_settles_on_the_network_output_whole_tiled_or_as_pixels(device):
    model = make_tiny().eval()
    if device != "cpu":  # the image stays on its device; the check's sums come back to the CPU
        checked = restore_tensor(model.to(device), textured_photo(3, 64)[0].to(device), blend=Blend(1.0, 0.2, 20.0, check=1.0))
        assert checked.device.type == device and torch.isfinite(checked).all()
        return
    x = noisy(textured_photo(4, 300), 20.0, 5).clamp(0, 1)[0]
    blend = Blend(0.8, 0.2, 20.0, check=0.75)
    assert not blend.settled and blend.settle(torch.tensor([1.0, 0.0, 1.0, 1.0])) == Blend(0.8, 0.8, 20.0)
    assert blend.settle(torch.tensor([1.0, 1.0, 1.0, 1.0])) == Blend(0.8, 0.05, 20.0)  # unsure detectors: the check decides
    sure = Blend(0.8, 0.95, 20.0, check=1.0)
    assert sure.settle(torch.tensor([1.0, 1.0, 1.0, 1.0])) == Blend(0.8, 0.95, 20.0)  # sure detectors: it only raises it
    net = restore_tensor(model, x, tile=None, postfilter="none")[None]
    likeness = noise_likeness(residual_sums(x[None], net, 20 / 255, 4), P)
    settled = Blend(0.8, 0.25 * 0.2 + 0.75 * likeness, 20.0)
    whole = restore_tensor(model, x, tile=None, blend=blend)
    torch.testing.assert_close(whole, restore_tensor(model, x, tile=None, blend=settled), atol=2e-6, rtol=0)
    tiled = restore_tensor(model, x, tile=160, tile_overlap=64, blend=blend)
    tiled_settled = restore_tensor(model, x, tile=160, tile_overlap=64, blend=settled)
    assert (tiled - tiled_settled).abs().max() < 1e-3  # the check over the stitched output: nearly the same anchor
    odd = x[:, :259]  # one band of 256 rows and a last one of 3: the same sums as the whole image
    net_odd = restore_tensor(model, odd, tile=None, postfilter="none")[None]
    done = restore_image(model, odd.permute(1, 2, 0).numpy(), tile=None, blend=blend).blend
    assert done.anchor == pytest.approx(0.25 * 0.2 + 0.75 * noise_likeness(residual_sums(odd[None], net_odd, 20 / 255, 4), P))
    pixels = (x.permute(1, 2, 0).numpy() * 255).round().astype("uint8")
    done_pixels = restore_image(model, pixels, tile=160, blend=blend)
    assert done_pixels.blend.settled and done_pixels.blend.anchor == pytest.approx(settled.anchor, abs=0.02)
    assert (done_pixels.pixels.astype(int) - (tiled.permute(1, 2, 0).numpy() * 255).round()).__abs__().max() <= 1


def test_where_the_check_confirms_more_than_noise_the_network_restores_the_noise_models_estimate():
    model = make_tiny().eval()
    x = noisy(textured_photo(5, 96), 20.0, 6).clamp(0, 1)
    blend = Blend(0.8, 0.2, 20.0, check=0.75, first=True)
    assert blend.settle(torch.tensor([1.0, 1.0, 1.0, 1.0])) == Blend(0.8, 0.05, 20.0, first=True)  # more than noise
    assert blend.settle(torch.tensor([1.0, 0.0, 1.0, 1.0])) == Blend(0.8, 0.8, 20.0)  # noise alone: once is enough
    sigma = 20 / 255
    with torch.no_grad():
        net = model(x).clamp(0, 1)
        estimate = noise_estimate(x, net, sigma, P)
        again = model(estimate.clamp(0, 1)).clamp(0, 1)
    settled = blend.settle(residual_sums(x, net, sigma, 4))  # the check reads the first pass: an untrained network
    assert settled.first and settled.anchor == 0.05      # changes more than noise
    done = restore_image(model, x[0].permute(1, 2, 0).numpy(), tile=None, blend=blend)
    out, applied = done.pixels, done.blend
    assert applied == settled and not applied.settled  # the second pass still to come: given back, it runs again
    torch.testing.assert_close(restore_image(model, x[0].permute(1, 2, 0).numpy(), tile=None, blend=applied).pixels, out)
    expected = x + 0.8 * (0.95 * (again - x) + 0.05 * (estimate - x))
    torch.testing.assert_close(torch.from_numpy(out).permute(2, 0, 1)[None], expected.clamp(0, 1), atol=1e-5, rtol=0)
    whole = restore_tensor(model, x[0], tile=None, blend=blend)
    assert (whole - restore_tensor(model, x[0], tile=None, blend=dataclasses.replace(blend, first=False))).abs().max() > 0.01
    tiled = restore_tensor(model, x[0], tile=64, tile_overlap=16, blend=blend)
    assert (tiled - whole).abs().mean() < 2e-3  # tiles: both passes of the network cross-faded
    with pytest.raises(AirNetError, match="first must be True or False"):
        Blend(1.0, 0.5, 20.0, first=1)
    with pytest.raises(AirNetError, match="needs a noise sigma"):
        Blend(1.0, 0.5, 0.0, first=True)


def test_the_plan_gives_the_check_its_weight_by_the_noise_found(monkeypatch, tmp_path):
    stage = PostFilter()
    for sigma, check in ((None, 0.0), (4.0, 0.0), (12.0, 0.5), (30.0, 1.0)):
        found = Inspection("noise", 0.9, sigma, None, {"haze": 0.5, "noise": 0.95})
        blend = stage.plan(found)
        assert blend.check == check and blend.anchor == 0.5
        assert blend.first == (check > 0)  # haze as likely as not, beside noise the check weighs
        assert not stage.plan(found, strength=0.0).first  # nothing restored: no second pass
        assert stage.plan(found, anchor=0.3).check == 0.0  # an anchor given is used as given
    assert stage.plan(None, detectors=True) == Blend(0.0)  # too small to judge: left alone
    assert stage.plan(None, detectors=False) == Blend(1.0)  # no detectors: the network's output
    own = PostFilterParams(check_sigmas=(2.0, 4.0), mixed=0.6)  # the weights' own numbers decide
    blend = PostFilter(own).plan(Inspection("noise", 0.9, 3.0, None, {"haze": 0.45, "noise": 0.95}))
    assert blend.check == 0.5 and not blend.first and blend.params is own
    model = make_tiny().eval()
    image = mid_grey_photo(3, 32)[0]
    monkeypatch.setattr(pipeline, "_plan", lambda *a: (Blend(1.0, 0.2, 25.0, 1.0), None))
    (tmp_path / "in").mkdir()
    Image.fromarray((image.permute(1, 2, 0).numpy() * 255).astype("uint8")).save(tmp_path / "in" / "a.png")
    report = restore_files([tmp_path / "in" / "a.png"], tmp_path / "out", model, progress=False)
    assert report.blends[tmp_path / "in" / "a.png"].settled  # the report says the anchor applied


def test_auto_anchor_is_the_probability_that_only_noise_is_present():
    found = Inspection("rain+noise", 0.5, 30.0, None, {"haze": 0.2, "rain": 0.5, "noise": 0.9})
    assert auto_anchor(found) == pytest.approx(0.8 * 0.5)
    assert auto_anchor(Inspection("noise", 0.9, 10.0, None, {"noise": 0.99})) == 1.0


def test_bad_blends_are_refused_before_any_work(tmp_path):
    model = make_tiny().eval()
    x = mid_grey_photo(2, 32)[0]
    for bad in (1.5, -0.1, "high", True, float("nan")):
        with pytest.raises(AirNetError, match="anchor must be 'auto' or a number from 0"):
            restore_tensor(model, x, anchor=bad)
        with pytest.raises(AirNetError, match="anchor must be"):
            Blend(1.0, bad)
    with pytest.raises(AirNetError, match=r"resolved by PostFilter\.plan"):
        Blend("auto")
    for noise in (-1.0, 300.0, "25"):
        with pytest.raises(AirNetError, match="noise must be a sigma"):
            Blend(1.0, 0.5, noise)
    with pytest.raises(AirNetError, match="check must be"):
        Blend(1.0, 0.5, 10.0, check=2.0)
    with pytest.raises(AirNetError, match="not both"):
        restore_tensor(model, x, blend=Blend(), strength=0.5)
    with pytest.raises(AirNetError, match="not both"):
        restore_pixels(model, (x.permute(1, 2, 0).numpy() * 255).astype("uint8"), blend=Blend(), anchor=0.0)
    with pytest.raises(AirNetError, match="blend must be a Blend"):
        restore_tensor(model, x, blend=0.5)
    with pytest.raises(AirNetError, match="give postfilter, strength and anchor instead"):
        restore_files([tmp_path / "a.png"], tmp_path / "out", model, blend=Blend(), progress=False)
    with pytest.raises(AirNetError, match="postfilter must be 'auto'"):
        restore_tensor(model, x, postfilter="off")
    with pytest.raises(AirNetError, match="strength and anchor do not apply"):
        restore_tensor(model, x, postfilter="none", strength=0.5)
    assert isinstance(Blend(1, 0).strength, float)
