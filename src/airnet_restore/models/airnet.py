"""AirNet = DGRN restorer ``R`` + CBDE encoder ``E``, and the configuration that sizes it."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import nn

from airnet_restore.constants import IMPLS, Impl
from airnet_restore.errors import AirNetError
from airnet_restore.models.dcn import DCNLayer
from airnet_restore.models.encoder import CBDE
from airnet_restore.models.restorer import DGRN

# Sizes a config may ask for: generous multiples of the paper's (64, 5, 5, 64/128/256, 256, 1280),
# so that no file or typo can allocate more than about 4 GB (the largest: 0.9 G parameters).
SIZE_BOUNDS: dict[str, tuple[int, int]] = {
    "n_feats": (1, 256),
    "n_groups": (1, 16),
    "n_blocks": (1, 16),
    "enc_channels": (1, 1024),
    "dim": (1, 1024),
    "queue_size": (1, 65536),
}


@dataclass(frozen=True)
class AirNetConfig:
    """Widths and depths; the defaults are the paper's (8,930,313 parameters, queue 256 x 1280)."""

    n_feats: int = 64
    n_groups: int = 5
    n_blocks: int = 5
    enc_channels: tuple[int, int, int] = (64, 128, 256)
    dim: int = 256
    queue_size: int = 256 * 5
    m: float = 0.999
    T: float = 0.07
    global_residual: bool = False  # not the paper's: restorer output + input (see DGRN)
    sft: bool = True  # paper Table 7: False drops the SFT modulation from every DGM
    dcn: bool = True  # paper Table 7: False puts a plain 3x3 conv in every DGM's DCN place

    def __post_init__(self) -> None:
        if isinstance(self.enc_channels, list):
            object.__setattr__(self, "enc_channels", tuple(self.enc_channels))
        self.validate()

    def validate(self) -> None:
        """Refuse a wrong type or a size out of ``SIZE_BOUNDS`` before anything is allocated."""
        for name, (low, high) in SIZE_BOUNDS.items():
            value = getattr(self, name)
            many = name == "enc_channels"
            values = value if many and isinstance(value, tuple) else (value,)
            if (many and len(values) != 3) or not all(_is_int(v) and low <= v <= high for v in values):
                what = "three integers" if many else "an integer"
                raise AirNetError(f"model config: {name} must be {what} from {low} to {high:,}, got {value!r}")
        for name, ok, rule in (("m", lambda v: 0 <= v <= 1, "from 0 to 1"), ("T", lambda v: 0 < v < math.inf, "above 0")):
            value = getattr(self, name)
            if not (_is_int(value) or isinstance(value, float)) or not ok(value):
                raise AirNetError(f"model config: {name} must be a number {rule}, got {value!r}")
        for name in ("global_residual", "sft", "dcn"):
            if not isinstance(getattr(self, name), bool):
                raise AirNetError(f"model config: {name} must be true or false, got {getattr(self, name)!r}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["enc_channels"] = list(self.enc_channels)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AirNetConfig:
        if not isinstance(d, dict):
            raise AirNetError(f"model config: expected a mapping of keys to values, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise AirNetError(f"model config: unknown keys {unknown}; known keys are {sorted(known)}")
        return cls(**d)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class AirNet(nn.Module):
    """All-in-one restorer for unknown corruption.

    Training: ``forward(x_query, x_key)`` -> (restored, logits, labels).
    Eval: ``forward(x)`` -> restored; only the restorer and the query encoder's first
    ResBlock run, which gives exactly the official eval output.
    """

    def __init__(self, config: AirNetConfig | None = None, dcn_impl: Impl = "auto") -> None:
        super().__init__()
        self.config = config or AirNetConfig()
        c = self.config
        self.R = DGRN(c.n_feats, c.enc_channels[0], c.n_groups, c.n_blocks, dcn_impl, c.global_residual, c.sft, c.dcn)
        self.E = CBDE(channels=c.enc_channels, dim=c.dim, K=c.queue_size, m=c.m, T=c.T)

    def set_dcn_impl(self, impl: Impl) -> AirNet:
        """Select the deformable-convolution implementation of every DCN layer."""
        if impl not in IMPLS:
            raise AirNetError(f"unknown DCN implementation {impl!r}; choose one of {IMPLS}")
        for module in self.modules():
            if isinstance(module, DCNLayer):
                module.dcn_impl = impl
        return self

    def forward(self, x_query: torch.Tensor, x_key: torch.Tensor | None = None):
        if self.training:
            _, logits, labels, inter = self.E(x_query, x_key)
            return self.R(x_query, inter), logits, labels
        return self.R(x_query, self.E.degradation_map(x_query))


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """``model`` in eval mode inside, every module's own mode back after: the caller's model is left as it was."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training
