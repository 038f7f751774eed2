"""The main job: restore one image of any kind and size, or a whole batch of files safely."""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

import numpy as np
import torch
from PIL import Image
from torch import nn
from tqdm.auto import tqdm

from airnet_restore.atomic import remove_stale_parts
from airnet_restore.constants import (
    DEFAULT_MAX_PIXELS,
    DEFAULT_OVERLAP,
    DEFAULT_VARIANT,
    JPEG_QUALITY,
    Precision,
)
from airnet_restore.errors import AirNetError
from airnet_restore.files import check_output_folder, collect_inputs, plan_outputs
from airnet_restore.image_io import (
    check_jpeg_quality,
    check_pixels,
    check_writable,
    depth_warning,
    from_float,
    join_channels,
    metadata_warning,
    output_dtype,
    read_image,
    split_channels,
    to_float,
    write_image,
)
from airnet_restore.inference.blend import CHECK_WINDOW, Blend, Fraction, check_fraction, residual_sums, resolve_blend
from airnet_restore.inference.tiling import CPU, Crop, Forward, TileShape, auto_tile_size, tiled_bands
from airnet_restore.memory import tune_allocator
from airnet_restore.models.airnet import AirNet, eval_mode
from airnet_restore.precision import autocast, check_precision
from airnet_restore.variants import MIN_SIDE, load_model

if TYPE_CHECKING:
    from airnet_restore.export import OnnxRestorer
    from airnet_restore.inspection import Inspection

Tile = int | Literal["auto"] | None
ImageLike = TypeVar("ImageLike", np.ndarray, Image.Image, torch.Tensor)


@lru_cache(maxsize=4)
def default_model(device: str = "auto") -> AirNet:
    """The default variant's bundled weights, loaded once per device."""
    return load_model(DEFAULT_VARIANT, device=device)


def model_device(model: nn.Module) -> torch.device:
    """Where the model's weights are; CPU for one without torch parameters (the onnxruntime backend)."""
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def restore_tensor(
    model: AirNet | OnnxRestorer,
    x: torch.Tensor,
    *,
    tile: Tile = "auto",
    tile_overlap: int = DEFAULT_OVERLAP,
    precision: Precision = "fp32",
    strength: Fraction = "auto",
    anchor: Fraction = "auto",
    blend: Blend | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Restore (3,H,W) or (B,3,H,W) RGB floats in [0, 1]; the output has the input's shape, device and dtype.

    Images are processed one at a time on the model's device; each is kept whole or
    tiled (``tile``: "auto" from free memory, an int, or None for never). The image stays on
    its device (only tiles move to the model's), and the model is left as it was given.
    ``strength``, ``anchor``: how the network's correction reaches the output, resolved per image
    (``resolve_blend``); ``blend``: one already resolved, used instead for every image.
    """
    if x.dim() not in (3, 4) or x.shape[-3] != 3:
        raise AirNetError(f"expected an RGB tensor of shape (3,H,W) or (B,3,H,W), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise AirNetError(f"expected a float tensor in [0, 1], got {x.dtype}")
    if x.numel() == 0:
        raise AirNetError(f"empty image tensor of shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise AirNetError("the image tensor holds NaN or infinite values; replace them with finite values first")
    _check_blend(strength, anchor, blend)
    network, device = _forward(model, precision)
    batch = x if x.dim() == 4 else x[None]
    outs = []
    for image in batch:
        plan = _plan(model, image, strength, anchor, blend)
        h, w = image.shape[-2:]
        (top, bottom), (left, right) = _working_padding(h, w)
        padded = _reflect_pad(image.detach().float().clamp(0, 1), (top, bottom), (left, right))[None]
        height, width = padded.shape[-2:]
        size: TileShape | int | None = (auto_tile_size(height, width, model.config.n_feats, device, tile_overlap)
                                        if tile == "auto" else tile)

        def crop(y: int, x: int, th: int, tw: int, padded: torch.Tensor = padded) -> torch.Tensor:
            return padded[:, :, y : y + th, x : x + tw]

        result = torch.empty(1, 3, height, width, device=padded.device)
        _, bands = _blended_bands(plan, network, crop, height, width, device, size, tile_overlap, progress, padded.device)
        for y0, band in bands:
            result[:, :, y0 : y0 + band.shape[2]] = band
        result = result[:, :, top : top + h, left : left + w]
        _check_finite(result, precision)
        outs.append(result.clamp(0, 1))
    out = torch.cat(outs).to(device=x.device, dtype=x.dtype)
    return out if x.dim() == 4 else out[0]


def _check_blend(strength: object, anchor: object, blend: object) -> None:
    """Refuse bad ``strength`` / ``anchor`` values, or either given beside a resolved ``blend``, before any work."""
    check_fraction("strength", strength)
    check_fraction("anchor", anchor)
    if blend is not None and not isinstance(blend, Blend):
        raise AirNetError(f"blend must be a Blend (from resolve_blend), got {type(blend).__name__}")
    if blend is not None and (strength, anchor) != ("auto", "auto"):
        raise AirNetError("give either blend or strength and anchor, not both")


def _plan(model: object, image: Any, strength: Fraction, anchor: Fraction, blend: Blend | None) -> Blend:
    """``blend`` if given; else the resolved blend, without inspecting the image where nothing needs it."""
    if blend is not None:
        return blend
    if strength == 0 or (strength != "auto" and anchor == 0):
        return Blend(float(strength))
    return resolve_blend(model, image, strength, anchor)[0]


# Rows at a time in which a blend settled after the network (a check of its output) is mixed.
MIX_ROWS = 256


def _blended_bands(
    blend: Blend,
    network: Forward,
    crop: Crop,
    height: int,
    width: int,
    device: torch.device,
    tile: int | TileShape | None,
    overlap: int,
    progress: bool,
    home: torch.device = CPU,
) -> tuple[Blend, Iterator[tuple[int, torch.Tensor]]]:
    """The settled blend and the bands of the blended output (``tiled_bands``). A settled blend streams
    band by band; one that checks the network's output first keeps the network's output and the noise
    model's estimate for the whole image (24 bytes a pixel on ``home``), settles, then mixes (where the
    settled blend says ``first``, after the network has restored the estimate in place of its output)."""
    if blend.settled:
        return blend, tiled_bands(blend.apply(network), crop, height, width, device, tile, overlap, progress, home)
    both = torch.empty(1, 6, height, width, device=home)
    for y0, band in tiled_bands(blend.estimates(network), crop, height, width, device, tile, overlap, progress, home, 6):
        both[:, :, y0 : y0 + band.shape[2]] = band
    rows = range(0, height, MIX_ROWS)
    reach = MIX_ROWS + CHECK_WINDOW - 1  # each band's local means may reach into the next band's rows
    sums = torch.stack([residual_sums(crop(y, 0, reach, width).to(home), both[:, :3, y : y + reach], blend.sigma, MIX_ROWS)
                        for y in rows]).sum(0)
    settled = blend.settle(sums)
    if settled.first:  # haze or rain beside the noise: the network restores the noise model's estimate
        def estimate(y: int, x: int, th: int, tw: int) -> torch.Tensor:
            return both[:, 3:, y : y + th, x : x + tw].clamp(0, 1)

        for y0, band in tiled_bands(network, estimate, height, width, device, tile, overlap, progress, home):
            both[:, :3, y0 : y0 + band.shape[2]] = band.clamp(0, 1)

    def mixed() -> Iterator[tuple[int, torch.Tensor]]:
        for y in rows:
            part = both[:, :, y : y + MIX_ROWS]
            yield y, settled.mix(crop(y, 0, MIX_ROWS, width).to(home), part[:, :3], part[:, 3:])

    return settled, mixed()


def _forward(model: AirNet | OnnxRestorer, precision: Precision) -> tuple[Forward, torch.device]:
    """The model's inference forward at ``precision`` (in eval mode, the model's own modes restored
    after each call) and the device it runs on."""
    check_precision(precision)
    tune_allocator()
    device = model_device(model)
    net = _float64(model, device) if precision == "fp64" else model

    def forward(t: torch.Tensor) -> torch.Tensor:
        if precision == "fp64":
            t = t.double()
        if device.type == "cpu":
            t = t.contiguous(memory_format=torch.channels_last)  # fastest layout for the fused CPU kernel (benchmarks)
        with torch.no_grad(), autocast(device, precision), eval_mode(net):
            return net(t)

    return forward, device


def _float64(model: AirNet | OnnxRestorer, device: torch.device) -> nn.Module:
    """A float64 copy of ``model`` (precision fp64)."""
    if device.type == "mps" or next(model.parameters(), None) is None:
        raise AirNetError("precision fp64 runs a PyTorch model on a CPU or CUDA device; for onnxruntime export with --double")
    return copy.deepcopy(model).double()


def _reflect_pad(image: torch.Tensor, rows: tuple[int, int], cols: tuple[int, int]) -> torch.Tensor:
    """(3,H,W) reflect-padded by (top, bottom) rows and (left, right) columns on its own device, as
    ``numpy.pad(mode="reflect")``: pads longer than a side reflect again, a 1-pixel side is replicated."""
    if not any(rows) and not any(cols):
        return image
    h, w = image.shape[-2:]
    return image[:, _reflect_index(h, *rows, image.device)][:, :, _reflect_index(w, *cols, image.device)]


def _reflect_index(n: int, before: int, after: int, device: torch.device) -> torch.Tensor:
    i = torch.arange(-before, n + after, device=device)
    if n == 1:
        return torch.zeros_like(i)
    period = 2 * (n - 1)
    i = i.remainder(period)
    return torch.where(i >= n, period - i, i)


def _working_padding(h: int, w: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """(top, bottom), (left, right) reflect padding that brings each side to at least ``MIN_SIDE``."""
    ph, pw = max(0, MIN_SIDE - h), max(0, MIN_SIDE - w)
    return (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)


def _check_finite(result: torch.Tensor, precision: str) -> None:
    if not torch.isfinite(result).all():
        raise AirNetError(f"the model produced NaN or infinite values (precision {precision}); try --precision fp32")


def restore_pixels(
    model: AirNet | OnnxRestorer,
    pixels: np.ndarray,
    dtype: np.dtype | None = None,
    *,
    tile: Tile = "auto",
    tile_overlap: int = DEFAULT_OVERLAP,
    precision: Precision = "fp32",
    strength: Fraction = "auto",
    anchor: Fraction = "auto",
    blend: Blend | None = None,
    progress: bool = False,
) -> np.ndarray:
    """Restore HxWx3 RGB pixels (uint8, uint16 or float in [0, 1]) into a new HxWx3 array of ``dtype``
    (default: the input's), as ``restore_tensor`` would, without a float copy of the whole image:
    each tile is converted to float on its own and each finished band of rows stored at once
    (where the anchor checks the network's output, its output is kept whole until then).
    ``strength``, ``anchor``, ``blend``: as in ``restore_tensor`` ("auto" inspects the image first,
    tile by tile; a strength with anchor 0 skips the inspection)."""
    return restore_pixels_blended(model, pixels, dtype, tile=tile, tile_overlap=tile_overlap, precision=precision,
                                  strength=strength, anchor=anchor, blend=blend, progress=progress)[0]


def restore_pixels_blended(
    model: AirNet | OnnxRestorer,
    pixels: np.ndarray,
    dtype: np.dtype | None = None,
    *,
    tile: Tile = "auto",
    tile_overlap: int = DEFAULT_OVERLAP,
    precision: Precision = "fp32",
    strength: Fraction = "auto",
    anchor: Fraction = "auto",
    blend: Blend | None = None,
    progress: bool = False,
) -> tuple[np.ndarray, Blend]:
    """``restore_pixels``, and the blend it applied (settled: its anchor after the check of the network's output)."""
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise AirNetError(f"expected HxWx3 RGB pixels, got shape {pixels.shape}")
    if pixels.size == 0:
        raise AirNetError(f"empty image (shape {pixels.shape})")
    to_float(pixels[:1, :1])  # refuses an unsupported pixel type before any work
    _check_blend(strength, anchor, blend)
    network, device = _forward(model, precision)
    plan = _plan(model, pixels, strength, anchor, blend)
    h, w = pixels.shape[:2]
    (top, bottom), (left, right) = _working_padding(h, w)
    if top or bottom or left or right:
        pixels = np.pad(pixels, ((top, bottom), (left, right), (0, 0)), mode="reflect")
    height, width = pixels.shape[:2]
    size: TileShape | int | None = auto_tile_size(height, width, model.config.n_feats, device, tile_overlap) if tile == "auto" else tile
    out = np.empty((h, w, 3), dtype if dtype is not None else pixels.dtype)

    def crop(y: int, x: int, th: int, tw: int) -> torch.Tensor:
        return torch.from_numpy(to_float(pixels[y : y + th, x : x + tw])).permute(2, 0, 1)[None].clamp(0, 1)

    settled, bands = _blended_bands(plan, network, crop, height, width, device, size, tile_overlap, progress)
    for y0, band in bands:
        first, last = max(y0, top), min(y0 + band.shape[2], top + h)  # the band's rows inside the unpadded image
        if first >= last:
            continue
        rows = band[0, :, first - y0 : last - y0, left : left + w]
        _check_finite(rows, precision)
        out[first - top : last - top] = from_float(rows.clamp(0, 1).permute(1, 2, 0).numpy(), out.dtype)
    return out, settled


@overload
def restore(image: ImageLike, model: AirNet | OnnxRestorer | None = None, **options: Any) -> ImageLike: ...
@overload
def restore(image: str | os.PathLike, model: AirNet | OnnxRestorer | None = None, **options: Any) -> np.ndarray: ...
def restore(
    image: np.ndarray | Image.Image | torch.Tensor | str | os.PathLike, model: AirNet | OnnxRestorer | None = None, **options: Any
) -> np.ndarray | Image.Image | torch.Tensor:
    """Restore an image whose corruption is unknown; returns the same kind as given.

    ``image``: a numpy array (HxW or HxWxC, C = 1, 3 or 4; uint8, uint16 or float in [0, 1]),
    a PIL image, a torch tensor ((3,H,W) or (B,3,H,W) float) or a path (returns a numpy
    array of the file's depth and channels). Alpha is carried through untouched; grey stays
    grey. ``model``: defaults to the bundled default variant. ``options``: ``tile``,
    ``tile_overlap``, ``precision``, ``strength``, ``anchor``, ``blend``, ``progress`` (see ``restore_tensor``);
    ``strength="auto"`` (the default) scales the correction by the probability that the image is
    degraded at all, so an image found surely clean comes back nearly unchanged; ``anchor="auto"``
    (the default) moves the output towards the noise model's estimate (the input Wiener-filtered with
    the network's output as the pilot: the input's tones, and its detail above the noise) where only
    noise is found (``inference.blend``).
    """
    model = model if model is not None else default_model()
    if isinstance(image, torch.Tensor):
        return restore_tensor(model, image, **options)
    if isinstance(image, (str, os.PathLike)):
        data = read_image(image)
        return join_channels(restore_pixels(model, data.pixels, data.dtype, **options), data.grey, data.alpha)
    if isinstance(image, Image.Image):
        mode = image.mode
        if mode not in ("L", "LA", "RGB", "RGBA", "I;16"):
            raise AirNetError(f"unsupported PIL mode {mode!r}; convert to RGB, RGBA, L, LA or I;16 first")
        out = restore(np.asarray(image), model, **options)
        return Image.fromarray(out, mode=mode if mode != "I;16" else None)
    if isinstance(image, np.ndarray):
        check_pixels(image)
        rgb, grey, alpha = split_channels(image)
        return join_channels(restore_pixels(model, rgb, **options), grey, alpha).reshape(image.shape)
    raise AirNetError(f"cannot restore an object of type {type(image).__name__}; pass an array, PIL image, tensor or path")


@dataclass
class RestoreReport:
    """What a batch run did: outputs written, inputs skipped, failures with their reasons, and warnings
    about outputs written all the same (a 16-bit input written as 8-bit JPEG)."""

    done: list[tuple[Path, Path]] = field(default_factory=list)
    detected: dict[Path, Inspection] = field(default_factory=dict)  # input -> what the weights' prototypes found
    blends: dict[Path, Blend] = field(default_factory=dict)  # input -> how the correction was applied
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[tuple[Path, str]] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        from airnet_restore.inspection.inspector import count_types

        detected = count_types(self.detected.values())
        return (f"{len(self.done)} restored, {len(self.failed)} failed, {len(self.skipped)} skipped "
                f"in {self.seconds:.1f} s" + (f"; detected: {detected}" if detected else ""))


def restore_files(
    inputs: Sequence[str | os.PathLike],
    outdir: str | os.PathLike,
    model: AirNet | OnnxRestorer | None = None,
    *,
    suffix: str = "",
    ext: str | None = None,
    skip_existing: bool = False,
    overwrite: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    jpeg_quality: int = JPEG_QUALITY,
    strength: Fraction = "auto",
    anchor: Fraction = "auto",
    progress: bool = True,
    **options,
) -> RestoreReport:
    """Restore every input into ``outdir`` (mirroring folder and glob trees); one bad file never stops the batch.

    All outputs are planned before anything is written (``files.plan_outputs``): none leaves
    ``outdir``; an existing file is replaced only with ``overwrite`` (an input only by its own
    output), or skipped with ``skip_existing``; outputs are written atomically, and temporary
    files this program left in a killed run are removed. An image is
    held at its file's depth and restored tile by tile straight into the output's depth;
    an output that cannot keep the input's depth is written with a warning in the report.
    Each image is inspected first where the weights hold prototypes and its blend resolved from
    ``strength`` and ``anchor`` (``resolve_blend``); the report keeps what was found and the blend
    applied. ``options``: ``tile``, ``tile_overlap``, ``precision`` (see ``restore_tensor``).
    """
    start = time.perf_counter()
    report = RestoreReport()
    check_jpeg_quality(jpeg_quality)
    _check_blend(strength, anchor, None)
    if "blend" in options:
        raise AirNetError("restore_files resolves a blend for each image: give strength and anchor instead")
    outdir = check_output_folder(outdir, ext, suffix)
    collected = collect_inputs(inputs, outdir)
    plan = plan_outputs(collected.pairs, outdir, suffix=suffix, ext=ext, overwrite=overwrite, skip_existing=skip_existing)
    report.failed = collected.failed + plan.refused
    report.skipped = collected.skipped + plan.skipped
    for folder in {dst.parent for _, dst in plan.jobs}:
        remove_stale_parts(folder)
    bar = tqdm(plan.jobs, desc="images", unit="img", disable=not progress)
    for src, dst in bar:
        bar.set_postfix_str(src.name)
        try:
            data = read_image(src, max_pixels=max_pixels)
            check_writable(dst, data)
            if model is None:
                model = default_model()
            blend, found = resolve_blend(model, data.pixels, strength, anchor)
            pixels, blend = restore_pixels_blended(model, data.pixels, output_dtype(data.dtype, dst.suffix), blend=blend,
                                                   **options, progress=progress)
            write_image(dst, data, pixels, jpeg_quality=jpeg_quality)
        except (AirNetError, OSError) as e:
            report.failed.append((str(src), str(e).removeprefix(f"{src}: ")))
            continue
        except MemoryError:
            report.failed.append((str(src), "out of memory; use a smaller --tile or --max-pixels"))
            continue
        report.done.append((src, dst))
        report.blends[src] = blend
        if found is not None:
            report.detected[src] = found
        elif strength == "auto" and blend.strength == 0.0:
            h, w = data.pixels.shape[:2]
            report.warnings.append((src, f"{w}x{h} is too small for the detectors: written as it is; --strength 1 restores it"))
        for warning in (depth_warning(data.dtype, dst.suffix), metadata_warning(data, dst.suffix)):
            if warning:
                report.warnings.append((src, warning))
    report.seconds = time.perf_counter() - start
    return report
