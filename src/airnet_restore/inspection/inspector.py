"""Inspection: what is wrong with an image and how badly, from one pass of the degradation encoder."""

from __future__ import annotations

import json
import os
import time
import warnings
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from airnet_restore.constants import DEFAULT_MAX_PIXELS, DEFAULT_VARIANT
from airnet_restore.errors import AirNetError
from airnet_restore.files import collect_inputs, file_identity
from airnet_restore.image_io import check_pixels, read_image, split_channels
from airnet_restore.inspection.calibrate import read_metadata, weights_file
from airnet_restore.inspection.features import CELL, FEATURE_SET, EmbeddingGrid, embed, encoder_fingerprint
from airnet_restore.inspection.probe import METADATA_KEY, DegradationProbe
from airnet_restore.models.airnet import AirNet

REGION_CELLS = 4  # a region of the map is 4 x 4 cells (64 px) ...
WINDOW_CELLS = 8  # ... judged on the 8 x 8 cells (128 px) around it
# A whole image is judged as the average of 256-px windows at steps of 128 px: the sizes the
# probe was calibrated on (crops of 128-512 px), whatever the image's size.
IMAGE_WINDOW_CELLS, IMAGE_STRIDE_CELLS = 16, 8


@dataclass
class RegionMap:
    """Per-region results: ``types`` (rows x cols names), ``confidence`` and ``sigma`` (NaN where no noise)."""

    region: int  # pixels per side of a region
    types: list[list[str]]
    confidence: np.ndarray
    sigma: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        return {
            "region_px": self.region,
            "types": self.types,
            "confidence": np.round(self.confidence, 3).tolist(),
            "sigma": [[None if np.isnan(s) else round(float(s), 1) for s in row] for row in self.sigma],
        }


@dataclass
class Inspection:
    """The detected corruption of one image."""

    type: str  # clean, noise, rain, haze or a mixture such as haze+noise
    confidence: float  # in [0, 1]
    sigma: float | None  # noise standard deviation on the 0-255 scale, where noise is detected
    haze_density: float | None  # 1 - mean transmission, where haze is detected
    presence: dict[str, float]  # probability of each family the weights were calibrated on
    file: str | None = None
    regions: RegionMap | None = None
    features: np.ndarray | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: file, type, confidence, sigma, haze_density, presence (and regions with a map)."""
        out: dict[str, Any] = {
            "file": self.file,
            "type": self.type,
            "confidence": round(self.confidence, 3),
            "sigma": None if self.sigma is None else round(self.sigma, 1),
            "haze_density": None if self.haze_density is None else round(self.haze_density, 3),
            "presence": {k: round(v, 3) for k, v in self.presence.items()},
        }
        if self.regions is not None:
            out["regions"] = self.regions.to_dict()
        return out

    @property
    def degraded(self) -> float:
        """Probability that the image holds any corruption at all: the largest family presence.
        ``airnet restore`` scales its correction by it (``strength="auto"``), so a photo found surely
        clean comes back nearly unchanged."""
        return max(self.presence.values(), default=1.0)

    def summary(self) -> str:
        """One line: ``noise (confidence 0.97, sigma 24.6)``."""
        parts = [f"confidence {self.confidence:.2f}"]
        if self.sigma is not None:
            parts.append(f"sigma {self.sigma:.1f}")
        if self.haze_density is not None:
            parts.append(f"haze density {self.haze_density:.2f}")
        return f"{self.type} ({', '.join(parts)})"


class Inspector:
    """A model's degradation encoder with the probe calibrated for its weights."""

    def __init__(self, model: AirNet, probe: DegradationProbe) -> None:
        if probe.feature != FEATURE_SET:
            raise AirNetError(
                f"the degradation prototypes use statistics {probe.feature!r}, this version computes {FEATURE_SET!r}; "
                "recompute them with `airnet inspect --calibrate`"
            )
        if probe.encoder_sha256 != encoder_fingerprint(model):
            raise AirNetError("the degradation prototypes were computed for other weights (another encoder); "
                              "recompute them with `airnet inspect --calibrate`")
        self.model = model  # its modes are left alone: the encoder runs in eval mode inside ``embed``
        self.probe = probe

    @classmethod
    def from_weights(cls, weights: str | os.PathLike = DEFAULT_VARIANT, device: str = "auto") -> Inspector:
        """Load weights (a variant name or file) and the prototypes stored with them."""
        from airnet_restore.variants import load_model

        path = weights_file(weights)
        probe = DegradationProbe.from_metadata(read_metadata(path), str(weights))
        return cls(load_model(str(path), device=device), probe)

    @classmethod
    def for_model(cls, model: AirNet) -> Inspector:
        """An inspector for loaded weights: the prototypes their file held (``load_model`` keeps them),
        else those of the registered variant with the same encoder."""
        fingerprint = encoder_fingerprint(model)
        attached = _ATTACHED.get(model)
        if attached is not None and attached.encoder_sha256 == fingerprint:
            return cls(model, attached)
        probe = registered_probes().get(fingerprint)
        if probe is None:
            raise AirNetError(
                "no degradation prototypes for this model's encoder (in its weights file or among the registered "
                "variants): compute them with `airnet inspect --calibrate`"
            )
        return cls(model, probe)

    def embed(self, image: Any) -> EmbeddingGrid:
        """Cell statistics of the degradation map of an image (see ``inspect`` for what an image may be)."""
        pixels = _as_image(image)
        h, w = pixels.shape[:2] if isinstance(pixels, np.ndarray) else pixels.shape[-2:]
        if min(h, w) < CELL:
            raise AirNetError(f"a {w}x{h} image is too small to inspect: at least {CELL} px per side")
        return embed(self.model, pixels)

    def inspect(self, image: Any, regions: bool = False, file: str | None = None) -> Inspection:
        """Inspect one image (the average judgement of its 256-px windows); with ``regions``, also a map of
        64-px regions (each judged on the 128 px around it)."""
        grid = self.embed(image)
        features = grid.features()
        p = self.probe.judge(grid.window_features(IMAGE_WINDOW_CELLS, IMAGE_STRIDE_CELLS))
        result = Inspection(p.type, p.confidence, p.sigma, p.haze_density, p.presence, file=file, features=features)
        if regions:
            result.regions = self.region_map(grid)
        return result

    def region_map(self, grid: EmbeddingGrid) -> RegionMap:
        """The probe applied to every region of the image."""
        feats = grid.region_features(REGION_CELLS, WINDOW_CELLS)
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


# The prototypes held by the weights file each loaded model came from (set by ``load_model``).
_ATTACHED: weakref.WeakKeyDictionary[AirNet, DegradationProbe] = weakref.WeakKeyDictionary()


def attach_probe(model: AirNet, metadata: Mapping[str, str], source: str) -> None:
    """Keep the prototypes stored in a weights file's ``metadata`` with the model loaded from it.

    Prototypes this version cannot read (another version, a damaged file) are left out with a
    warning: the weights still load and restore, without detection (strength auto = 1)."""
    if METADATA_KEY not in metadata:
        return
    try:
        _ATTACHED[model] = DegradationProbe.from_json(metadata[METADATA_KEY], source)
    except AirNetError as e:
        warnings.warn(f"{source}: degradation prototypes not used ({e})", stacklevel=2)


def model_inspector(model: object) -> Inspector | None:
    """The inspector of a loaded model when prototypes fit its encoder (from its weights file or a
    registered variant), else None: for callers that use detections where they can, such as
    ``airnet restore``. A model whose encoder changed since its prototypes were computed has none."""
    if not isinstance(model, AirNet):
        return None  # the onnxruntime backend: no encoder to inspect with
    try:
        return Inspector.for_model(model)
    except AirNetError:
        return None


@lru_cache(maxsize=1)
def registered_probes() -> dict[str, DegradationProbe]:
    """encoder fingerprint -> prototypes, for every registered variant whose bundled weights hold them."""
    from airnet_restore.variants import VARIANTS

    found = {}
    for variant in VARIANTS.values():
        path = variant.weights_path()
        metadata = read_metadata(path) if path is not None else {}
        if METADATA_KEY in metadata:
            probe = DegradationProbe.from_json(metadata[METADATA_KEY], str(path))
            found[probe.encoder_sha256] = probe
    return found


@lru_cache(maxsize=4)
def _cached_inspector(weights: str, device: str) -> Inspector:
    return Inspector.from_weights(weights, device)


def inspect(image: Any, model: Inspector | AirNet | str | os.PathLike | None = None, probe: DegradationProbe | None = None) -> Inspection:
    """What is wrong with ``image`` (array, PIL image, (3,H,W) tensor or path), and how badly.

    ``model``: an ``Inspector``, a variant name or weights file holding prototypes (default: the
    default variant), or a loaded ``AirNet`` (with ``probe``, or the prototypes of the registered
    variant with the same encoder). One encoder pass, no restoration.
    """
    if isinstance(model, Inspector):
        inspector = model
    elif isinstance(model, AirNet):
        inspector = Inspector(model, probe) if probe is not None else Inspector.for_model(model)
    else:
        inspector = _cached_inspector(str(model if model is not None else DEFAULT_VARIANT), "auto")
    return inspector.inspect(image)


def count_types(results: Iterable[Inspection]) -> str:
    """How many of ``results`` have each detected type, most first: ``2 noise, 1 clean`` ('' for none)."""
    counts: dict[str, int] = {}
    for r in results:
        counts[r.type] = counts.get(r.type, 0) + 1
    return ", ".join(f"{n} {t}" for t, n in sorted(counts.items(), key=lambda kv: -kv[1]))


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
        from airnet_restore.inspection.plot import plot_embedding

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
    from airnet_restore.inspection.plot import check_picture_target, write_region_map

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
