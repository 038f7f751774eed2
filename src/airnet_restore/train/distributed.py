"""torchrun support: process group set-up, key gathering for the MoCo queue, rank-0-only side effects."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from airnet_restore.errors import AirNetError


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
    """Join the process group torchrun describes in the environment (NCCL on CUDA, gloo on CPU).

    On CUDA the rank's device (``LOCAL_RANK``) is made current first: NCCL binds its communicator
    to the current device, and every rank would otherwise start on GPU 0.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        if device_type == "cuda":
            if local_rank >= torch.cuda.device_count():
                raise AirNetError(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} CUDA device(s) are visible")
            torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank)


def shutdown_process_group() -> None:
    """Leave the process group at the end of a run (also after an error); nothing to do when none was joined."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


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
