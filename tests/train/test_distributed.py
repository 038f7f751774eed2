"""Process-group helpers: stop agreement across two gloo ranks, CUDA device set before NCCL, clean shutdown."""

import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from airnet_restore.errors import AirNetError
from airnet_restore.train import distributed
from airnet_restore.train.distributed import DistInfo, agree_stop, init_from_env, shutdown_process_group


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop_worker(rank: int, port: int, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    info = DistInfo(rank, 2, rank)
    # Only rank 1 wants to stop at the second step: both must stop there; no rank alone is enough to go on.
    decisions = [agree_stop(rank == 1 and step == 1, info) for step in range(3)]
    shutdown_process_group()
    Path(out, f"rank{rank}.txt").write_text(f"{decisions} {dist.is_initialized()}")


@pytest.mark.slow  # about 9 s: spawns a process group (CI runs -m slow)
def test_agree_stop_stops_every_rank_when_one_wants_to(tmp_path):
    mp.start_processes(_stop_worker, args=(_free_port(), str(tmp_path)), nprocs=2, start_method="spawn")
    for rank in (0, 1):
        assert (tmp_path / f"rank{rank}.txt").read_text() == "[False, True, False] False"


def test_single_process_needs_no_group():
    assert agree_stop(True, DistInfo()) is True and agree_stop(False, DistInfo()) is False
    shutdown_process_group()  # nothing joined: a no-op
    assert not dist.is_initialized()


def test_the_cuda_device_is_set_before_nccl_starts(monkeypatch):
    calls = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", lambda i: calls.append(("set_device", i)))
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.dist, "init_process_group", lambda backend: calls.append(("init", backend)))
    monkeypatch.setattr(distributed.dist, "get_rank", lambda: 1)
    monkeypatch.setattr(distributed.dist, "get_world_size", lambda: 2)
    assert init_from_env("cuda") == DistInfo(1, 2, 1)
    assert calls == [("set_device", 1), ("init", "nccl")]

    monkeypatch.setenv("LOCAL_RANK", "2")
    with pytest.raises(AirNetError, match="LOCAL_RANK 2 but only 2 CUDA device"):
        init_from_env("cuda")
