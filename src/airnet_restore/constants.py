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

# The bundled haze maps (``models/hazemap.py``; ``assets/<name>.safetensors``, float16) and the sha256 of their bytes.
HAZE_MAPS = {
    "hazemap-v1": "7a17e694f742b037aa718ae98967aff7c1efb4ae9022a4bdfc511566cdb2d029",
}

# Image files read and written (see ``airnet_restore.image_io``).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
# Pillow refuses images over 2 x Image.MAX_IMAGE_PIXELS (about 179 MP) as decompression bombs;
# our own limit sits just below, so one clear message covers both.
DEFAULT_MAX_PIXELS = 178_000_000
# JPEG outputs: quality (1-100) unless --jpeg-quality says otherwise; chroma is never subsampled.
JPEG_QUALITY = 95
# PNG outputs: zlib level (0-9). At 4 a megapixel photo is written in 0.20-0.22 s, against 0.46-0.56 s at Pillow's
# default (6), in a file 2 % larger (16-bit: 4-5 % larger; OpenCV's default wrote it 1.7x as large in 0.12 s):
# `python benchmarks/png_level.py`, benchmarks/README.md.
PNG_COMPRESS_LEVEL = 4

# Tiled vs whole airnet-lite output on a 1024x683 photo with 256-px tiles: 60.8 dB PSNR at
# overlap 32, 72.7 dB at overlap 64 (README, training report).
DEFAULT_OVERLAP = 64

# The smallest tile the tiler runs (pixels per side).
MIN_TILE = 32

# Thinner images are reflect-padded to this size and cropped back: the network's zero padding at
# every layer ruins a thin strip. airnet-lite on a 1x600 row of a real photo with sigma-25 noise
# (20.4 dB): 12.3 dB restored alone before, 26.8 dB padded (16 px of padding already gives that).
MIN_SIDE = 32
# Peak bytes per pixel of an inference forward, per feature channel, by device type; sizes tiles
# from free memory. cpu: a whole-image forward of the default weights (numba DCN, channels-last, the
# tuned allocator) peaked at 60.4, 48.5, 59.3 and 65.0 over the resident set before it at 0.25, 0.5,
# 1 and 2 megapixels (`python benchmarks/profile_restore.py --memory 0.25,0.5,1,2`), plus 10 %.
# cuda: the "memory per pixel" section of benchmarks/gpu_check.py measured at most 74 on an H100 (airnet and airnet-lite,
# fp32 and bf16), plus margin. Other device types use the largest value.
BYTES_PER_PIXEL_PER_CHANNEL: dict[str, int] = {"cpu": 72, "cuda": 96}


def bytes_per_pixel_per_channel(device_type: str) -> int:
    """The peak-memory constant of a device type ("cpu", "cuda"; the largest one for an unmeasured type)."""
    return BYTES_PER_PIXEL_PER_CHANNEL.get(device_type, max(BYTES_PER_PIXEL_PER_CHANNEL.values()))

# On a CPU, a forward may use at most this much on top of the image buffers (and half the available
# memory). Tiles cost their overlaps: a 1000x1000 photo in the 744-px tiles of the former 0.6 GiB
# ceiling took 1.7x its whole forward (issue 35), so tiles are as large as this allows: with the
# measured 72 bytes per pixel and channel (above), the default weights (24 channels) run an
# image of up to 1.24 megapixels whole and a larger one in tiles of about 1112 px, each forward
# peaking about 2 GB over the process's 0.75 GB (benchmarks/profile_restore.py --memory).
# A network may state a lower ceiling of its own (``forward_bytes``: onnxruntime's, export.py).
CPU_FORWARD_BYTES = 2.0 * 2**30
