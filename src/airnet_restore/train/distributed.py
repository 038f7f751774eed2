"""torchrun support: process group set-up, key gathering for the MoCo queue, rank-0-only side effects."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_from_env(device_type: str) -> DistInfo:
    """Join the process group torchrun describes in the environment (NCCL on CUDA, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def gather_keys(keys: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Keys of every rank in rank order, so the queue holds global negatives and stays identical everywhere."""
    if not info.enabled:
        return keys
    parts = [torch.empty_like(keys) for _ in range(info.world_size)]
    dist.all_gather(parts, keys.contiguous())
    return torch.cat(parts)


def all_reduce_mean(value: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if info.enabled:
        value = value.clone()
        dist.all_reduce(value)
        value /= info.world_size
    return value


def agree_stop(flag: bool, info: DistInfo) -> bool:
    """True on every rank when any rank wants to stop (time budget, SIGTERM), so all stop at the same step."""
    if not info.enabled:
        return flag
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())
