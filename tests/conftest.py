"""Shared fixtures: tiny models and small images keep the suite fast on a 2-core CPU."""

from __future__ import annotations

import pytest
import torch

from airnet_restore.models import AirNet, AirNetConfig

TINY = AirNetConfig(n_feats=16, n_groups=1, n_blocks=2, enc_channels=(16, 16, 32), dim=32, queue_size=32)


def make_tiny(seed: int = 0, randomize_dcn: bool = True) -> AirNet:
    """A tiny AirNet; the zero-initialised offset convs get random weights so the DCN really deforms."""
    torch.manual_seed(seed)
    model = AirNet(TINY)
    if randomize_dcn:
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "conv_offset_mask" in name:
                    p.normal_(0.0, 0.05)
    return model


@pytest.fixture
def tiny_model() -> AirNet:
    return make_tiny()


@pytest.fixture(autouse=True)
def _few_threads():
    torch.set_num_threads(2)
    yield
