"""The noise model's Wiener filter in local DCTs (``postfilter/wiener.py``)."""

from __future__ import annotations

import pytest
import torch

from airnet_restore.errors import AirNetError
from airnet_restore.postfilter import PostFilterParams, WienerSettings
from airnet_restore.postfilter.stage import Blend
from airnet_restore.postfilter.wiener import NEGLIGIBLE_SIGMA, wiener
from tests.postfilter.test_stage import applied, noisy, textured_photo

REACH = PostFilterParams().wiener.reach(PostFilterParams().wiener.passes)


def test_the_noise_model_takes_detail_from_the_input_where_the_pilot_finds_signal():
    y = textured_photo(0)
    x = noisy(y, 25.0, 1)
    pilot = torch.nn.functional.avg_pool2d(y, 5, 1, 2, count_include_pad=False)  # detail lost
    psnr = lambda t: (10 * torch.log10(1 / ((t - y) ** 2).mean())).item()  # noqa: E731
    out = wiener(x, pilot, 25 / 255)
    assert psnr(out) > psnr(pilot) + 1.0 and psnr(out) > psnr(x) + 6.0
    assert psnr(wiener(x, y, 25 / 255)) > psnr(out)  # a better pilot, a better estimate
    assert torch.equal(wiener(x, pilot, 0.0), x)  # no noise: nothing to filter


def test_the_noise_model_is_local_and_never_divides_by_zero():
    middle = REACH + 8
    x = torch.rand(1, 3, 64, 2 * middle + 1)  # 64 rows: all four scales run
    changed = x.clone()
    changed[..., middle] = 1 - changed[..., middle]
    diff = (wiener(changed, changed, 0.1) - wiener(x, x, 0.1)).abs().amax(dim=(0, 1, 2))
    assert diff[middle - 1:middle + 2].min() > 0
    assert diff[:middle - REACH].max() == 0 and diff[middle + 1 + REACH:].max() == 0  # nothing beyond its reach moves
    assert diff[middle + 160:].max() > 0  # the coarsest scale reaches beyond the three finer ones' 154 px
    half_black = torch.cat([torch.zeros(1, 3, 16, 32), torch.rand(1, 3, 16, 32)], 2)
    for sigma in (1e-21, NEGLIGIBLE_SIGMA / 2, NEGLIGIBLE_SIGMA, 1e-3):
        assert torch.isfinite(wiener(half_black, half_black, sigma)).all()
        assert torch.isfinite(applied(Blend(1.0, 1.0, sigma * 255), lambda t: t, half_black)).all()


def test_the_coarse_scales_remove_the_noise_that_patches_cannot():
    rows, cols = torch.meshgrid(torch.linspace(0, 1, 96), torch.linspace(0, 1, 128), indexing="ij")
    sky = torch.stack([0.3 + 0.4 * rows, 0.5 + 0.2 * cols, 0.8 - 0.3 * rows * cols])[None]  # smooth: no detail to keep
    x = noisy(sky, 25.0, 3)
    psnr = lambda t: (10 * torch.log10(1 / ((t - sky) ** 2).mean())).item()  # noqa: E731
    multi = psnr(wiener(x, sky, 25 / 255))
    single = psnr(wiener(x, sky, 25 / 255, WienerSettings(levels=0)))
    assert multi > single + 3.0, (multi, single)


def test_the_noise_model_keeps_constants_and_any_shape():
    flat = torch.full((1, 3, 40, 40), 0.5)
    torch.testing.assert_close(wiener(flat, flat, 0.1), flat, atol=1e-3, rtol=0)
    for level in (0.02, 0.04):  # noisy shadows keep their brightness (shrunk towards black, they lost 3.5 levels)
        shadow = torch.full((1, 3, 64, 64), level)
        x = noisy(shadow, 50.0, 7)
        assert (wiener(x, shadow, 50 / 255).mean() - x.mean()).abs() < 0.5 / 255
    for shape in ((1, 3, 33, 50), (2, 1, 9, 40), (1, 3, 5, 7), (1, 2, 17, 16)):
        t = torch.rand(shape)
        out = wiener(t, t, 0.05)
        assert out.shape == t.shape and out.dtype == t.dtype and torch.isfinite(out).all()
    half = torch.rand(1, 3, 24, 24).half()
    assert wiener(half, half, 0.05).dtype == torch.float16


def test_the_noise_model_is_the_same_whatever_rows_of_patches_it_transforms_at_a_time():
    t = torch.rand(2, 3, 45, 38, dtype=torch.float64)
    pilot = (t + 0.05 * torch.randn_like(t)).clamp(0, 1)
    for impl, dtype, tolerance in (("torch", torch.float64, 1e-12), ("numba", torch.float32, 1e-6)):
        whole = wiener(t.to(dtype), pilot.to(dtype), 0.08, band_rows=1000, impl=impl)
        for rows in (1, 2, 5, 7):  # bands that split the finest plane's 27 rows of patches evenly and not
            band = wiener(t.to(dtype), pilot.to(dtype), 0.08, band_rows=rows, impl=impl)
            torch.testing.assert_close(band, whole, atol=tolerance, rtol=0)
        for bad in (0, -3, 2.5, True):
            with pytest.raises(AirNetError, match="band_rows"):
                wiener(t, pilot, 0.08, band_rows=bad, impl=impl)


@pytest.mark.parametrize(("shape", "settings"), [
    ((2, 3, 45, 38), WienerSettings()),
    ((1, 3, 70, 23), WienerSettings(patch=4, stride=1, passes=2, levels=1)),
    ((1, 2, 31, 66), WienerSettings(patch=8, stride=4, passes=2)),
    ((1, 3, 40, 40), WienerSettings(patch=16, stride=8, passes=1, levels=0)),
    ((1, 3, 5, 7), WienerSettings()),
])
def test_the_numba_filter_is_the_convolutions_filter(shape, settings):
    """The CPU's loop with separable transforms, in float32, gives the strided convolutions' estimate in float64
    up to float32's rounding (the loop in float64 too compiles for 10 s more; the reference needs no speed)."""
    g = torch.Generator().manual_seed(sum(shape))
    clean = torch.rand(shape, dtype=torch.float64, generator=g)
    t = (clean + 0.1 * torch.randn(shape, dtype=torch.float64, generator=g)).clamp(0, 1)
    for rows in (1, 3, 24):
        expected = wiener(t, clean, 0.1, settings, band_rows=rows, impl="torch")
        got = wiener(t.float(), clean.float(), 0.1, settings, band_rows=rows, impl="numba")
        torch.testing.assert_close(got.double(), expected, atol=2e-6, rtol=0)
    assert torch.equal(wiener(t.float(), clean.float(), 0.1, settings),  # auto: numba on the CPU in float32
                       wiener(t.float(), clean.float(), 0.1, settings, impl="numba"))
    assert torch.equal(wiener(t, clean, 0.1, settings), wiener(t, clean, 0.1, settings, impl="torch"))  # float64


def test_the_noise_model_names_its_implementations():
    t = torch.rand(1, 3, 16, 16)
    with pytest.raises(AirNetError, match="impl must be one of auto, numba, torch"):
        wiener(t, t, 0.1, impl="cuda")  # type: ignore[arg-type]
    if torch.cuda.is_available():
        with pytest.raises(AirNetError, match="CPU only"):
            wiener(t.cuda(), t.cuda(), 0.1, impl="numba")
