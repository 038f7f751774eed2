"""The all-in-one (AIO) training sampler of the paper, reproducible from one seed.

Each batch of ``len(sources)`` samples holds exactly one sample of every degradation
type. A sample is two crops of the same degraded image (the contrastive positive pair)
with their clean targets. Everything random about item ``i`` of epoch ``e`` is drawn from
a generator seeded by (seed, global batch, type), so results do not depend on the number
of DataLoader workers, noise differs across epochs and workers, and distributed ranks
read disjoint batches.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from airnet_restore.data.layouts import Pair
from airnet_restore.degradations import get_degradation
from airnet_restore.errors import AirNetError
from airnet_restore.image_io import from_float, read_image


@lru_cache(maxsize=256)
def load_rgb8(path: Path) -> np.ndarray:
    """A file as uint8 HxWx3 RGB (grey replicated, as the paper's ``convert('RGB')``), cached per process."""
    return from_float(read_image(path).rgb, np.dtype(np.uint8))


@dataclass(frozen=True)
class TypeSource:
    """Where one degradation type's samples come from: clean images degraded on the fly, or file pairs."""

    name: str
    clean: tuple[Path, ...] = ()
    degradation: str | None = None
    pairs: tuple[Pair, ...] = ()

    def __post_init__(self) -> None:
        if bool(self.pairs) == bool(self.clean):
            raise AirNetError(f"degradation type {self.name!r}: give either clean images or degraded/clean pairs")
        if self.clean:
            get_degradation(self.degradation or self.name)  # validates the name

    def __len__(self) -> int:
        return len(self.pairs) or len(self.clean)


def augment(flag: int, *arrays: np.ndarray) -> list[np.ndarray]:
    """The paper's eight flips/rotations: flag 0 identity, 1 flipud, 2 rot90, 3 rot90+flipud, 4 rot180, ...

    The official code draws flags 1-7 only (never the identity); ``AIODataset`` does the same.
    """
    k, flip = flag // 2, flag % 2 == 1
    out = []
    for a in arrays:
        a = np.rot90(a, k) if k else a
        out.append(np.ascontiguousarray(np.flipud(a) if flip else a))
    return out


def random_crop(rng: np.random.Generator, size: int, *arrays: np.ndarray) -> list[np.ndarray]:
    """The same random ``size`` x ``size`` window of aligned arrays (reflect-padded if smaller)."""
    h, w = arrays[0].shape[:2]
    if h < size or w < size:
        pad = ((0, max(0, size - h)), (0, max(0, size - w)), (0, 0))
        arrays = tuple(np.pad(a, pad, mode="reflect") for a in arrays)
        h, w = arrays[0].shape[:2]
    y, x = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    return [a[y : y + size, x : x + size] for a in arrays]


def to_tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1).float().div_(255.0)


class AIODataset(Dataset):
    """Items (type id, degraded crop 1, degraded crop 2, clean crop 1, clean crop 2); use batch size ``batch_size``.

    A batch holds ``per_type`` samples of every type (the paper: one), ``iters_per_epoch``
    batches per epoch (the paper: 400). Indices run on across epochs from the one ``set_epoch`` gives.
    """

    def __init__(
        self,
        sources: list[TypeSource],
        patch_size: int = 128,
        iters_per_epoch: int = 400,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        per_type: int = 1,
    ) -> None:
        if not sources:
            raise AirNetError("the AIO sampler needs at least one degradation type")
        self.sources = sources
        self.patch_size = patch_size
        self.iters_per_epoch = iters_per_epoch
        self.seed = seed
        self.rank, self.world_size = rank, world_size
        self.per_type = per_type
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def batch_size(self) -> int:
        return self.per_type * len(self.sources)

    def __len__(self) -> int:
        return self.iters_per_epoch * self.batch_size

    def _pick(self, type_index: int, draw: int) -> int:
        """Each type walks its own reshuffled list, ``per_type`` items per batch, like the official cursors."""
        n = len(self.sources[type_index])
        epoch_of_list, position = divmod(draw, n)
        order = np.random.default_rng([self.seed, type_index, epoch_of_list, 7]).permutation(n)
        return int(order[position])

    def __getitem__(self, index: int):
        """Item ``index`` of epoch ``set_epoch``; indices past one epoch continue into the next ones."""
        n_types = len(self.sources)
        later, index = divmod(index, len(self))
        epoch = self.epoch + later
        batch, slot = divmod(index, self.batch_size)
        repeat, t = divmod(slot, n_types)
        global_batch = ((epoch * self.iters_per_epoch) + batch) * self.world_size + self.rank
        # With one sample per type (the paper's batch) the keys are those of earlier versions.
        rng = np.random.default_rng([self.seed, global_batch, slot])
        src = self.sources[t]
        item = self._pick(t, global_batch * self.per_type + repeat)
        p = self.patch_size
        if src.pairs:
            pair = src.pairs[item]
            degraded, clean = load_rgb8(pair.degraded), load_rgb8(pair.clean)
            if degraded.shape != clean.shape:
                raise AirNetError(f"{pair.degraded}: size {degraded.shape[:2]} differs from its target {pair.clean} {clean.shape[:2]}")
            # Paired data: each crop pair gets its own augmentation, as in the paper.
            d1, c1 = augment(int(rng.integers(1, 8)), *random_crop(rng, p, degraded, clean))
            d2, c2 = augment(int(rng.integers(1, 8)), *random_crop(rng, p, degraded, clean))
        else:
            clean = load_rgb8(src.clean[item])
            # Degrade a random region of 4 x patch around which both crops are taken: the same
            # degraded "image" for the positive pair, at a fraction of the cost on large photos.
            if min(clean.shape[:2]) > 4 * p:
                (clean,) = random_crop(rng, 4 * p, clean)
            degraded = get_degradation(src.degradation or src.name)(clean, rng)
            # Synthetic data: one shared augmentation for both crops, as the paper's noise samples.
            flag = int(rng.integers(1, 8))
            d1, c1 = augment(flag, *random_crop(rng, p, degraded, clean))
            d2, c2 = augment(flag, *random_crop(rng, p, degraded, clean))
        return t, to_tensor(d1), to_tensor(d2), to_tensor(c1), to_tensor(c2)


def synthetic_pairs(cleans: Sequence[np.ndarray], degradation: str, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Deterministic (degraded, clean) uint8 RGB pairs, the pairs of ``airnet eval`` and of training validation:
    one generator seeded by (seed, degradation name) degrades the (already cropped) images in order."""
    fn = get_degradation(degradation)
    rng = np.random.default_rng([seed, zlib.crc32(degradation.encode())])
    return [(fn(clean, rng), clean) for clean in cleans]
