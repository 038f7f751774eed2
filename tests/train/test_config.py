"""The training config: one precision vocabulary, and a model section derived from AirNetConfig."""

import dataclasses
import json
import time
from pathlib import Path

import pytest

from airnet_restore.constants import PRECISIONS
from airnet_restore.degradations import get_degradation
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


def pool_splits() -> dict[str, set[str]]:
    """The photo pool's file names by split, from its committed manifest (the photos need not exist)."""
    splits: dict[str, set[str]] = {}
    for photo in json.loads((REPO / "data" / "photo_pool.json").read_text())["photos"]:
        splits.setdefault(photo["split"], set()).add(photo["file"])
    return splits


PRESETS = sorted((REPO / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.name)
def test_every_preset_reads_only_folders_a_fresh_clone_can_have(path):
    """No preset reaches outside the working directory (the old ``../shared`` photos); presets on the
    photo pool train on its training split only and validate on photos of its validation split."""
    config = load_config(path)
    splits = pool_splits()
    training = [t.clean or t.root for t in config.data.types]
    for folder in [*training, config.val.clean]:
        if folder is not None:
            assert not folder.is_absolute() and ".." not in folder.parts, f"{path.name}: {folder}"
    pool = Path("data/pool")
    for folder in training:
        if folder.is_relative_to(pool):
            assert folder == pool / "training", f"{path.name}: trains on {folder}"
    if config.val.clean is not None and config.val.clean.is_relative_to(pool):
        assert config.val.clean == pool / "validation", f"{path.name}: validates on {config.val.clean}"
        assert set(config.val.files) <= splits["validation"], f"{path.name}: {config.val.files}"
    for name in config.val.degradations:  # not checked at load: a typo would only show at the first validation
        get_degradation(name)


def test_the_small_presets_use_the_photo_pool():
    """smoke, lite and general (the presets that degrade photos on the fly) name the pool, not another folder."""
    for name in ("smoke", "lite", "general", "general-res"):
        config = load_config(REPO / "configs" / f"{name}.yaml")
        assert {t.clean for t in config.data.types} == {Path("data/pool/training")}, name
        assert config.val.clean == Path("data/pool/validation"), name
        assert "python data/photo_pool.py --split training --split validation" in (REPO / "configs" / f"{name}.yaml").read_text()


@pytest.mark.parametrize(
    "override,message",
    [
        ("train.lr=.inf", "config key 'train.lr': Input should be a finite number (got inf)"),
        ("model.T=.nan", "config key 'model.T': Input should be a finite number"),
        ("data.patch_size=1000000", "config key 'data.patch_size': must be from 16 to 512 (got 1000000)"),
        ("train.lr=2", "config key 'train.lr': must be above 0 and at most 1 (got 2)"),
        ("val.seed=-1", "config key 'val.seed': must be from 0 to 4,294,967,295 (got -1)"),
        ("train.epochs=true", "config key 'train.epochs': Input should be a valid integer (got True)"),
        ("train.lr=false", "config key 'train.lr': expected a number, got a boolean"),
        ('train.channels_last="yes"', "config key 'train.channels_last': Input should be a valid boolean"),
        ("model.enc_channels=[16, 16, true]", "config key 'model.enc_channels.2': Input should be a valid integer"),
        ("description=!!python/object/apply:os.system [echo]", "override 'description': not valid YAML at line 1, column 1"),
        ("description=[a, b", "override 'description': not valid YAML"),
    ],
)
def test_values_are_checked_for_type_finiteness_and_range_in_one_line(override, message):
    with pytest.raises(AirNetError) as e:
        load_config(REPO / "configs" / "smoke.yaml", [override])
    assert message in str(e.value) and "\n" not in str(e.value)


def test_numbers_in_yaml_1_1_text_still_read_as_numbers():
    assert load_config(REPO / "configs" / "smoke.yaml", ["train.lr=2e-4"]).train.lr == 2e-4


@pytest.mark.parametrize(
    "content,message",
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00", "not a text file"),
        (b"", "the config is empty"),
        (b"a: &a [*a]\n", "an alias refers to a node that contains it"),
        (b"[" * 20000, "nested too deeply"),
        (b"model: {n_feats: 16\n", "not valid YAML at line 2"),
        (b"description: " + b"x" * (1 << 20) + b"\n", "too large for a config"),
    ],
    ids=["png", "empty", "recursive", "deep", "broken", "huge"],
)
def test_unreadable_configs_are_one_line(tmp_path, content, message):
    path = tmp_path / "c.yaml"
    path.write_bytes(content)
    with pytest.raises(AirNetError, match=message) as e:
        load_config(path)
    assert "\n" not in str(e.value)


def test_a_billion_laughs_is_refused_at_once(tmp_path):
    lines = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]" for i in range(9)]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines))
    start = time.monotonic()
    with pytest.raises(AirNetError, match="over 100,000 values once its aliases are expanded"):
        load_config(path)
    assert time.monotonic() - start < 5
    with pytest.raises(AirNetError, match="override 'description': refused: over 100,000 values"):
        load_config(REPO / "configs" / "smoke.yaml", ["description={" + ", ".join(lines) + "}"])


def test_a_few_honest_aliases_still_load(tmp_path):
    text = (REPO / "configs" / "smoke.yaml").read_text()
    assert "files: [scikit-image-coffee.png, scipy-face.png]" in text
    text = text.replace("files: [scikit-image-coffee.png, scipy-face.png]", "files: &f [scipy-face.png]")
    path = tmp_path / "c.yaml"
    path.write_text(text + "description: *f\n")
    with pytest.raises(AirNetError, match="config key 'description'"):  # an alias resolves: a list is no description
        load_config(path)
    path.write_text(text + "description: ok\n")
    assert load_config(path).val.files == ["scipy-face.png"]


def test_a_folder_or_a_missing_file_as_config(tmp_path):
    with pytest.raises(AirNetError, match="is a folder, not a YAML file"):
        load_config(tmp_path)
    with pytest.raises(AirNetError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
