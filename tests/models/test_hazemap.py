"""The haze map (``models/hazemap.py``): a smooth per-channel affine map of colour predicted at low resolution."""

from __future__ import annotations

import pytest
import torch

from airnet_restore.models.hazemap import WORK, HazeMap


def test_at_its_start_the_map_is_the_identity():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 40, 52)
    assert torch.equal(HazeMap()(x), x)


@pytest.mark.parametrize("size", [(5, 7), (40, 300), (300, 40), (WORK * 2 + 3, WORK + 1)])
def test_any_size_gets_maps_of_its_own_size(size):
    torch.manual_seed(0)
    net = HazeMap()
    torch.nn.init.normal_(net.head.weight, std=0.1)  # a map that is not the identity
    x = torch.rand(1, 3, *size)
    a, b = net.affine(x)
    assert a.shape == b.shape == x.shape and bool((a > 0).all()) and net(x).shape == x.shape


def test_the_map_is_smooth_so_it_keeps_the_images_detail():
    """Fine detail of the input passes through (scaled by a smooth gain): the map cannot smooth it away."""
    torch.manual_seed(0)
    net = HazeMap()
    torch.nn.init.normal_(net.head.weight, std=0.1)
    base = torch.full((1, 3, 256, 256), 0.5)
    checker = (torch.arange(256)[:, None] + torch.arange(256)[None, :]) % 2 * 0.1
    a, _ = net.affine(base + checker)
    detail = net(base + checker) - net(base)
    assert torch.allclose(detail, a * checker, atol=0.05)
