"""Inspection: what is wrong with an image and how badly, from one pass of the degradation encoder."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from airnet_restore.constants import DEFAULT_MAX_PIXELS
from airnet_restore.errors import AirNetError
from airnet_restore.files import collect_inputs, file_identity
from airnet_restore.image_io import check_pixels, read_image, split_channels
from airnet_restore.inspection.features import CELL, FEATURE_SET, EmbeddingGrid, embed, encoder_fingerprint
from airnet_restore.inspection.handcrafted import COMBINED_SET, HandGrid, hand_grid
from airnet_restore.inspection.plot import check_picture_target, plot_embedding, write_region_map
from airnet_restore.inspection.probe import DegradationProbe
from airnet_restore.inspection.results import Inspection, RegionMap, count_types
from airnet_restore.models.airnet import AirNet

REGION_CELLS = 4  # a region of the map is 4 x 4 cells (64 px) ...
WINDOW_CELLS = 8  # ... judged on the 8 x 8 cells (128 px) around it
# A whole image is judged as the average of 256-px windows at steps of 128 px: the sizes the
# probe was calibrated on (crops of 128-512 px), whatever the image's size.
IMAGE_WINDOW_CELLS, IMAGE_STRIDE_CELLS = 16, 8


class Inspector:
    """A model's degradation encoder with the probe calibrated for its weights."""

    def __init__(self, model: AirNet, probe: DegradationProbe) -> None:
        if probe.feature not in (FEATURE_SET, COMBINED_SET):
            raise AirNetError(
                f"the degradation prototypes use statistics {probe.feature!r}, this version computes {FEATURE_SET!r} "
                f"and {COMBINED_SET!r}; "
                "recompute them with `airnet inspect --calibrate`"
            )
        if probe.encoder_sha256 != encoder_fingerprint(model):
            raise AirNetError("the degradation prototypes were computed for other weights (another encoder); "
                              "recompute them with `airnet inspect --calibrate`")
        self.model = model  # its modes are left alone: the encoder runs in eval mode inside ``embed``
        self.probe = probe
        self.hand = probe.feature == COMBINED_SET  # the probe also reads the hand-crafted pixel statistics

    def embed(self, image: Any) -> EmbeddingGrid:
        """Cell statistics of the degradation map of an image (see ``inspect`` for what an image may be)."""
        return self._grids(_as_image(image))[0]

    def _grids(self, pixels: torch.Tensor | np.ndarray) -> tuple[EmbeddingGrid, HandGrid | None]:
        """The cell statistics the probe reads, in its column order: the encoder's, then the hand-crafted ones
        (None where the probe does not read them)."""
        h, w = pixels.shape[:2] if isinstance(pixels, np.ndarray) else pixels.shape[-2:]
        if min(h, w) < CELL:
            raise AirNetError(f"a {w}x{h} image is too small to inspect: at least {CELL} px per side")
        return embed(self.model, pixels), hand_grid(pixels) if self.hand else None

    def inspect(self, image: Any, regions: bool = False, file: str | None = None) -> Inspection:
        """Inspect one image (the average judgement of its 256-px windows); with ``regions``, also a map of
        64-px regions (each judged on the 128 px around it)."""
        grid, hand = self._grids(_as_image(image))
        grids: list[EmbeddingGrid | HandGrid] = [grid, *([hand] if hand is not None else [])]
        features = np.concatenate([g.features() for g in grids])
        p = self.probe.judge(np.hstack([g.window_features(IMAGE_WINDOW_CELLS, IMAGE_STRIDE_CELLS) for g in grids]))
        result = Inspection(p.type, p.confidence, p.sigma, p.haze_density, p.presence, file=file, features=features)
        if regions:
            result.regions = self.region_map(grid, hand)
        return result

    def region_map(self, grid: EmbeddingGrid, hand: HandGrid | None = None) -> RegionMap:
        """The probe applied to every region of the image (``hand``: the hand-crafted statistics, where the probe
        reads them)."""
        if self.hand and hand is None:
            raise AirNetError("this probe also reads the hand-crafted pixel statistics: pass their grid")
        grids: list[EmbeddingGrid | HandGrid] = [grid, *([hand] if self.hand and hand is not None else [])]
        feats = np.concatenate([g.region_features(REGION_CELLS, WINDOW_CELLS) for g in grids], axis=2)
        rows, cols = feats.shape[:2]
        preds = self.probe.predict(feats.reshape(rows * cols, -1))
        types = [[preds[r * cols + c].type for c in range(cols)] for r in range(rows)]
        confidence = np.array([p.confidence for p in preds]).reshape(rows, cols)
        sigma = np.array([np.nan if p.sigma is None else p.sigma for p in preds]).reshape(rows, cols)
        return RegionMap(REGION_CELLS * CELL, types, confidence, sigma)


def _as_image(image: Any) -> torch.Tensor | np.ndarray:
    """What ``embed`` reads: a (3,H,W) float tensor in [0, 1], or HxWx3 RGB pixels at their own depth,
    from an array (HxW or HxWxC), PIL image, (3,H,W) tensor or path."""
    if isinstance(image, torch.Tensor):
        if image.dim() != 3 or image.shape[0] != 3 or not image.is_floating_point():
            raise AirNetError(f"expected a float RGB tensor of shape (3,H,W) in [0, 1], got {tuple(image.shape)} {image.dtype}")
        return image.detach().float().cpu().clamp(0, 1)
    if isinstance(image, (str, os.PathLike)):
        return read_image(image).pixels
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    if isinstance(image, np.ndarray):
        check_pixels(image)
        return split_channels(image)[0]
    raise AirNetError(f"cannot inspect an object of type {type(image).__name__}; pass an array, PIL image, tensor or path")


@dataclass
class InspectReport:
    """What a batch inspection did: results in input order and failures with their reasons."""

    results: list[Inspection] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    plot_file: Path | None = None
    seconds: float = 0.0

    def counts(self) -> str:
        """How many images of each detected type: ``2 noise, 1 clean``."""
        return count_types(self.results) or "nothing"

    def summary(self) -> str:
        return f"inspected {len(self.results)} images ({self.counts()}), {len(self.failed)} failed, in {self.seconds:.1f} s"

    def to_json(self) -> str:
        """The results as a JSON list of ``Inspection.to_dict`` objects."""
        return json.dumps([r.to_dict() for r in self.results], indent=1)

    def plot(self, out: str | os.PathLike) -> Path:
        """The embedding of every inspected image (PCA), coloured by detected type, dot size by noise sigma."""
        if len(self.results) < 3:
            raise AirNetError(f"--plot needs at least 3 inspected images, got {len(self.results)}")
        features = np.stack([r.features for r in self.results if r.features is not None])
        title = f"CBDE embedding of {len(self.results)} images, coloured by detected type"
        return plot_embedding(features, [r.type for r in self.results], out, levels=[r.sigma for r in self.results], title=title)


def inspect_files(
    inputs: list[str | os.PathLike],
    inspector: Inspector,
    *,
    map_dir: str | os.PathLike | None = None,
    plot: str | os.PathLike | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: bool = True,
) -> InspectReport:
    """Inspect files, folders (recursive) and globs; with ``map_dir``, write each region map as ``<name>.map.png``;
    with ``plot``, the embedding of them all (``InspectReport.plot``; a plot that cannot be made is a failure in
    the report, after the results). A picture never replaces an input or a
    file this program did not write (``check_picture_target``): a plot so named is refused before any work,
    a map so named fails its image."""
    start = time.perf_counter()
    report = InspectReport()
    found = collect_inputs(inputs, map_dir)
    report.failed = found.failed
    inputs_seen = {ident for src, _ in found.pairs if (ident := file_identity(src)) is not None}
    if plot is not None and (check_picture_target(plot).exists() and file_identity(Path(plot)) in inputs_seen):
        raise AirNetError(f"--plot {plot} is one of the inputs; it is never replaced: choose another name")
    for src, rel in tqdm(found.pairs, desc="images", unit="img", disable=not progress):
        try:
            data = read_image(src, max_pixels=max_pixels)
            result = inspector.inspect(data.pixels, regions=map_dir is not None, file=str(src))
            if map_dir is not None:
                target = check_picture_target(Path(map_dir) / rel.with_name(rel.name + ".map.png"))
                if file_identity(target) in inputs_seen:
                    raise AirNetError(f"its map {target} is one of the inputs, never replaced; choose another --map folder")
                write_region_map(target, data.rgb, result)
        except (AirNetError, OSError) as e:
            report.failed.append((str(src), str(e).removeprefix(f"{src}: ")))
            continue
        report.results.append(result)
    if plot is not None:
        try:
            report.plot_file = report.plot(plot)
        except AirNetError as e:  # the results stand; the plot is reported as one failure
            report.failed.append((f"--plot {plot}", str(e)))
    report.seconds = time.perf_counter() - start
    return report
