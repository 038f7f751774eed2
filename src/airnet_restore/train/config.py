"""Training configuration: YAML presets validated by a typed schema, with ``--set key=value`` overrides."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_type_hints

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator

from airnet_restore.constants import Impl, TrainPrecision
from airnet_restore.data.layouts import PAIRED_LAYOUTS
from airnet_restore.degradations import get_degradation
from airnet_restore.errors import AirNetError
from airnet_restore.models.airnet import AirNetConfig


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _ModelSection(Strict):
    """Architecture: every field of ``AirNetConfig`` (names, types, the paper's defaults) but the MoCo
    queue, which is given per degradation type: the run's queue is ``queue_per_type`` x its types."""

    queue_per_type: int = Field(256, ge=1, description="queue size K = queue_per_type x types (the paper: 256)")

    @model_validator(mode="after")
    def _valid_architecture(self) -> _ModelSection:
        try:
            self.airnet_config(self.queue_per_type)  # types and size bounds, as for a weights file
        except AirNetError as e:
            raise ValueError(str(e)) from None
        return self

    def airnet_config(self, queue_size: int) -> AirNetConfig:
        """The network's config with the run's queue size."""
        return AirNetConfig(**self.model_dump(exclude={"queue_per_type"}), queue_size=queue_size)

    @classmethod
    def of(cls, config: AirNetConfig, queue_per_type: int) -> _ModelSection:
        """The section that builds ``config``'s architecture."""
        fields = {k: v for k, v in config.to_dict().items() if k != "queue_size"}
        return ModelSection(**fields, queue_per_type=queue_per_type)


def _airnet_fields() -> dict[str, Any]:
    """(type, default) of every ``AirNetConfig`` field but ``queue_size``: new fields join automatically."""
    hints = get_type_hints(AirNetConfig)
    return {f.name: (hints[f.name], f.default) for f in dataclasses.fields(AirNetConfig) if f.name != "queue_size"}


if TYPE_CHECKING:
    ModelSection = _ModelSection
else:
    ModelSection = create_model("ModelSection", __base__=_ModelSection, __doc__=_ModelSection.__doc__,
                                __module__=__name__, **_airnet_fields())


class TypeSection(Strict):
    """One degradation type of the AIO batch: clean images degraded on the fly, or an official/paired layout."""

    name: str
    clean: Path | None = None
    degradation: str | None = Field(None, description="registered degradation; defaults to the type's name")
    exclude: list[str] = Field(default_factory=list, description="file names left out (e.g. the validation split)")
    layout: str | None = None
    root: Path | None = None

    @model_validator(mode="after")
    def _one_source(self) -> TypeSection:
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
    seed: int = Field(0, description="seed of the degradations, as `airnet eval --seed`")


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
    precision: TrainPrecision = Field("fp32", description="fp16 and bf16 autocast; fp16 with loss scaling (old name: amp, none = fp32)")
    ema: float | None = Field(None, gt=0, lt=1, description="decay of an EMA of the restorer weights")
    channels_last: bool | None = Field(
        None, description="channels-last memory layout; default: on for CPU training (faster there), off elsewhere"
    )
    checkpoint_every: int = Field(50, ge=1, description="epochs between checkpoints")
    checkpoint_minutes: float | None = Field(None, gt=0, description="also checkpoint every this many minutes")
    dcn_impl: Impl = "auto"
    max_minutes: float | None = Field(None, gt=0, description="stop (with a checkpoint) after this long")
    init: str | None = Field(None, description="start from these weights: a variant name, .safetensors, .pth or training state")
    init_partial: bool = Field(False, description="with init: load what fits, initialise the rest fresh, and report both")
    init_warmup: bool = Field(False, description="with init: still run the encoder warm-up (skipped by default)")
    freeze: list[Literal["encoder"]] = Field(default_factory=list, description="parts left untouched by training")

    @model_validator(mode="before")
    @classmethod
    def _old_amp(cls, data: Any) -> Any:
        """``amp: none|fp16|bf16``, the old spelling of ``precision: fp32|fp16|bf16``, is still read."""
        if not isinstance(data, dict) or "amp" not in data:
            return data
        data = dict(data)
        amp = data.pop("amp")
        if "precision" in data:
            raise ValueError("give train.precision only (train.amp is its old name)")
        if amp not in ("none", "fp16", "bf16"):
            raise ValueError(f"train.amp, the old name of train.precision, must be none, fp16 or bf16, got {amp!r}")
        data["precision"] = "fp32" if amp == "none" else amp
        return data


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


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> TrainConfig:
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
