"""Datasets: official and generic folder layouts, the AIO sampler, and the data check."""

from airnet_restore.data.aio import AIODataset, TypeSource, augment, load_rgb8, random_crop, synthetic_pairs
from airnet_restore.data.layouts import LAYOUTS, Pair, list_images, paired_folders, read_layout

__all__ = [
    "AIODataset", "LAYOUTS", "Pair", "TypeSource", "augment", "list_images", "load_rgb8", "paired_folders",
    "random_crop", "read_layout", "synthetic_pairs",
]
