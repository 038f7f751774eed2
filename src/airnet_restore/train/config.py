"""Training configuration: YAML presets validated by a typed schema, with ``--set key=value`` overrides."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args, get_origin, get_type_hints

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
    create_model,
    model_validator,
)

from airnet_restore.constants import Impl, TrainPrecision
from airnet_restore.data.layouts import PAIRED_LAYOUTS
from airnet_restore.degradations import get_degradation
from airnet_restore.errors import AirNetError, first_line
from airnet_restore.models.airnet import AirNetConfig

MAX_CONFIG_BYTES = 1 << 20  # a real preset is about 1 kB
MAX_YAML_NODES = 100_000  # scalars, lists and mappings after alias expansion: a "billion laughs" stops here
MAX_SEED = 2**32 - 1  # NumPy's RandomState takes seeds up to here
MAX_EPOCHS = 100_000


def _number(value: Any) -> Any:
    """A float field takes a number, or text such as ``1e-3`` (YAML 1.1 reads it as a string); not a boolean."""
    if isinstance(value, bool):
        raise ValueError("expected a number, got a boolean")
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise ValueError("expected a number") from None
    return value


def _show(value: float) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:g}"


def _within(low: float, high: float, *, above: bool = False, below: bool = False) -> AfterValidator:
    """A bound check whose message gives the whole allowed range (pydantic's names only the side crossed).

    ``above``/``below``: the bound itself is excluded."""
    def check(value: Any) -> Any:
        if (value <= low if above else value < low) or (value >= high if below else value > high):
            upper = "and below" if below else "and at most" if above else "to"
            raise ValueError(f"must be {'above' if above else 'from'} {_show(low)} {upper} {_show(high)}")
        return value

    return AfterValidator(check)


Number = Annotated[float, BeforeValidator(_number)]  # finite: every section refuses inf and nan
Count = Annotated[StrictInt, _within(1, MAX_EPOCHS)]
Seed = Annotated[StrictInt, _within(0, MAX_SEED)]
Rate = Annotated[Number, _within(0, 1, above=True)]
Minutes = Annotated[Number, _within(0, 10**7, above=True)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class _ModelSection(Strict):
    """Architecture: every field of ``AirNetConfig`` (names, types, the paper's defaults) but the MoCo
    queue, which is given per degradation type: the run's queue is ``queue_per_type`` x its types."""

    queue_per_type: Annotated[StrictInt, _within(1, 65536)] = Field(256, description="queue size K = queue_per_type x types (the paper: 256)")

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


_STRICT: dict[Any, Any] = {int: StrictInt, bool: StrictBool, float: Number}


def _strict(hint: Any) -> Any:
    """``hint`` with no silent conversion: a boolean is not an integer, ``"yes"`` is not true."""
    if get_origin(hint) is tuple:
        return tuple[tuple(_strict(a) for a in get_args(hint))]  # type: ignore[misc]
    return _STRICT.get(hint, hint)


def _airnet_fields() -> dict[str, Any]:
    """(type, default) of every ``AirNetConfig`` field but ``queue_size``: new fields join automatically."""
    hints = get_type_hints(AirNetConfig)
    return {f.name: (_strict(hints[f.name]), f.default) for f in dataclasses.fields(AirNetConfig) if f.name != "queue_size"}


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
    types: list[TypeSection] = Field(min_length=1, max_length=64)
    patch_size: Annotated[StrictInt, _within(16, 512)] = 128
    per_type: Annotated[StrictInt, _within(1, 64)] = Field(1, description="samples of each type per batch (the paper: 1)")
    workers: Annotated[StrictInt, _within(0, 64)] = 0


class ValSection(Strict):
    """Periodic validation on a small fixed set: clean files degraded deterministically."""

    clean: Path | None = None
    files: list[str] = Field(default_factory=list, description="file names in 'clean'; empty = all")
    degradations: list[str] = Field(default_factory=lambda: ["noise15", "noise25", "noise50", "rain", "haze"])
    every: Count = Field(10, description="epochs between validations")
    crop: Annotated[StrictInt, _within(16, 8192)] | None = Field(256, description="centre crop for speed; none = whole images")
    protocol: str = "airnet"
    seed: Seed = Field(0, description="seed of the degradations, as `airnet eval --seed`")


class TrainSection(Strict):
    epochs: Count = Field(1500, description="the paper: 1500; the official code: 1000")
    epochs_encoder: Annotated[StrictInt, _within(0, MAX_EPOCHS)] = Field(100, description="warm-up epochs with the contrastive loss only")
    iters_per_epoch: Annotated[StrictInt, _within(1, 10**7)] = 400
    lr: Rate = 1e-3
    lr_drop_epoch: Count = Field(60, description="warm-up lr x0.1 every this many epochs")
    lr_joint: Rate = Field(1e-4, description="lr after the warm-up")
    lr_halve_every: Count = 125
    contrastive_weight: Annotated[Number, _within(0, 1000)] = 0.1
    seed: Seed = 0
    precision: TrainPrecision = Field("fp32", description="fp16 and bf16 autocast; fp16 with loss scaling (old name: amp, none = fp32)")
    ema: Annotated[Number, _within(0, 1, above=True, below=True)] | None = Field(
        None, description="decay of an EMA of the restorer weights")
    channels_last: StrictBool | None = Field(
        None, description="channels-last memory layout; default: on for CPU training (faster there), off elsewhere"
    )
    checkpoint_every: Count = Field(50, description="epochs between checkpoints")
    checkpoint_minutes: Minutes | None = Field(None, description="also checkpoint every this many minutes")
    dcn_impl: Impl = "auto"
    max_minutes: Minutes | None = Field(None, description="stop (with a checkpoint) after this long")
    init: str | None = Field(None, description="start from these weights: a variant name, .safetensors, .pth or training state")
    init_partial: StrictBool = Field(False, description="with init: load what fits, initialise the rest fresh, and report both")
    init_warmup: StrictBool = Field(False, description="with init: still run the encoder warm-up (skipped by default)")
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


class _Loader(yaml.SafeLoader):
    """Safe loading (plain data only) that refuses aliases expanding past ``MAX_YAML_NODES`` nodes.

    Aliases share one node, so composing a "billion laughs" is cheap; walking it (validation) is not.
    """

    def get_single_node(self) -> yaml.Node | None:
        node = super().get_single_node()
        if node is not None:
            _expanded_size(node, {}, set())
        return node


def _expanded_size(node: yaml.Node, sizes: dict[int, int], open_: set[int]) -> int:
    """Nodes in ``node`` with every alias expanded; raises ``ValueError`` past the limit or on a cycle."""
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in open_:
        raise ValueError("an alias refers to a node that contains it")
    open_.add(key)
    children = [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else (
        node.value if isinstance(node, yaml.SequenceNode) else [])
    size = 1 + sum(_expanded_size(child, sizes, open_) for child in children)
    if size > MAX_YAML_NODES:
        raise ValueError(f"over {MAX_YAML_NODES:,} values once its aliases are expanded")
    open_.discard(key)
    sizes[key] = size
    return size


def parse_yaml(text: str, where: str) -> Any:
    """Plain data from YAML ``text`` (no Python objects, no alias bombs); any failure is one line naming ``where``."""
    try:
        return yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise AirNetError(f"{where}: not valid YAML{at}: {e.problem or e.context}") from None
    except yaml.YAMLError as e:
        raise AirNetError(f"{where}: not valid YAML: {first_line(e)}") from None
    except ValueError as e:
        raise AirNetError(f"{where}: refused: {e}") from None
    except RecursionError:
        raise AirNetError(f"{where}: refused: nested too deeply") from None


def read_yaml(path: str | Path) -> Any:
    """The YAML file ``path`` as plain data, read with a size limit; a missing, binary or huge file is one line."""
    path = Path(path)
    if path.is_dir():
        raise AirNetError(f"config {path} is a folder, not a YAML file")
    if not path.is_file():
        raise AirNetError(f"config file not found: {path}")
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as e:
        raise AirNetError(f"{path}: cannot read the config: {e.strerror or e}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise AirNetError(f"{path}: over {MAX_CONFIG_BYTES // 1024} KiB, too large for a config")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise AirNetError(f"{path}: not a text file (UTF-8 YAML expected)") from None
    return parse_yaml(text, str(path))


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


def _brief(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> TrainConfig:
    """Read a YAML preset, apply ``key.sub=value`` overrides (values parsed as YAML), validate.

    Every value is checked (types, finite numbers, ranges) here, before anything is allocated.
    Relative data paths are relative to the working directory, as in the official code.
    """
    path = Path(path)
    tree = read_yaml(path)
    if tree is None:
        raise AirNetError(f"{path}: the config is empty")
    for item in overrides:
        if "=" not in item:
            raise AirNetError(f"override {item!r} must look like key.sub=value")
        key, raw = item.split("=", 1)
        value = parse_yaml(raw, f"override {key.strip()!r}")
        try:
            _set(tree, key.strip(), value)
        except (KeyError, IndexError, ValueError, TypeError, AttributeError):
            raise AirNetError(f"override {item!r}: no such place in the config") from None
    try:
        config = TrainConfig.model_validate(tree)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        value = err.get("input")
        shown = "" if isinstance(value, dict) else f" (got {_brief(value)})"
        message = err["msg"].removeprefix("Value error, ")
        raise AirNetError(f"{path}: config key '{where}': {message}{shown}") from None
    return config
