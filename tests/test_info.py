"""`airnet info`: every registered variant printed, with parameter counts counted without building a model."""

from dataclasses import replace

import pytest

from airnet_restore.cli import main
from airnet_restore.models import AirNet, AirNetConfig
from airnet_restore.variants import LITE, list_variants, parameter_counts


def test_info_prints_every_variant(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    heads = [line.split(":")[0].removesuffix(" (default)") for line in out.splitlines() if not line.startswith(" ")]
    assert heads == [v.name for v in list_variants()]
    assert out.count("memory per pixel: cpu ") == len(list_variants())


@pytest.mark.parametrize("config", [
    AirNetConfig(),
    LITE,
    replace(LITE, sft=False),
    replace(LITE, dcn=False),
    AirNetConfig(n_feats=12, n_groups=2, n_blocks=1, enc_channels=(8, 16, 32), dim=20, queue_size=20, sft=False, dcn=False),
])
def test_parameter_counts_match_the_built_model(config):
    model = AirNet(replace(config, queue_size=1))
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert parameter_counts(config) == (count(model.R), count(model.E.E.encoder_q), count(model))
