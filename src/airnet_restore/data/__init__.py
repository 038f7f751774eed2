"""Datasets: official and generic folder layouts, the AIO sampler, and the data check."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airnet_restore.data.layouts import LAYOUTS, Pair, list_images, paired_folders, read_layout

if TYPE_CHECKING:
    from airnet_restore.data.aio import AIODataset, TypeSource, augment, load_rgb8, random_crop, synthetic_pairs

__all__ = [
    "LAYOUTS", "AIODataset", "Pair", "TypeSource", "augment", "list_images", "load_rgb8", "paired_folders",
    "random_crop", "read_layout", "synthetic_pairs",
]
# Names of the sampler, which needs torch: imported on first use (PEP 562) so the layouts load alone.
_AIO = ("AIODataset", "TypeSource", "augment", "load_rgb8", "random_crop", "synthetic_pairs")


def __getattr__(name: str) -> Any:
    """The sampler's names, from ``airnet_restore.data.aio`` on first use."""
    if name not in _AIO:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from airnet_restore.data import aio

    return getattr(aio, name)
