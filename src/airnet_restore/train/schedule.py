"""The paper's learning-rate schedule, as a function of the epoch."""

from __future__ import annotations

from airnet_restore.train.config import TrainSection


def lr_at(epoch: int, t: TrainSection) -> float:
    """LR used during ``epoch`` (0-based). The official code sets it at the end of each epoch e:
    e <= warm-up: lr * 0.1^(e // 60); after: lr_joint * 0.5^((e - warm-up) // 125)."""
    if epoch == 0:
        return t.lr
    e = epoch - 1
    if e <= t.epochs_encoder:
        return t.lr * 0.1 ** (e // t.lr_drop_epoch)
    return t.lr_joint * 0.5 ** ((e - t.epochs_encoder) // t.lr_halve_every)
