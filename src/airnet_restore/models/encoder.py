"""CBDE: the contrastive degradation encoder (ResBlock, ResEncoder, MoCo)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ResBlock(nn.Module):
    """Two 3x3 conv-BN layers plus a 1x1 conv-BN shortcut (always present), LeakyReLU(0.1) on the sum."""

    def __init__(self, in_feat: int, out_feat: int, stride: int = 1) -> None:
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Conv2d(in_feat, out_feat, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(out_feat),
            nn.LeakyReLU(0.1, inplace=True),
            nn.Conv2d(out_feat, out_feat, 3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(out_feat),
        )
        self.shortcut = nn.Sequential(
            nn.Conv2d(in_feat, out_feat, 1, stride=stride, bias=False),
            nn.BatchNorm2d(out_feat),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(self.backbone(x) + self.shortcut(x), 0.1)


class ResEncoder(nn.Module):
    """Degradation encoder: ``E_pre`` gives the full-resolution map ``inter`` the restorer uses;
    two strided blocks, a global pool and an MLP give the contrastive embedding."""

    def __init__(self, channels: tuple[int, int, int] = (64, 128, 256), dim: int = 256) -> None:
        super().__init__()
        c0, c1, c2 = channels
        self.E_pre = ResBlock(3, c0, stride=1)
        self.E = nn.Sequential(
            ResBlock(c0, c1, stride=2),
            ResBlock(c1, c2, stride=2),
            nn.AdaptiveAvgPool2d(1),
        )
        self.mlp = nn.Sequential(nn.Linear(c2, dim), nn.LeakyReLU(0.1, inplace=True), nn.Linear(dim, dim))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return (fea, out, inter): pooled feature, MLP projection, degradation map."""
        inter = self.E_pre(x)
        fea = self.E(inter).flatten(1)
        return fea, self.mlp(fea), inter


class MoCo(nn.Module):
    """MoCo v1: query encoder, momentum key encoder and a queue of negative keys.

    Positives are two crops of the same degraded image; the queue holds keys of earlier
    batches. ``enqueue`` is separate from the forward so a distributed trainer can
    gather keys from every rank first.
    """

    queue: torch.Tensor
    queue_ptr: torch.Tensor

    def __init__(
        self,
        channels: tuple[int, int, int] = (64, 128, 256),
        dim: int = 256,
        K: int = 256 * 5,
        m: float = 0.999,
        T: float = 0.07,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.K, self.m, self.T = K, m, T
        self.encoder_q = ResEncoder(channels, dim)
        self.encoder_k = ResEncoder(channels, dim)
        for p_q, p_k in zip(self.encoder_q.parameters(), self.encoder_k.parameters()):
            p_k.data.copy_(p_q.data)
            p_k.requires_grad = False
        self.register_buffer("queue", F.normalize(torch.randn(dim, K, generator=generator), dim=0))
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))

    @torch.no_grad()
    def momentum_update(self) -> None:
        """key <- m * key + (1 - m) * query, parameters only (BN statistics stay the key encoder's own)."""
        for p_q, p_k in zip(self.encoder_q.parameters(), self.encoder_k.parameters()):
            p_k.data.mul_(self.m).add_(p_q.data, alpha=1.0 - self.m)

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Write ``keys`` (N, dim) into the queue at the pointer; N must divide K.

        The write wraps around the end of the queue, so a run resumed with a larger batch (a CPU
        state continued on a GPU) goes on from a pointer that is not a multiple of the new N.
        """
        n = keys.shape[0]
        if self.K % n:
            raise ValueError(f"queue size K={self.K} must be divisible by the number of keys {n}")
        ptr = int(self.queue_ptr)
        if ptr + n <= self.K:
            self.queue[:, ptr : ptr + n] = keys.T
        else:
            self.queue[:, (ptr + torch.arange(n, device=keys.device)) % self.K] = keys.T
        self.queue_ptr[0] = (ptr + n) % self.K

    def contrast(
        self, x_query: torch.Tensor, x_key: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training step without enqueueing: (fea, logits, labels, inter, keys)."""
        fea, out, inter = self.encoder_q(x_query)
        q = F.normalize(out, dim=1)
        with torch.no_grad():
            self.momentum_update()
            k = F.normalize(self.encoder_k(x_key)[1], dim=1)
        l_pos = (q * k).sum(dim=1, keepdim=True)
        l_neg = q @ self.queue.clone().detach()
        logits = torch.cat([l_pos, l_neg], dim=1) / self.T
        labels = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
        return fea, logits, labels, inter, k

    def forward(self, x_query: torch.Tensor, x_key: torch.Tensor | None = None):
        """Train mode: (fea, logits, labels, inter) and the keys enter the queue. Eval: (fea, inter)."""
        if not self.training:
            fea, _, inter = self.encoder_q(x_query)
            return fea, inter
        if x_key is None:
            raise ValueError("training forward needs x_key, a second crop of the same degraded image")
        fea, logits, labels, inter, k = self.contrast(x_query, x_key)
        self.enqueue(k)
        return fea, logits, labels, inter


class CBDE(nn.Module):
    """Contrastive-based degradation encoder: a wrapper holding the MoCo object as ``E``."""

    def __init__(self, **moco_kwargs) -> None:
        super().__init__()
        self.E = MoCo(**moco_kwargs)

    def forward(self, x_query: torch.Tensor, x_key: torch.Tensor | None = None):
        return self.E(x_query, x_key)

    def degradation_map(self, x: torch.Tensor) -> torch.Tensor:
        """The map ``inter`` the restorer consumes: only the query encoder's first ResBlock runs."""
        return self.E.encoder_q.E_pre(x)
