"""AirNet = DGRN restorer ``R`` + CBDE encoder ``E``, and the configuration that sizes it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from airnet_restore.architecture import AirNetConfig
from airnet_restore.constants import IMPLS, Impl
from airnet_restore.errors import AirNetError
from airnet_restore.models.dcn import DCNLayer
from airnet_restore.models.encoder import CBDE
from airnet_restore.models.restorer import DGRN


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
