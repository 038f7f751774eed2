"""The training config: one precision vocabulary, and a model section derived from AirNetConfig."""

import dataclasses
from pathlib import Path

import pytest

from airnet_restore.constants import PRECISIONS
from airnet_restore.errors import AirNetError
from airnet_restore.models.airnet import AirNetConfig
from airnet_restore.train import load_config
from airnet_restore.train.config import ModelSection, TrainSection

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("amp,precision", [("none", "fp32"), ("fp16", "fp16"), ("bf16", "bf16")])
def test_the_old_amp_spelling_reads_as_precision(amp, precision):
    assert TrainSection.model_validate({"amp": amp}).precision == precision
    assert TrainSection.model_validate({"precision": precision}).precision == precision
    assert "amp" not in TrainSection().model_dump()


def test_precision_takes_the_restore_names_and_not_both_spellings(tmp_path):
    assert TrainSection.model_fields["precision"].annotation.__args__ == tuple(p for p in PRECISIONS if p != "fp64")
    config = tmp_path / "c.yaml"
    config.write_text((REPO / "configs" / "smoke.yaml").read_text())
    with pytest.raises(AirNetError, match=r"give train\.precision only"):
        load_config(config, ["train.amp=bf16", "train.precision=bf16"])


def test_model_section_has_every_airnet_field_but_the_queue_given_per_type():
    names = [f.name for f in dataclasses.fields(AirNetConfig)]
    assert set(ModelSection.model_fields) == (set(names) - {"queue_size"}) | {"queue_per_type"}
    defaults = ModelSection()
    assert all(getattr(defaults, n) == getattr(AirNetConfig(), n) for n in names if n != "queue_size")


def test_model_section_maps_to_airnet_config_and_back_by_name():
    # every field away from its default, booleans flipped, so a positional or forgotten mapping shows
    changed = {}
    for f in dataclasses.fields(AirNetConfig):
        value = f.default
        if isinstance(value, bool):
            changed[f.name] = not value
        elif isinstance(value, tuple):
            changed[f.name] = tuple(v + i + 1 for i, v in enumerate(value))
        elif isinstance(value, int):
            changed[f.name] = value + 3
        else:
            changed[f.name] = value / 2
    arch = AirNetConfig(**changed)
    section = ModelSection.of(arch, queue_per_type=7)
    assert section.queue_per_type == 7
    assert section.airnet_config(arch.queue_size) == arch
    assert ModelSection.model_validate(section.model_dump()).airnet_config(arch.queue_size) == arch


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_preset_loads(path):
    config = load_config(path)
    assert config.model.airnet_config(config.model.queue_per_type * len(config.data.types)).n_feats >= 1
