"""The main job: restore one image of any kind and size, or a whole batch of files safely."""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, TypeVar, overload

import numpy as np
import torch
from PIL import Image
from torch import nn
from tqdm.auto import tqdm

from airnet_restore.atomic import remove_stale_parts
from airnet_restore.constants import DEFAULT_MAX_PIXELS, DEFAULT_OVERLAP, JPEG_QUALITY, Precision
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
from airnet_restore.inference.tiling import CPU, Forward, TileShape, auto_tile_size, filter_tile, tiled_bands
from airnet_restore.inspection.results import Inspection, count_types
from airnet_restore.loading import ModelDescriptor, as_descriptor, default_model
from airnet_restore.memory import tune_allocator
from airnet_restore.models.airnet import eval_mode
from airnet_restore.postfilter import Blend, Choice, Crop, Fraction, check_choice, check_fraction
from airnet_restore.postfilter.stage import MIX_ROWS
from airnet_restore.precision import autocast, check_precision

Tile = int | Literal["auto"] | None
ImageLike = TypeVar("ImageLike", np.ndarray, Image.Image, torch.Tensor)
# What the restore functions take: a descriptor (``load_model``), or a bare ``AirNet`` (``as_descriptor``).
Model = ModelDescriptor | nn.Module


def restore_tensor(model: Model, x: torch.Tensor, **options: Any) -> torch.Tensor:
    """Restore (3,H,W) or (B,3,H,W) RGB floats in [0, 1]; the output has the input's shape, device and dtype.

    Images are processed one at a time on the model's device, whole or in tiles. The image stays on its
    device (only tiles move to the model's), and the model is left as it was given. ``options``: the fields
    of ``RestoreOptions``.
    """
    if x.dim() not in (3, 4) or x.shape[-3] != 3:
        raise AirNetError(f"expected an RGB tensor of shape (3,H,W) or (B,3,H,W), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise AirNetError(f"expected a float tensor in [0, 1], got {x.dtype}")
    if x.numel() == 0:
        raise AirNetError(f"empty image tensor of shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise AirNetError("the image tensor holds NaN or infinite values; replace them with finite values first")
    o = RestoreOptions.of(options)
    desc = as_descriptor(model)
    network, device = _forward(desc, o.precision)
    batch = x if x.dim() == 4 else x[None]
    outs = []
    for image in batch:
        image = image.detach().float().clamp(0, 1)
        h, w = image.shape[-2:]
        plan = _plan(desc, image, o)[0]
        result = torch.empty(3, h, w, device=image.device)
        rows = _restore_rows(desc, network, device, _tensor_crop(image, desc.min_side), h, w, plan, o, image.device)[1]
        for y, part in rows:
            result[:, y : y + part.shape[1]] = part
        outs.append(result)
    out = torch.stack(outs).to(device=x.device, dtype=x.dtype)
    return out if x.dim() == 4 else out[0]


@dataclass(frozen=True)
class RestoreOptions:
    """How an image is restored; ``restore``, ``restore_tensor`` and ``restore_image`` take these as keywords,
    checked before any work.

    ``tile``: "auto" (from free memory), a size in pixels, or None (never tile); ``tile_overlap``: pixels shared
    by neighbouring tiles; ``precision``: fp32, fp16, bf16 or fp64. ``postfilter``: "auto" finishes the network's
    output with the post-filter stage (``airnet_restore.postfilter``), "none" returns the network's output
    exactly. ``strength``, ``anchor``: the stage's knobs, "auto" or a number in [0, 1], planned per image
    (``PostFilter.plan``); ``blend``: one already planned, used instead for every image. ``progress``: a bar.
    """

    tile: Tile = "auto"
    tile_overlap: int = DEFAULT_OVERLAP
    precision: Precision = "fp32"
    postfilter: Choice = "auto"
    strength: Fraction = "auto"
    anchor: Fraction = "auto"
    blend: Blend | None = None
    progress: bool = False

    def __post_init__(self) -> None:
        check_precision(self.precision)
        check_choice(self.postfilter)
        check_fraction("strength", self.strength)
        check_fraction("anchor", self.anchor)
        if self.blend is not None and not isinstance(self.blend, Blend):
            raise AirNetError(f"blend must be a Blend (from PostFilter.plan), got {type(self.blend).__name__}")
        if self.blend is not None and (self.postfilter, self.strength, self.anchor) != ("auto", "auto", "auto"):
            raise AirNetError("give either blend or postfilter, strength and anchor, not both")
        if self.postfilter == "none" and (self.strength, self.anchor) != ("auto", "auto"):
            raise AirNetError("postfilter none is the network's output exactly: strength and anchor do not apply")

    @classmethod
    def of(cls, options: Mapping[str, Any]) -> RestoreOptions:
        """The options given as keywords; an unknown one is an ``AirNetError`` naming the known ones."""
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise AirNetError(f"unknown restore option {', '.join(unknown)}; the options are {', '.join(known)}")
        return cls(**options)


def _plan(desc: ModelDescriptor, image: Any, o: RestoreOptions) -> tuple[Blend, Inspection | None]:
    """The image's blend and what the detectors found (None where they did not look: nothing needs them,
    the weights have none, or the image is too small for them)."""
    params = desc.postfilter.params
    if o.blend is not None:
        return o.blend, None
    if o.postfilter == "none":
        return Blend(params=params), None
    if o.strength == 0 or (o.strength != "auto" and o.anchor == 0):
        return Blend(float(o.strength), params=params), None
    found = desc.inspect(image)
    return desc.postfilter.plan(found, o.strength, o.anchor, detectors=desc.detects), found


def _restore_rows(
    desc: ModelDescriptor,
    network: Forward,
    device: torch.device,
    crop: Crop,
    h: int,
    w: int,
    blend: Blend,
    o: RestoreOptions,
    home: torch.device = CPU,
) -> tuple[Blend, Iterator[tuple[int, torch.Tensor]]]:
    """The one restore of one image, given by ``crop`` over its reflect-padded extent (``_padding``): the settled
    blend and the output's rows, (first row, (3,rows,w) in [0, 1]) in order, on ``home``. The network runs
    tile by tile; where its output is the result it streams band by band; else the post-filter stage
    finishes it from the whole output (``PostFilter.finish``)."""
    (top, bottom), (left, right) = _padding(h, w, desc.min_side)
    height, width = h + top + bottom, w + left + right
    size: TileShape | int | None = (auto_tile_size(height, width, desc.bytes_per_pixel(device), device, o.tile_overlap,
                                                   desc.forward_bytes) if o.tile == "auto" else o.tile)

    def run(source: Crop) -> Iterator[tuple[int, torch.Tensor]]:
        return tiled_bands(network, source, height, width, device, size, o.tile_overlap, o.progress, home)

    def whole(source: Crop) -> torch.Tensor:
        out = torch.empty(1, 3, height, width, device=home)
        for y0, band in run(source):
            out[:, :, y0 : y0 + band.shape[2]] = band
        return out.clamp_(0, 1)

    bands: Iterator[tuple[int, torch.Tensor]]
    if not blend.uses_network:
        settled, bands = blend, ((y, crop(y, 0, min(MIX_ROWS, height - y), width).to(home)) for y in range(0, height, MIX_ROWS))
    elif blend.as_is:
        settled, bands = blend, run(crop)
    else:
        p = blend.params
        tile = filter_tile(height, width, p.context, p.wiener.alignment)
        settled, bands = desc.postfilter.finish(blend, crop, whole(crop), whole, tile, desc.inspect)

    def rows() -> Iterator[tuple[int, torch.Tensor]]:
        for y0, band in bands:
            first, last = max(y0, top), min(y0 + band.shape[2], top + h)  # the band's rows inside the image
            if first < last:
                part = band[0, :, first - y0 : last - y0, left : left + w]
                _check_finite(part, o.precision)
                yield first - top, part.float().clamp(0, 1)

    return settled, rows()


def _forward(desc: ModelDescriptor, precision: Precision) -> tuple[Forward, torch.device]:
    """The network's inference forward at ``precision`` (in eval mode, its own modes restored after each call)
    and the device it runs on."""
    tune_allocator()
    device = desc.device
    net = _float64(desc.network, device) if precision == "fp64" else desc.network

    def forward(t: torch.Tensor) -> torch.Tensor:
        if precision == "fp64":
            t = t.double()
        if device.type == "cpu":
            t = t.contiguous(memory_format=torch.channels_last)  # fastest layout for the fused CPU kernel (benchmarks)
        with torch.no_grad(), autocast(device, precision), eval_mode(net):
            return net(t)

    return forward, device


def _float64(network: nn.Module, device: torch.device) -> nn.Module:
    """A float64 copy of ``network`` (precision fp64)."""
    if device.type == "mps" or next(network.parameters(), None) is None:
        raise AirNetError("precision fp64 runs a PyTorch model on a CPU or CUDA device; for onnxruntime export with --double")
    return copy.deepcopy(network).double()


def _padding(h: int, w: int, min_side: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """(top, bottom), (left, right) reflect padding that brings each side to at least ``min_side``."""
    ph, pw = max(0, min_side - h), max(0, min_side - w)
    return (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)


def reflect_index(n: int, before: int, after: int) -> np.ndarray:
    """The indices of a side of ``n`` pixels padded by ``before`` and ``after``, as ``numpy.pad(mode="reflect")``:
    pads longer than a side reflect again, a 1-pixel side is replicated."""
    i = np.arange(-before, n + after)
    if n == 1:
        return np.zeros_like(i)
    period = 2 * (n - 1)
    i = i % period
    return np.where(i >= n, period - i, i)


def _index(indices: np.ndarray) -> slice | np.ndarray:
    """``indices`` as a slice where they are a run (no padding in the crop: a view, no copy)."""
    if len(indices) and indices[-1] - indices[0] == len(indices) - 1 and np.all(np.diff(indices) == 1):
        return slice(int(indices[0]), int(indices[-1]) + 1)
    return indices


def _padded_crop(h: int, w: int, min_side: int, take: Callable[[slice | np.ndarray, slice | np.ndarray], torch.Tensor]) -> Crop:
    """``crop(y, x, th, tw)`` over an image of ``h`` x ``w`` reflect-padded to ``min_side`` (``_padding``), from
    ``take(rows, cols)``, which returns the (1,3,rows,cols) float pixels at those indices."""
    (top, bottom), (left, right) = _padding(h, w, min_side)
    rows, cols = reflect_index(h, top, bottom), reflect_index(w, left, right)

    def crop(y: int, x: int, th: int, tw: int) -> torch.Tensor:
        return take(_index(rows[y : y + th]), _index(cols[x : x + tw]))

    return crop


def _tensor_crop(image: torch.Tensor, min_side: int) -> Crop:
    """Crops of a (3,H,W) float image in [0, 1], padded to ``min_side``, on its own device."""
    def take(r: slice | np.ndarray, c: slice | np.ndarray) -> torch.Tensor:
        rows = r if isinstance(r, slice) else torch.from_numpy(r).to(image.device)
        cols = c if isinstance(c, slice) else torch.from_numpy(c).to(image.device)
        return image[:, rows][:, :, cols][None]

    return _padded_crop(image.shape[-2], image.shape[-1], min_side, take)


def _pixel_crop(pixels: np.ndarray, min_side: int) -> Crop:
    """Crops of HxWx3 pixels (uint8, uint16 or float), padded to ``min_side``: only the crop becomes float."""
    def take(r: slice | np.ndarray, c: slice | np.ndarray) -> torch.Tensor:
        return torch.from_numpy(to_float(pixels[r][:, c])).permute(2, 0, 1)[None].clamp(0, 1)

    return _padded_crop(pixels.shape[0], pixels.shape[1], min_side, take)


def _check_finite(result: torch.Tensor, precision: str) -> None:
    if not torch.isfinite(result).all():
        raise AirNetError(f"the model produced NaN or infinite values (precision {precision}); try --precision fp32")


@dataclass(frozen=True)
class Restored:
    """One restored image: its ``pixels``, the settled ``blend`` applied, and what the detectors ``found`` (None
    where they did not look)."""

    pixels: np.ndarray
    blend: Blend
    found: Inspection | None


def restore_image(model: Model, pixels: np.ndarray, dtype: np.dtype | None = None, **options: Any) -> Restored:
    """Restore HxWx3 RGB pixels (uint8, uint16 or float in [0, 1]) into a new HxWx3 array of ``dtype`` (default:
    the input's), as ``restore_tensor`` would, without a float copy of the whole image: each tile becomes float
    on its own and each finished band of rows is stored at once (where the post-filter works, the network's
    output is kept whole until then). The one per-image restore of files, the web app and the benchmarks.
    ``options``: the fields of ``RestoreOptions``."""
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise AirNetError(f"expected HxWx3 RGB pixels, got shape {pixels.shape}")
    if pixels.size == 0:
        raise AirNetError(f"empty image (shape {pixels.shape})")
    to_float(pixels[:1, :1])  # refuses an unsupported pixel type before any work
    o = RestoreOptions.of(options)
    desc = as_descriptor(model)
    network, device = _forward(desc, o.precision)
    plan, found = _plan(desc, pixels, o)
    h, w = pixels.shape[:2]
    out = np.empty((h, w, 3), dtype if dtype is not None else pixels.dtype)
    settled, rows = _restore_rows(desc, network, device, _pixel_crop(pixels, desc.min_side), h, w, plan, o)
    for y, part in rows:
        out[y : y + part.shape[1]] = from_float(part.permute(1, 2, 0).cpu().numpy(), out.dtype)
    return Restored(out, settled, found)


def restore_pixels(model: Model, pixels: np.ndarray, dtype: np.dtype | None = None, **options: Any) -> np.ndarray:
    """``restore_image``'s pixels."""
    return restore_image(model, pixels, dtype, **options).pixels


@overload
def restore(image: ImageLike, model: Model | None = None, **options: Any) -> ImageLike: ...
@overload
def restore(image: str | os.PathLike, model: Model | None = None, **options: Any) -> np.ndarray: ...
def restore(
    image: np.ndarray | Image.Image | torch.Tensor | str | os.PathLike, model: Model | None = None, **options: Any
) -> np.ndarray | Image.Image | torch.Tensor:
    """Restore an image whose corruption is unknown; returns the same kind as given.

    ``image``: a numpy array (HxW or HxWxC, C = 1, 3 or 4; uint8, uint16 or float in [0, 1]),
    a PIL image, a torch tensor ((3,H,W) or (B,3,H,W) float) or a path (returns a numpy
    array of the file's depth and channels). Alpha is carried through untouched; grey stays
    grey. ``model``: defaults to the bundled default variant. ``options``: ``tile``,
    ``tile_overlap``, ``precision``, ``postfilter``, ``strength``, ``anchor``, ``blend``, ``progress`` (see
    ``restore_tensor``); ``postfilter="none"`` returns the network's output exactly;
    ``strength="auto"`` (the default) scales the correction by the probability that the image is
    degraded at all, so an image found surely clean comes back nearly unchanged; ``anchor="auto"``
    (the default) moves the output towards the noise model's estimate (the input Wiener-filtered with
    the network's output as the pilot: the input's tones, and its detail above the noise) where only
    noise is found (``airnet_restore.postfilter``).
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
        detected = count_types(self.detected.values())
        return (f"{len(self.done)} restored, {len(self.failed)} failed, {len(self.skipped)} skipped "
                f"in {self.seconds:.1f} s" + (f"; detected: {detected}" if detected else ""))


def restore_files(
    inputs: Sequence[str | os.PathLike],
    outdir: str | os.PathLike,
    model: Model | None = None,
    *,
    suffix: str = "",
    ext: str | None = None,
    skip_existing: bool = False,
    overwrite: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    jpeg_quality: int = JPEG_QUALITY,
    postfilter: Choice = "auto",
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
    Each image is inspected first where the weights hold detectors and its blend planned from
    ``postfilter``, ``strength`` and ``anchor`` (``restore_image``); the report keeps what was found and the
    blend applied. ``options``: ``tile``, ``tile_overlap``, ``precision`` (see ``restore_tensor``).
    """
    start = time.perf_counter()
    report = RestoreReport()
    check_jpeg_quality(jpeg_quality)
    if "blend" in options:
        raise AirNetError("restore_files plans a blend for each image: give postfilter, strength and anchor instead")
    RestoreOptions.of({**options, "postfilter": postfilter, "strength": strength, "anchor": anchor})  # before any work
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
            done = restore_image(model, data.pixels, output_dtype(data.dtype, dst.suffix), postfilter=postfilter,
                                 strength=strength, anchor=anchor, **options, progress=progress)
            write_image(dst, data, done.pixels, jpeg_quality=jpeg_quality)
        except (AirNetError, OSError) as e:
            report.failed.append((str(src), str(e).removeprefix(f"{src}: ")))
            continue
        except MemoryError:
            report.failed.append((str(src), "out of memory; use a smaller --tile or --max-pixels"))
            continue
        report.done.append((src, dst))
        report.blends[src] = done.blend
        if done.found is not None:
            report.detected[src] = done.found
        elif postfilter == "auto" and strength == "auto" and done.blend.strength == 0.0:
            h, w = data.pixels.shape[:2]
            report.warnings.append((src, f"{w}x{h} is too small for the detectors: written as it is; --strength 1 restores it"))
        for warning in (depth_warning(data.dtype, dst.suffix), metadata_warning(data, dst.suffix)):
            if warning:
                report.warnings.append((src, warning))
    report.seconds = time.perf_counter() - start
    return report
