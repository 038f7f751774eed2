"""AirNet = DGRN restorer ``R`` + CBDE encoder ``E``, and the configuration that sizes it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import nn

from airnet_restore.errors import AirNetError
from airnet_restore.models.dcn import DCNLayer
from airnet_restore.models.encoder import CBDE
from airnet_restore.models.restorer import DGRN
from airnet_restore.ops.deform_conv import IMPLS, Impl


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

    def __post_init__(self) -> None:
        object.__setattr__(self, "enc_channels", tuple(int(c) for c in self.enc_channels))
        for name in ("n_feats", "n_groups", "n_blocks", "dim", "queue_size"):
            if int(getattr(self, name)) < 1:
                raise AirNetError(f"model config: {name} must be a positive integer, got {getattr(self, name)!r}")
        if len(self.enc_channels) != 3 or min(self.enc_channels) < 1:
            raise AirNetError(f"model config: enc_channels must be three positive integers, got {self.enc_channels!r}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["enc_channels"] = list(self.enc_channels)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "AirNetConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise AirNetError(f"model config: unknown keys {unknown}; known keys are {sorted(known)}")
        return cls(**d)


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
        self.R = DGRN(c.n_feats, c.enc_channels[0], c.n_groups, c.n_blocks, dcn_impl)
        self.E = CBDE(channels=c.enc_channels, dim=c.dim, K=c.queue_size, m=c.m, T=c.T)

    def set_dcn_impl(self, impl: Impl) -> "AirNet":
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
