"""DGRN: the degradation-guided restoration network (SFT layer, DGM, DGB, DGG, DGRN)."""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from airnet_restore.constants import Impl
from airnet_restore.models.dcn import DCNLayer


def conv3x3(in_ch: int, out_ch: int) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=True)


class SFTLayer(nn.Module):
    """Spatial feature transform: x * gamma(inter) + beta(inter) (plain gamma, not 1 + gamma)."""

    def __init__(self, channels: int, inter_channels: int) -> None:
        super().__init__()

        def branch() -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(inter_channels, channels, 1, bias=False),
                nn.LeakyReLU(0.1, inplace=True),
                nn.Conv2d(channels, channels, 1, bias=False),
            )

        self.conv_gamma = branch()
        self.conv_beta = branch()

    def forward(self, x: torch.Tensor, inter: torch.Tensor) -> torch.Tensor:
        return x * self.conv_gamma(inter) + self.conv_beta(inter)


class DGM(nn.Module):
    """Degradation-guided module: x + DCN(x, inter) + SFT(x, inter).

    The paper's Table 7 ablations: ``dcn=False`` puts a plain 3x3 conv (no bias, blind to
    ``inter``) in the DCN's place, ``sft=False`` drops the SFT term. With both on, the
    parameters and state-dict keys are the official ones.
    """

    def __init__(
        self, channels: int, inter_channels: int, dcn_impl: Impl = "auto", sft: bool = True, dcn: bool = True
    ) -> None:
        super().__init__()
        self.dcn = DCNLayer(channels, inter_channels, dcn_impl) if dcn else None
        self.conv = None if dcn else nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.sft = SFTLayer(channels, inter_channels) if sft else None

    def forward(self, x: torch.Tensor, inter: torch.Tensor) -> torch.Tensor:
        spatial = self.dcn(x, inter) if self.dcn is not None else cast(nn.Conv2d, self.conv)(x)
        return x + spatial if self.sft is None else x + spatial + self.sft(x, inter)


class DGB(nn.Module):
    """Degradation-guided block: DGM, conv, DGM (each followed by LeakyReLU), conv, plus the input."""

    def __init__(
        self, channels: int, inter_channels: int, dcn_impl: Impl = "auto", sft: bool = True, dcn: bool = True
    ) -> None:
        super().__init__()
        self.dgm1 = DGM(channels, inter_channels, dcn_impl, sft, dcn)
        self.dgm2 = DGM(channels, inter_channels, dcn_impl, sft, dcn)
        self.conv1 = conv3x3(channels, channels)
        self.conv2 = conv3x3(channels, channels)

    def forward(self, x: torch.Tensor, inter: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.dgm1(x, inter), 0.1)
        h = F.leaky_relu(self.conv1(h), 0.1)
        h = F.leaky_relu(self.dgm2(h, inter), 0.1)
        return self.conv2(h) + x


class DGG(nn.Module):
    """Group of DGBs followed by a conv, with a residual over the group."""

    def __init__(
        self,
        channels: int,
        inter_channels: int,
        n_blocks: int,
        dcn_impl: Impl = "auto",
        sft: bool = True,
        dcn: bool = True,
    ) -> None:
        super().__init__()
        self.body = nn.Sequential(
            *[DGB(channels, inter_channels, dcn_impl, sft, dcn) for _ in range(n_blocks)], conv3x3(channels, channels)
        )

    def forward(self, x: torch.Tensor, inter: torch.Tensor) -> torch.Tensor:
        r = x
        for block in self.body[:-1]:
            r = block(r, inter)
        return self.body[-1](r) + x


class DGRN(nn.Module):
    """Restorer: head conv, groups of DGBs at full resolution, trunk conv with residual, tail conv.

    No global input-to-output residual and no clamp, as in the official model. ``global_residual``
    (an addition, off for the paper's variant) adds the input to the output, so the network learns only
    the correction: with a zero tail it is exactly the identity, the right answer for a clean photo.
    ``sft`` and ``dcn`` switch the DGMs' two parts (the paper's Table 7 ablations; see ``DGM``).
    """

    def __init__(
        self,
        n_feats: int = 64,
        inter_channels: int = 64,
        n_groups: int = 5,
        n_blocks: int = 5,
        dcn_impl: Impl = "auto",
        global_residual: bool = False,
        sft: bool = True,
        dcn: bool = True,
    ) -> None:
        super().__init__()
        self.global_residual = global_residual
        self.head = nn.Sequential(conv3x3(3, n_feats))
        self.body = nn.Sequential(
            *[DGG(n_feats, inter_channels, n_blocks, dcn_impl, sft, dcn) for _ in range(n_groups)],
            conv3x3(n_feats, n_feats),
        )
        self.tail = nn.Sequential(conv3x3(n_feats, 3))

    def forward(self, x: torch.Tensor, inter: torch.Tensor) -> torch.Tensor:
        f = self.head(x)
        r = f
        for group in self.body[:-1]:
            r = group(r, inter)
        out = self.tail(self.body[-1](r) + f)
        return out + x if self.global_residual else out
