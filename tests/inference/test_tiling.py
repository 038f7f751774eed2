import math
import weakref
from itertools import pairwise

import numpy as np
import pytest
import torch

from airnet_restore.constants import BYTES_PER_PIXEL_PER_CHANNEL, bytes_per_pixel_per_channel
from airnet_restore.errors import AirNetError
from airnet_restore.inference import tiling
from airnet_restore.inference.tiling import axis_weight, run_tiled, tile_starts
from tests.conftest import make_tiny


@pytest.mark.parametrize("length,tile,overlap", [(100, 48, 16), (300, 64, 24), (49, 48, 8), (48, 48, 8), (1000, 256, 32)])
def test_tiles_cover_and_weights_are_positive(length, tile, overlap):
    starts = tile_starts(length, tile, overlap)
    assert starts[0] == 0 and starts[-1] + min(tile, length) == length
    assert all(b - a <= tile - overlap for a, b in pairwise(starts))
    total = np.zeros(length)
    for s in starts:
        total[s : s + min(tile, length)] += axis_weight(s, min(tile, length), length, overlap)
    assert total.min() > 0.5


def test_a_single_tile_has_no_fade():
    assert (axis_weight(0, 40, 40, 16) == 1).all()


def psnr(a, b):
    return 10 * torch.log10(1 / ((a - b) ** 2).mean())


def test_tiled_equals_whole_image(device):
    model = make_tiny().eval().to(device)
    x = torch.rand(1, 3, 97, 83, generator=torch.Generator().manual_seed(0))
    forward = lambda t: model(t)  # noqa: E731
    with torch.no_grad():
        whole = run_tiled(forward, x, device, None, 0)
        tiled = run_tiled(forward, x, device, 48, 20)
    assert whole.shape == tiled.shape == x.shape
    assert psnr(whole, tiled) > 50
    assert (whole - tiled).abs().max() < 0.02


def test_out_of_memory_splits_the_tile_and_retries():
    calls = []

    def forward(t):
        calls.append(tuple(t.shape[-2:]))
        if t.shape[-1] > 40:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
        return t * 2

    x = torch.rand(1, 3, 64, 64)
    out = run_tiled(forward, x, torch.device("cpu"), None, 8)
    torch.testing.assert_close(out, x * 2)
    assert calls[0] == (64, 64) and max(c[1] for c in calls[1:]) <= 40


@pytest.mark.parametrize("tile", [None, 64])
def test_the_retry_runs_after_the_failed_forward_is_released(tile):
    failed = []

    def forward(t):
        # A forward raising inside the handler would still hold the failed attempt's activations.
        assert all(ref() is None for ref in failed), "the failed tile's activations are still alive"
        if t.shape[-1] > 40:
            activations = torch.empty(1000)
            failed.append(weakref.ref(activations))
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
        return t * 2

    x = torch.rand(1, 3, 64, 80)
    torch.testing.assert_close(run_tiled(forward, x, torch.device("cpu"), tile, 8), x * 2)
    assert failed


def test_free_cuda_memory_counts_what_pytorch_has_cached(monkeypatch):
    gib = 2**30
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (1 * gib, 80 * gib))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 9 * gib)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 1 * gib)
    cuda = torch.device("cuda")
    assert tiling.free_cuda_memory(cuda) == 9 * gib
    per_pixel = bytes_per_pixel_per_channel("cuda") * 64
    expected = int(math.sqrt(0.8 * 9 * gib / per_pixel)) // 8 * 8
    assert tiling.auto_tile_size(20000, 20000, per_pixel, cuda) == (expected, expected)


def test_bytes_per_pixel_constant_per_device_type():
    assert bytes_per_pixel_per_channel("cpu") == BYTES_PER_PIXEL_PER_CHANNEL["cpu"]
    assert bytes_per_pixel_per_channel("cuda") == BYTES_PER_PIXEL_PER_CHANNEL["cuda"] > BYTES_PER_PIXEL_PER_CHANNEL["cpu"]
    assert bytes_per_pixel_per_channel("mps") == max(BYTES_PER_PIXEL_PER_CHANNEL.values())


def test_bad_tile_settings():
    with pytest.raises(AirNetError, match="too small"):
        run_tiled(lambda t: t, torch.rand(1, 3, 64, 64), torch.device("cpu"), 8, 2)
    with pytest.raises(AirNetError, match="overlap"):
        run_tiled(lambda t: t, torch.rand(1, 3, 64, 64), torch.device("cpu"), 40, 20)


def test_cpu_tiles_stay_within_the_working_memory_ceiling_however_much_ram_is_free(monkeypatch):
    monkeypatch.setattr(tiling, "available_ram", lambda: 512.0 * 2**30)
    per_pixel = bytes_per_pixel_per_channel("cpu") * 24
    tile = tiling.auto_tile_size(4000, 6000, per_pixel, torch.device("cpu"))
    assert tile is not None and tile[0] == tile[1] and tile[0] * tile[1] * per_pixel <= tiling.CPU_FORWARD_BYTES
    assert tiling.auto_tile_size(256, 256, per_pixel, torch.device("cpu")) is None  # small images stay whole


@pytest.mark.parametrize("shape", [(32, 200_000), (200_000, 32), (40, 20_000)])
def test_tiles_of_a_strip_follow_its_aspect(monkeypatch, shape):
    """A strip is cut into a few long tiles as thick as the strip, not hundreds of squares (issue 34)."""
    monkeypatch.setattr(tiling, "available_ram", lambda: 16.0 * 2**30)
    cpu = torch.device("cpu")
    per_pixel = bytes_per_pixel_per_channel("cpu") * 64
    th, tw = tiling.auto_tile_size(*shape, per_pixel, cpu, overlap=64)
    square = tiling.auto_tile_size(4000, 4000, per_pixel, cpu, overlap=64)
    assert min(th, tw) == min(shape) and th * tw * per_pixel <= tiling.CPU_FORWARD_BYTES
    assert th * tw > 0.9 * square[0] * square[1]  # as many pixels a tile as a square tile


def test_a_strip_tiled_in_long_tiles_equals_the_whole(device):
    x = torch.rand(1, 3, 32, 700, device=device)

    def forward(t):
        return torch.nn.functional.avg_pool2d(t, 5, stride=1, padding=2, count_include_pad=False) * 2

    whole = run_tiled(forward, x, device, None, 0)
    torch.testing.assert_close(run_tiled(forward, x, device, (32, 256), 48), whole, atol=2e-2, rtol=0)
    torch.testing.assert_close(run_tiled(forward, x.transpose(2, 3), device, (256, 32), 48), whole.transpose(2, 3),
                               atol=2e-2, rtol=0)


def test_a_numpy_integer_tile_is_a_square():
    x = torch.rand(1, 3, 40, 90)
    torch.testing.assert_close(run_tiled(lambda t: t * 2, x, torch.device("cpu"), np.int64(48), 8), x * 2)


def test_a_megapixel_runs_whole_on_a_cpu_with_8_gib_available(monkeypatch):
    """Tiles cost their overlaps (1.7x for a 1000x1000 photo in 744-px tiles, issue 35): a megapixel of the
    default weights' width runs whole wherever 8 GiB is available; what does not fit is still tiled."""
    monkeypatch.setattr(tiling, "available_ram", lambda: 8.0 * 2**30)
    cpu = torch.device("cpu")
    per_pixel = bytes_per_pixel_per_channel("cpu") * 24
    assert tiling.auto_tile_size(1000, 1000, per_pixel, cpu) is None
    assert tiling.auto_tile_size(1024, 1024, per_pixel, cpu) is None
    tile = tiling.auto_tile_size(4000, 6000, per_pixel, cpu)
    assert tile is not None and tile[0] * tile[1] * per_pixel <= tiling.CPU_FORWARD_BYTES and tile[0] >= 1024
    monkeypatch.setattr(tiling, "available_ram", lambda: 2.0 * 2**30)  # a small machine: half of what is free
    tile = tiling.auto_tile_size(1000, 1000, per_pixel, cpu)
    assert tile is not None and tile[0] * tile[1] * per_pixel <= 1.0 * 2**30


def test_the_post_filter_runs_whole_where_it_fits_and_in_bounded_crops_where_it_does_not(monkeypatch):
    monkeypatch.setattr(tiling, "available_ram", lambda: 16.0 * 2**30)
    assert tiling.filter_tile(1000, 1000, 480, 16) == 1008  # one crop: no context to pay for
    side = tiling.filter_tile(6000, 4000, 480, 16)
    assert side % 16 == 0 and (side + 2 * 480) ** 2 * tiling.WIENER_BYTES_PER_PIXEL <= tiling.CPU_FORWARD_BYTES
    monkeypatch.setattr(tiling, "available_ram", lambda: 0.5 * 2**30)
    assert tiling.filter_tile(6000, 4000, 480, 16) == 16  # hardly any memory: the smallest crops, never none
