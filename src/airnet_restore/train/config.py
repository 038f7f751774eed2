"""Training configuration: YAML presets validated by a typed schema, with ``--set key=value`` overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from airnet_restore.data.layouts import PAIRED_LAYOUTS
from airnet_restore.degradations import get_degradation
from airnet_restore.errors import AirNetError


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelSection(Strict):
    """Architecture (AirNetConfig); the paper's values by default."""

    n_feats: int = Field(64, ge=1)
    n_groups: int = Field(5, ge=1)
    n_blocks: int = Field(5, ge=1)
    enc_channels: tuple[int, int, int] = (64, 128, 256)
    dim: int = Field(256, ge=1)
    queue_per_type: int = Field(256, ge=1, description="queue size K = queue_per_type x batch (the paper: 256)")
    m: float = Field(0.999, ge=0, le=1)
    T: float = Field(0.07, gt=0)
    global_residual: bool = Field(False, description="add the input to the restorer's output (not the paper's)")


class TypeSection(Strict):
    """One degradation type of the AIO batch: clean images degraded on the fly, or an official/paired layout."""

    name: str
    clean: Path | None = None
    degradation: str | None = Field(None, description="registered degradation; defaults to the type's name")
    exclude: list[str] = Field(default_factory=list, description="file names left out (e.g. the validation split)")
    layout: str | None = None
    root: Path | None = None

    @model_validator(mode="after")
    def _one_source(self) -> "TypeSection":
        if (self.clean is None) == (self.root is None):
            raise ValueError("give either 'clean' (a folder of clean images) or 'layout' + 'root'")
        if self.root is not None and self.layout not in PAIRED_LAYOUTS:
            raise ValueError(f"layout must be one of {sorted(PAIRED_LAYOUTS)}, got {self.layout!r}")
        if self.clean is not None:
            try:
                get_degradation(self.degradation or self.name)
            except AirNetError as e:
                raise ValueError(str(e)) from None
        return self


class DataSection(Strict):
    types: list[TypeSection] = Field(min_length=1)
    patch_size: int = Field(128, ge=16)
    per_type: int = Field(1, ge=1, description="samples of each type per batch (the paper: 1)")
    workers: int = Field(0, ge=0)


class ValSection(Strict):
    """Periodic validation on a small fixed set: clean files degraded deterministically."""

    clean: Path | None = None
    files: list[str] = Field(default_factory=list, description="file names in 'clean'; empty = all")
    degradations: list[str] = Field(default_factory=lambda: ["noise15", "noise25", "noise50", "rain", "haze"])
    every: int = Field(10, ge=1, description="epochs between validations")
    crop: int | None = Field(256, ge=16, description="centre crop for speed; none = whole images")
    protocol: str = "airnet"


class TrainSection(Strict):
    epochs: int = Field(1500, ge=1, description="the paper: 1500; the official code: 1000")
    epochs_encoder: int = Field(100, ge=0, description="warm-up epochs with the contrastive loss only")
    iters_per_epoch: int = Field(400, ge=1)
    lr: float = Field(1e-3, gt=0)
    lr_drop_epoch: int = Field(60, ge=1, description="warm-up lr x0.1 every this many epochs")
    lr_joint: float = Field(1e-4, gt=0, description="lr after the warm-up")
    lr_halve_every: int = Field(125, ge=1)
    contrastive_weight: float = Field(0.1, ge=0)
    seed: int = 0
    amp: Literal["none", "bf16", "fp16"] = "none"
    ema: float | None = Field(None, gt=0, lt=1, description="decay of an EMA of the restorer weights")
    channels_last: bool = False
    checkpoint_every: int = Field(50, ge=1, description="epochs between checkpoints")
    checkpoint_minutes: float | None = Field(None, gt=0, description="also checkpoint every this many minutes")
    dcn_impl: Literal["auto", "torchvision", "grid_sample", "numba"] = "auto"
    max_minutes: float | None = Field(None, gt=0, description="stop (with a checkpoint) after this long")
    init: str | None = Field(None, description="start from these weights: a variant name, .safetensors, .pth or training state")
    init_partial: bool = Field(False, description="with init: load what fits, initialise the rest fresh, and report both")
    init_warmup: bool = Field(False, description="with init: still run the encoder warm-up (skipped by default)")
    freeze: list[Literal["encoder"]] = Field(default_factory=list, description="parts left untouched by training")


class TrainConfig(Strict):
    model: ModelSection = ModelSection()
    data: DataSection
    val: ValSection = ValSection()
    train: TrainSection = TrainSection()
    licence: str = "unspecified"
    description: str = ""


def _set(tree: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for k in keys[:-1]:
        if isinstance(node, list):
            k = int(k)
        node = node[k] if isinstance(node, list) else node.setdefault(k, {})
    last = keys[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


def load_config(path: str | Path, overrides: list[str] = ()) -> TrainConfig:
    """Read a YAML preset, apply ``key.sub=value`` overrides (values parsed as YAML), validate.

    Relative data paths are relative to the working directory, as in the official code.
    """
    path = Path(path)
    if not path.is_file():
        raise AirNetError(f"config file not found: {path}")
    try:
        tree = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise AirNetError(f"{path}: not valid YAML ({e})") from None
    for item in overrides:
        if "=" not in item:
            raise AirNetError(f"override {item!r} must look like key.sub=value")
        key, raw = item.split("=", 1)
        try:
            _set(tree, key.strip(), yaml.safe_load(raw))
        except (KeyError, IndexError, ValueError, TypeError, AttributeError):
            raise AirNetError(f"override {item!r}: no such place in the config") from None
    try:
        config = TrainConfig.model_validate(tree)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        value = err.get("input")
        shown = "" if isinstance(value, dict) else f" (got {value!r})"
        raise AirNetError(f"{path}: config key '{where}': {err['msg']}{shown}") from None
    return config
