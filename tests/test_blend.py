"""The blend of the network's correction: strength and anchor (the input's tones kept)."""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms.v2.functional import gaussian_blur

from airnet_restore.errors import AirNetError
from airnet_restore.inference import restore_tensor
from airnet_restore.inference.blend import MAX_SIGMA, MIN_SIGMA, Blend, auto_anchor, blur_sigma, lowpass
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
    half = Blend(0.5, 0.5, 3.0).apply(network)(x)
    c = network(x) - x
    torch.testing.assert_close(half, x + 0.5 * (c - 0.5 * gaussian_blur(c, [19, 19], [3.0, 3.0])))
    assert Blend(0.0, 1.0).apply(network)(x) is x


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
    assert blur_sigma(found) == pytest.approx(30 / 8)
    assert blur_sigma(None) == MIN_SIGMA
    assert blur_sigma(Inspection("noise", 0.9, 90.0, None, {"noise": 1.0})) == MAX_SIGMA


def test_bad_blends_are_refused_before_any_work():
    model = make_tiny().eval()
    x = mid_grey_photo(2, 32)[0]
    for bad in (1.5, -0.1, "high", True, float("nan")):
        with pytest.raises(AirNetError, match="anchor must be 'auto' or a number from 0"):
            restore_tensor(model, x, anchor=bad)
        with pytest.raises(AirNetError, match="anchor must be"):
            Blend(1.0, bad)
    with pytest.raises(AirNetError, match="sigma must be in"):
        Blend(1.0, 0.5, 50.0)
    with pytest.raises(AirNetError, match="not both"):
        restore_tensor(model, x, blend=Blend(), strength=0.5)


def test_lowpass_of_tiny_tiles():
    t = torch.rand(1, 3, 2, 5)
    assert lowpass(t, MAX_SIGMA).shape == t.shape
    torch.testing.assert_close(lowpass(torch.rand(1, 3, 1, 1), 2.0).shape, (1, 3, 1, 1))
