"""Names and defaults shared by the library and the command line; imports nothing heavy.

The ``airnet`` parser reads its defaults and choices from here, so ``airnet --help`` starts
without torch, numpy or OpenCV.
"""

from __future__ import annotations

from typing import Literal, get_args

# Deformable-convolution implementations (see ``airnet_restore.ops.deform_conv``).
Impl = Literal["auto", "torchvision", "grid_sample", "numba"]
IMPLS: tuple[Impl, ...] = get_args(Impl)

# Numeric precisions (see ``airnet_restore.precision``): restoring takes every one, training all but fp64.
Precision = Literal["fp32", "fp16", "bf16", "fp64"]
PRECISIONS: tuple[Precision, ...] = get_args(Precision)
TrainPrecision = Literal["fp32", "fp16", "bf16"]

# The registered variant used when none is named (see ``airnet_restore.variants``).
DEFAULT_VARIANT = "airnet-general-v8"

# Image files read and written (see ``airnet_restore.image_io``).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
# Pillow refuses images over 2 x Image.MAX_IMAGE_PIXELS (about 179 MP) as decompression bombs;
# our own limit sits just below, so one clear message covers both.
DEFAULT_MAX_PIXELS = 178_000_000
# JPEG outputs: quality (1-100) unless --jpeg-quality says otherwise; chroma is never subsampled.
JPEG_QUALITY = 95

# Tiled vs whole airnet-lite output on a 1024x683 photo with 256-px tiles: 60.8 dB PSNR at
# overlap 32, 72.7 dB at overlap 64 (README, training report).
DEFAULT_OVERLAP = 64

# The smallest tile the tiler runs (pixels per side).
MIN_TILE = 32
