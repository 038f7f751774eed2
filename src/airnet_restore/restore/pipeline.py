"""The main job: restore one image of any kind and size, or a whole batch of files safely."""

from __future__ import annotations

import glob
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Literal, TypeVar

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from airnet_restore.errors import AirNetError
from airnet_restore.models.airnet import AirNet
from airnet_restore.restore.io import (
    DEFAULT_MAX_PIXELS,
    IMAGE_SUFFIXES,
    from_float,
    join_channels,
    read_image,
    split_channels,
    to_float,
    write_image,
)
from airnet_restore.restore.tiling import DEFAULT_OVERLAP, auto_tile_size, run_tiled
from airnet_restore.variants import DEFAULT_VARIANT, load_model

Precision = Literal["fp32", "fp16", "bf16"]
PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}
Tile = int | Literal["auto"] | None
ImageLike = TypeVar("ImageLike", np.ndarray, Image.Image, torch.Tensor)


@lru_cache(maxsize=4)
def default_model(device: str = "auto") -> AirNet:
    """The default variant's bundled weights, loaded once per device."""
    return load_model(DEFAULT_VARIANT, device=device)


def model_device(model: AirNet) -> torch.device:
    return next(model.parameters()).device


def restore_tensor(
    model: AirNet,
    x: torch.Tensor,
    *,
    tile: Tile = "auto",
    tile_overlap: int = DEFAULT_OVERLAP,
    precision: Precision = "fp32",
    progress: bool = False,
) -> torch.Tensor:
    """Restore (3,H,W) or (B,3,H,W) RGB floats in [0, 1]; the output has the input's shape, device and dtype.

    Images are processed one at a time on the model's device; each is kept whole or
    tiled (``tile``: "auto" from free memory, an int, or None for never).
    """
    if precision not in PRECISIONS:
        raise AirNetError(f"unknown precision {precision!r}; choose fp32, fp16 or bf16")
    if x.dim() not in (3, 4) or x.shape[-3] != 3:
        raise AirNetError(f"expected an RGB tensor of shape (3,H,W) or (B,3,H,W), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise AirNetError(f"expected a float tensor in [0, 1], got {x.dtype}")
    batch = x if x.dim() == 4 else x[None]
    device = model_device(model)
    model.eval()
    if device.type == "cpu":
        model.to(memory_format=torch.channels_last)  # fastest layout for the fused CPU kernel (benchmarks)
    dtype = PRECISIONS[precision]

    def forward(t: torch.Tensor) -> torch.Tensor:
        if device.type == "cpu":
            t = t.contiguous(memory_format=torch.channels_last)
        with torch.no_grad(), torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            return model(t)

    outs = []
    for image in batch:
        image = image[None].detach().float().cpu().clamp(0, 1)
        size = auto_tile_size(*image.shape[-2:], model.config.n_feats, device, tile_overlap) if tile == "auto" else tile
        outs.append(run_tiled(forward, image, device, size, tile_overlap, progress).clamp(0, 1))
    out = torch.cat(outs).to(device=x.device, dtype=x.dtype)
    return out if x.dim() == 4 else out[0]


def restore(image: ImageLike | str | os.PathLike, model: AirNet | None = None, **options) -> ImageLike | np.ndarray:
    """Restore an image whose corruption is unknown; returns the same kind as given.

    ``image``: a numpy array (HxW or HxWxC, C = 1, 3 or 4; uint8, uint16 or float in [0, 1]),
    a PIL image, a torch tensor ((3,H,W) or (B,3,H,W) float) or a path (returns a numpy
    array of the file's depth and channels). Alpha is carried through untouched; grey stays
    grey. ``model``: defaults to the bundled default variant. ``options``: ``tile``,
    ``tile_overlap``, ``precision``, ``progress`` (see ``restore_tensor``).
    """
    model = model if model is not None else default_model()
    if isinstance(image, torch.Tensor):
        return restore_tensor(model, image, **options)
    if isinstance(image, (str, os.PathLike)):
        data = read_image(image)
        rgb = _restore_rgb(model, data.rgb, options)
        return join_channels(from_float(rgb, data.dtype), data.grey, data.alpha)
    if isinstance(image, Image.Image):
        mode = image.mode
        if mode not in ("L", "LA", "RGB", "RGBA", "I;16"):
            raise AirNetError(f"unsupported PIL mode {mode!r}; convert to RGB, RGBA, L, LA or I;16 first")
        out = restore(np.asarray(image), model, **options)
        return Image.fromarray(out, mode=mode if mode != "I;16" else None)
    if isinstance(image, np.ndarray):
        rgb, grey, alpha = split_channels(image)
        restored = _restore_rgb(model, to_float(rgb), options)
        return join_channels(from_float(restored, image.dtype), grey, alpha).reshape(image.shape)
    raise AirNetError(f"cannot restore an object of type {type(image).__name__}; pass an array, PIL image, tensor or path")


def _restore_rgb(model: AirNet, rgb: np.ndarray, options: dict) -> np.ndarray:
    x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)
    return restore_tensor(model, x, **options).permute(1, 2, 0).numpy()


@dataclass
class RestoreReport:
    """What a batch run did: outputs written, inputs skipped, and failures with their reasons."""

    done: list[tuple[Path, Path]] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        return (f"{len(self.done)} restored, {len(self.failed)} failed, {len(self.skipped)} skipped "
                f"in {self.seconds:.1f} s")


def collect_inputs(inputs: Iterable[str | os.PathLike]) -> tuple[list[tuple[Path, Path]], list[tuple[str, str]]]:
    """Expand files, folders (recursive, image files only) and globs into (input, relative output) pairs."""
    found: list[tuple[Path, Path]] = []
    problems: list[tuple[str, str]] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                problems.append((str(item), f"no image files ({', '.join(IMAGE_SUFFIXES)}) in this folder"))
            found += [(p, p.relative_to(path)) for p in files]
        elif path.is_file():
            found.append((path, Path(path.name)))
        else:
            matches = sorted(Path(m) for m in glob.glob(str(item), recursive=True) if Path(m).is_file())
            if not matches:
                problems.append((str(item), "no such file, folder or matching glob"))
            found += [(m, Path(m.name)) for m in matches]
    return found, problems


def output_path(rel: Path, outdir: Path, suffix: str = "", ext: str | None = None) -> Path:
    ext = (ext if ext.startswith(".") else f".{ext}") if ext else rel.suffix
    return outdir / rel.parent / f"{rel.stem}{suffix}{ext}"


def restore_files(
    inputs: Sequence[str | os.PathLike],
    outdir: str | os.PathLike,
    model: AirNet | None = None,
    *,
    suffix: str = "",
    ext: str | None = None,
    skip_existing: bool = False,
    overwrite: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: bool = True,
    **options,
) -> RestoreReport:
    """Restore every input into ``outdir`` (mirroring folder trees); one bad file never stops the batch.

    Inputs are never overwritten unless ``overwrite``; outputs are written atomically.
    """
    start = time.perf_counter()
    report = RestoreReport()
    pairs, report.failed = collect_inputs(inputs)
    outdir = Path(outdir)
    if ext is not None and f".{ext.lstrip('.').lower()}" not in IMAGE_SUFFIXES:
        raise AirNetError(f"unsupported output extension {ext!r}; use one of {', '.join(IMAGE_SUFFIXES)}")
    sources = {p.resolve() for p, _ in pairs}
    planned: set[Path] = set()
    bar = tqdm(pairs, desc="images", unit="img", disable=not progress)
    for src, rel in bar:
        dst = output_path(rel, outdir, suffix, ext)
        key = dst.resolve()
        if key in sources and not overwrite:
            report.failed.append((str(src), f"output {dst} would overwrite an input; choose another -o/--suffix or pass --overwrite"))
            continue
        if key in planned:
            report.failed.append((str(src), f"output {dst} is also the output of an earlier input of the same name"))
            continue
        planned.add(key)
        if skip_existing and dst.exists():
            report.skipped.append((src, "output exists"))
            continue
        bar.set_postfix_str(src.name)
        try:
            data = read_image(src, max_pixels=max_pixels)
            if model is None:
                model = default_model()
            rgb = _restore_rgb(model, data.rgb, {**options, "progress": progress})
            write_image(dst, data, rgb)
        except (AirNetError, OSError) as e:
            report.failed.append((str(src), str(e).removeprefix(f"{src}: ")))
            continue
        report.done.append((src, dst))
    report.seconds = time.perf_counter() - start
    return report
