"""Run the model over an image of any size: whole, or in overlapping tiles blended without seams.

Only tiles go to the device, and the caller supplies them (``crop``), so the image can stay at
its file's depth until each tile is converted; the output comes back in finished bands of rows,
so the caller can store it at its own depth too. AirNet's restorer is
conditioned on a local full-resolution map (not a global vector), so tiling is sound.
Each tile overlaps its neighbours by ``overlap`` pixels: the outer quarter of an overlap
is context only, the middle half is a smooth (sine) cross-fade. Image borders are never
faded, so one tile covering everything equals the untiled result.
"""

from __future__ import annotations

import gc
import math
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from airnet_restore.constants import CPU_FORWARD_BYTES, DEFAULT_OVERLAP, MIN_TILE
from airnet_restore.errors import AirNetError
from airnet_restore.postfilter.wiener import BYTES_PER_PIXEL as WIENER_BYTES_PER_PIXEL

CPU = torch.device("cpu")


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Evenly spaced tile origins covering [0, length) with at least ``overlap`` between neighbours."""
    if length <= tile:
        return [0]
    n = math.ceil((length - overlap) / (tile - overlap))
    return [round(i * (length - tile) / (n - 1)) for i in range(n)]


def axis_weight(start: int, size: int, length: int, overlap: int) -> np.ndarray:
    """1-D blending weight of one tile: 1 inside, a sine ramp over the middle of each interior overlap."""
    d = np.arange(size, dtype=np.float64)
    w = np.ones(size)
    context, ramp = overlap / 4.0, max(overlap / 2.0, 1.0)
    for dist, interior in ((d, start > 0), (size - 1 - d, start + size < length)):
        if interior:
            u = np.clip((dist + 0.5 - context) / ramp, 0.0, 1.0)
            w = w * np.maximum(np.sin(u * math.pi / 2) ** 2, 1e-4)
    return w.astype(np.float32)


def is_out_of_memory(e: BaseException) -> bool:
    return isinstance(e, torch.OutOfMemoryError) or (isinstance(e, RuntimeError) and "out of memory" in str(e))


def free_cuda_memory(device: torch.device) -> int:
    """Bytes a forward can use on a CUDA device: the driver's free memory plus the blocks PyTorch
    has reserved but not allocated (``mem_get_info`` counts those as used)."""
    free, _ = torch.cuda.mem_get_info(device)
    return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)


# A tile's (height, width); an int given by the user means a square.
TileShape = tuple[int, int]


def auto_tile_size(
    height: int, width: int, bytes_per_pixel: int, device: torch.device, overlap: int = DEFAULT_OVERLAP,
    ceiling: float = CPU_FORWARD_BYTES,
) -> TileShape | None:
    """The largest tile whose forward fits in free memory (on a CPU also in ``ceiling``: the network's own, or
    ``CPU_FORWARD_BYTES``), or None if the whole image fits. Square (each side at least 4 x overlap) unless the image is thinner than that square:
    then as high (or wide) as the image and as long as the budget allows, so a strip costs what its area costs
    rather than hundreds of small tiles."""
    if device.type == "cuda":
        budget = 0.8 * free_cuda_memory(device)
    else:
        budget = min(0.5 * available_ram(), ceiling)
    pixels = budget / bytes_per_pixel
    if height * width <= pixels:
        return None
    side = max(MIN_TILE, 4 * overlap, int(math.sqrt(pixels)) // 8 * 8)
    short = min(height, width)
    if short >= side:
        return side, side
    long = max(side, int(pixels / short) // 8 * 8)
    return (short, long) if height < width else (long, short)


def filter_tile(height: int, width: int, context: int, align: int, bytes_per_pixel: int = WIENER_BYTES_PER_PIXEL) -> int:
    """The side of the crops in which the post-filter's noise model runs on a ``height`` x ``width`` image, within
    the same ceiling as the network's CPU tiles: the whole image where it fits (a 1 MP photo does), else crops
    of a multiple of ``align`` with ``context`` pixels more around each (whose overlap the larger image pays:
    about 2.7x the noise model's work at the 2 GiB ceiling)."""
    budget = min(0.5 * available_ram(), CPU_FORWARD_BYTES)
    if height * width * bytes_per_pixel <= budget:
        return -(-max(height, width) // align) * align
    side = int(math.sqrt(budget / bytes_per_pixel)) - 2 * context
    return max(align, side // align * align)


def available_ram() -> float:
    """Bytes of memory available to this process (Linux /proc/meminfo; 4 GiB if unknown)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024.0
    except OSError:
        pass
    return 4.0 * 2**30


Forward = Callable[[torch.Tensor], torch.Tensor]
# crop(y, x, height, width) -> the (1,3,height,width) float tile of the image at (y, x), on the CPU.
Crop = Callable[[int, int, int, int], torch.Tensor]


def run_tiled(
    forward: Forward,
    image: torch.Tensor,
    device: torch.device,
    tile: int | TileShape | None,
    overlap: int,
    progress: bool = False,
    channels: int = 3,
) -> torch.Tensor:
    """Apply ``forward`` to ``image`` (1,C,H,W) whole (``tile`` None) or tiled; returns (1,``channels``,H,W) float32
    on the image's device.

    A tile that runs out of device memory is split into smaller tiles and retried.
    """
    _, _, h, w = image.shape
    out = torch.empty(1, channels, h, w, device=image.device)

    def crop(y: int, x: int, th: int, tw: int) -> torch.Tensor:
        return image[:, :, y : y + th, x : x + tw]

    for y0, band in tiled_bands(forward, crop, h, w, device, tile, overlap, progress, home=image.device, channels=channels):
        out[:, :, y0 : y0 + band.shape[2]] = band
    return out


def tiled_bands(
    forward: Forward,
    crop: Crop,
    height: int,
    width: int,
    device: torch.device,
    tile: int | TileShape | None,
    overlap: int,
    progress: bool = False,
    home: torch.device = CPU,
    channels: int = 3,
) -> Iterator[tuple[int, torch.Tensor]]:
    """``run_tiled`` on an image given by ``crop``: yields (first row, (1,channels,rows,width) float32) bands
    from top to bottom, each final once yielded; only one row of tiles is held at a time. The tiles
    come from and the bands stay on ``home`` (the image's device); only tiles go to ``device``."""
    h, w = height, width
    shape = tile if isinstance(tile, tuple) or tile is None else (int(tile), int(tile))
    if shape is not None and min(shape) < MIN_TILE:
        raise AirNetError(f"tile size {min(shape)} is too small; use at least {MIN_TILE}")
    if shape is None or (h <= shape[0] and w <= shape[1]):
        result = _attempt(forward, crop(0, 0, h, w), device)
        if result is not None:
            yield 0, result
            return
        _free(device)
        shape = (_smaller(max(h, w), overlap),) * 2
    if overlap < 0 or any(2 * overlap >= side for side, length in zip(shape, (h, w)) if length > side):
        raise AirNetError(f"tile overlap {overlap} must be >= 0 and less than half the tile size {min(shape)}")
    ys, xs = tile_starts(h, shape[0], overlap), tile_starts(w, shape[1], overlap)
    th, tw = min(shape[0], h), min(shape[1], w)
    carry = None  # sums over the rows that the previous row of tiles shares with this one
    with tqdm(total=len(ys) * len(xs), desc="tiles", unit="tile", leave=False, disable=not progress) as bar:
        for i, y0 in enumerate(ys):
            out = torch.zeros(1, channels, th, w, device=home)
            weight = torch.zeros(1, 1, th, w, device=home)
            if carry is not None:
                n = carry[0].shape[2]
                out[:, :, :n], weight[:, :, :n] = carry
            wy = torch.from_numpy(axis_weight(y0, th, h, overlap)).view(1, 1, th, 1).to(home)
            for x0 in xs:
                patch = crop(y0, x0, th, tw)
                result = _attempt(forward, patch, device)
                if result is None:
                    _free(device)
                    result = run_tiled(forward, patch, device, _smaller(max(th, tw), overlap), overlap, progress=False,
                                       channels=channels)
                wx = torch.from_numpy(axis_weight(x0, tw, w, overlap)).view(1, 1, 1, tw).to(home)
                out[:, :, :, x0 : x0 + tw] += result * (wy * wx)
                weight[:, :, :, x0 : x0 + tw] += wy * wx
                bar.update()
            done = (ys[i + 1] if i + 1 < len(ys) else h) - y0  # rows no later tile touches
            yield y0, out[:, :, :done] / weight[:, :, :done]
            carry = out[:, :, done:], weight[:, :, done:]


def _attempt(forward: Forward, patch: torch.Tensor, device: torch.device) -> torch.Tensor | None:
    """``forward(patch)`` on ``device`` as float32 on the patch's own device, or None when the device ran out of memory.

    Returning from outside the handler drops the exception and its traceback, whose frames hold the
    failed forward's activations, so the caller can free them before it retries.
    """
    try:
        return forward(patch.to(device)).float().to(patch.device)
    except BaseException as e:
        if not is_out_of_memory(e):
            raise
    return None


def _smaller(tile: int, overlap: int) -> int:
    new = tile // 2
    if new < MIN_TILE or 2 * overlap >= new:
        raise AirNetError(f"out of device memory even with {tile}-pixel tiles; use --device cpu or a smaller --tile-overlap")
    return new


def _free(device: torch.device) -> None:
    """Release what a failed forward left behind, then the allocator's cached blocks."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
