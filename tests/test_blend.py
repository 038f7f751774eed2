"""The blend of the network's correction: strength and anchor (the input's tones kept)."""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms.v2.functional import gaussian_blur

from airnet_restore.errors import AirNetError
from airnet_restore.inference import restore_files, restore_tensor
from airnet_restore.inference.blend import MAX_SIGMA, MIN_SIGMA, Blend, auto_anchor, clipped_noise_mean, lowpass
from airnet_restore.inference.pipeline import restore_pixels
from airnet_restore.inspection import Inspection
from tests.conftest import make_tiny


def mid_grey_photo(seed: int, size: int = 48) -> torch.Tensor:
    """A (1,3,size,size) image in [0.2, 0.8]: room for a shift either way without clipping."""
    return 0.2 + 0.6 * torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_anchor_removes_a_tone_shift_and_keeps_the_detail():
    x = mid_grey_photo(0)
    checker = 0.05 * (1 - 2 * ((torch.arange(48)[:, None] + torch.arange(48)[None]) % 2)).float()
    network = lambda t: t - 0.1 + checker  # noqa: E731 - darkens by 0.1, adds zero-mean fine detail
    torch.testing.assert_close(Blend(1.0, 0.0).apply(network)(x), x - 0.1 + checker)
    anchored = Blend(1.0, 1.0).apply(network)(x)
    assert (anchored - x).mean().abs() < 1e-3  # the shift is gone ...
    assert ((anchored - x - checker).abs().max()) < 0.02  # ... the detail stays (up to its blurred trace)
    half = Blend(0.5, 0.5).apply(network)(x)
    c = network(x) - x
    torch.testing.assert_close(half, x + 0.5 * (c - 0.5 * gaussian_blur(c, [13, 13], [2.0, 2.0])))
    assert Blend(0.0, 1.0).apply(network)(x) is x


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
    told = Blend(1.0, 1.0, noise=50.0).apply(perfect)(x)
    untold = Blend(1.0, 1.0).apply(perfect)(x)
    assert (told - y).mean().abs() < 2 / 255 < (untold - y).mean().abs() - 10 / 255
    assert Blend(noise=30.0).sigma == 30 / 8 and Blend().sigma == MIN_SIGMA and Blend(noise=90.0).sigma == MAX_SIGMA


def test_restore_tensor_applies_the_blend_whole_or_tiled():
    model = make_tiny().eval()
    x = mid_grey_photo(1, 300)[0]
    net = restore_tensor(model, x, tile=None, strength=1.0, anchor=0.0)
    c = net - x
    expected = (x + 0.8 * (c - 0.6 * lowpass(c[None], MIN_SIGMA)[0])).clamp(0, 1)
    whole = restore_tensor(model, x, tile=None, strength=0.8, anchor=0.6)  # no prototypes: the blur of no noise
    torch.testing.assert_close(whole, expected, atol=2e-6, rtol=0)
    tiled = restore_tensor(model, x, tile=160, tile_overlap=64, strength=0.8, anchor=0.6)
    tiled_net = restore_tensor(model, x, tile=160, tile_overlap=64, strength=1.0, anchor=0.0)
    # The blur stays inside each tile's context margin: tiling changes the blend no more than the network.
    assert (tiled - whole).abs().max() <= (tiled_net - net).abs().max() + 1e-6


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
    with pytest.raises(AirNetError, match="resolved by resolve_blend"):
        Blend("auto")
    for noise in (-1.0, 300.0, "25"):
        with pytest.raises(AirNetError, match="noise must be a sigma"):
            Blend(1.0, 0.5, noise)
    with pytest.raises(AirNetError, match="not both"):
        restore_tensor(model, x, blend=Blend(), strength=0.5)
    with pytest.raises(AirNetError, match="not both"):
        restore_pixels(model, (x.permute(1, 2, 0).numpy() * 255).astype("uint8"), blend=Blend(), anchor=0.0)
    with pytest.raises(AirNetError, match="blend must be a Blend"):
        restore_tensor(model, x, blend=0.5)
    with pytest.raises(AirNetError, match="give strength and anchor instead"):
        restore_files([tmp_path / "a.png"], tmp_path / "out", model, blend=Blend(), progress=False)
    assert isinstance(Blend(1, 0).strength, float)


def test_lowpass_keeps_constants_and_blurs_thin_strips():
    torch.testing.assert_close(lowpass(torch.full((1, 3, 20, 30), 0.3), MAX_SIGMA), torch.full((1, 3, 20, 30), 0.3))
    strip = torch.zeros(1, 3, 1, 41)
    strip[..., 20] = 1.0
    blurred = lowpass(strip, 2.0)  # along the row only
    assert blurred[..., 20].max() < 0.25 and blurred[..., 18].min() > 0.05
    torch.testing.assert_close(blurred.sum(), strip.sum())
    dot = torch.rand(1, 3, 1, 1)
    assert torch.equal(lowpass(dot, 2.0), dot)
