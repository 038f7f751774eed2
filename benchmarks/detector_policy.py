"""Recalibrate the detectors of airnet-general-v8 on the photo pool, with a "do no harm" policy (issue 31, item 2).

    python benchmarks/detector_policy.py --quick                  # a quarter of the photos: sizes the run
    python benchmarks/detector_policy.py                          # the calibration and the validation tables
    python benchmarks/detector_policy.py --heldout \\
        --write src/airnet_restore/assets/airnet-general-v10.safetensors  # once, choices frozen

Fit: the probe's detectors and level regressions on ``data/pool/training`` (random crops of
128-512 px under every kind of the project's own noise, rain, haze and their mixtures, the general
``*_any`` families included, and clean crops and the 128/256/512-px windows of every whole clean
photo). Choose: the detectors' regularisation and the weight of clean samples, and the policy
(``calibrate.fit_policy``: at most ``--budget`` of the clean validation photos and crops get
presence over ``--low`` in any family, i.e. more than that share of the correction) on
``data/pool/validation``. Report: on validation (and with ``--heldout`` on ``data/pool/heldout``),
whole photos and 256-px crops, under the project's degradations and under the held-out synthesis
(``degradations/heldout.py``), for v8's and v9's stored probes, the new probe alone and the new probe with
its policy: the clean false-positive rate, each family's miss rate, the type accuracy over
clean/noise/rain/haze and the haze detection rate. Every image is judged as ``Inspector.inspect``
judges it (its 256-px windows at steps of 128 px). The features: the encoder's map statistics beside the hand-crafted
pixel statistics (``inspection/handcrafted.py``; ``--features encoder`` for the former alone, v9's calibration).
Embeddings are cached per photo in ``--cache`` (the hand-crafted ones re-synthesize each degraded image).
Writes ``--out``/README.md and results.json; ``--write`` stores v8's tensors with the new probe.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from airnet_restore.atomic import atomic_write
from airnet_restore.data.aio import load_rgb8
from airnet_restore.data.layouts import clean_folder
from airnet_restore.degradations import HELDOUT_KINDS, REGISTRY
from airnet_restore.inspection.calibrate import (
    COUNTS,
    PRESENCE,
    CalibrationSet,
    degrade_measured,
    fit_policy,
    fit_probe,
    load_encoder,
    random_crop,
    read_metadata,
    write_probe,
)
from airnet_restore.inspection.features import FEATURE_SET, embed, encoder_fingerprint
from airnet_restore.inspection.handcrafted import COMBINED_SET, HAND_SET, hand_grid
from airnet_restore.inspection.handcrafted import NAMES as HAND_NAMES
from airnet_restore.inspection.inspector import IMAGE_STRIDE_CELLS, IMAGE_WINDOW_CELLS
from airnet_restore.inspection.probe import FAMILIES, DegradationProbe, Prediction, type_name
from airnet_restore.models.airnet import AirNet
from airnet_restore.variants import VARIANTS

BASE = "airnet-general-v8"
PREVIOUS = "airnet-general-v9"  # the last calibration, encoder statistics only: a row of every table
NEW = "airnet-general-v10"
CORE = ("clean", "noise", "rain", "haze")
CROPS = (128, 512)  # crop sizes, drawn log-uniformly (as many small crops as large ones)
# The fit: degraded random crops per training photo, their kinds taken in turn from FIT_TYPES (the
# general families twice) from a place that moves by one with each photo; and the 128/256/512-px windows
# (cells of 16 px, stride) of every whole clean photo.
FIT_TYPES = ("noise15", "noise50", "noise_any", "noise_any", "noise_sv", "rain", "rain_heavy", "rain_any", "rain_any",
             "haze", "haze_any", "haze_any", "haze_any+noise_any", "rain_any+noise_any", "haze_any+rain_any", "clean")
FIT_CROPS = 6
CLEAN_WINDOWS = ((8, 8), (16, 8), (32, 16))
# Evaluation: the project's degradations (truth measured per image) and the held-out synthesis (truth by construction).
PROJECT = ("noise15", "noise25", "noise50", "noise_any", "rain", "rain_any", "haze_any",
           "haze_any+noise_any", "rain_any+noise_any")
HELDOUT = tuple(HELDOUT_KINDS)
# Per evaluation photo: the whole photo clean and under WHOLE_TYPES of these in turn, CROP_TYPES 256-px crops
# clean and CROP_TYPES under degradations in turn (all kinds), and BUDGET_CROPS clean crops of 128-512 px.
WHOLE = ("ho_noise15", "ho_noise25", "ho_noise50", "ho_rain", "ho_haze", "ho_haze_noise", "ho_rain_noise",
         "noise_any", "rain_any", "haze_any")
WHOLE_TYPES = 4
EVAL_CROP = 256
CLEAN_CROPS, CROP_TYPES = 2, 6
BUDGET_CROPS = 3
# Choices on validation: detectors' L2, the clean samples' share of the weight of those without a family,
# whether the 256-px windows of the larger crops are samples too, and the emphasis of the hand-crafted statistics
# (a factor on them after standardisation: their L2 is that factor squared smaller). The encoder's statistics alone
# (--features encoder) get v9's grid; with the hand-crafted ones, the crop windows are samples (v9's grid chose them).
GRID = tuple((l2, share, windows, 1.0) for l2 in (3e-4, 1e-3, 3e-3) for share in (0.2, 0.35, 0.5) for windows in (False, True))
GRID_BOTH = tuple((l2, share, True, emphasis) for l2 in (1e-3, 3e-3, 1e-2) for share in (0.2, 0.35, 0.5) for emphasis in (1.0, 3.0))
# Images judged on this many 256-px windows or more get thresholds of their own (a choice: 2, crops over 384 px
# too; 10, whole photos only, since crops of 512 px have 9).
WIDE_FROM = (2, 10)
# How the policy's budget is counted (--count), in the report's words.
COUNT_TEXT = {"view": "per clean image of each view (whole photos, 256-px crops, 128-512-px crops, each view separately)",
              "photo": "per photo within each view (whole photos, 256-px crops, 128-512-px crops): a photo counts once "
                       "where any of its clean images of that view is over",
              "weighted": "per photo within each view (whole photos, 256-px crops, 128-512-px crops): each clean image "
                          "weighs 1 / the number of its photo's images of that view"}
PROTOCOL = 1  # bump when what is cached per photo changes


@dataclass
class Images:
    """Cached samples: whole-image features (for fitting), the windows ``inspect`` judges, and their truth."""

    features: np.ndarray  # (n, F)
    windows: list[np.ndarray]  # n arrays (N_i, F)
    names: list[str]  # degradation name ("clean" for none)
    views: list[str]  # "whole", "crop256", "crop" (random size), "window" (of a whole clean photo)
    levels: list[dict[str, float]]  # measured strength per family (project family), {} for clean
    photos: list[str]

    @classmethod
    def concat(cls, parts: Sequence[Images]) -> Images:
        return cls(
            np.concatenate([p.features for p in parts]), [w for p in parts for w in p.windows],
            [n for p in parts for n in p.names], [v for p in parts for v in p.views],
            [lv for p in parts for lv in p.levels], [f for p in parts for f in p.photos],
        )

    @classmethod
    def side_by_side(cls, parts: Sequence[Images]) -> Images:
        """The same images with the features of ``parts`` (one per embedder) joined."""
        first = parts[0]
        for p in parts[1:]:
            if p.names != first.names or p.views != first.views or p.photos != first.photos:
                raise ValueError("the embedders' caches disagree on the images; clear --cache")
        return cls(np.hstack([p.features for p in parts]), [np.hstack(ws) for ws in zip(*(p.windows for p in parts))],
                   first.names, first.views, first.levels, first.photos)

    def select(self, keep: np.ndarray) -> Images:
        idx = np.flatnonzero(keep)
        return Images(self.features[idx], [self.windows[i] for i in idx], [self.names[i] for i in idx],
                      [self.views[i] for i in idx], [self.levels[i] for i in idx], [self.photos[i] for i in idx])

    def truth(self) -> tuple[list[str], np.ndarray]:
        """(true type, or "" where a family is too weak to say; presence labels (n, families) in {1, 0, -1})."""
        types, labels = [], []
        for name, lv in zip(self.names, self.levels):
            if name in HELDOUT_KINDS:
                kind = HELDOUT_KINDS[name][0]
                row = [1 if f in kind.split("+") else 0 for f in FAMILIES]
            else:
                row = [_label(f, lv.get(f, 0.0)) for f in FAMILIES]
            labels.append(row)
            types.append("" if -1 in row else type_name({f for f, r in zip(FAMILIES, row) if r == 1}))
        return types, np.array(labels, dtype=np.int64).reshape(len(types), len(FAMILIES))


def _label(family: str, level: float) -> int:
    low, high = PRESENCE[family]
    return 1 if level >= high else 0 if level < low else -1


def _save(path: Path, images: Images) -> None:
    offsets = np.cumsum([0] + [len(w) for w in images.windows])
    windows = np.concatenate(images.windows) if images.windows else np.zeros((0, images.features.shape[1]))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, features=images.features, windows=windows, offsets=offsets, names=np.array(images.names),
             views=np.array(images.views), levels=np.array(json.dumps(images.levels)), photos=np.array(images.photos))
    tmp.replace(path)


def _load(path: Path) -> Images:
    with np.load(path) as z:
        offsets = z["offsets"]
        windows = z["windows"]
        return Images(z["features"], [windows[a:b] for a, b in pairwise(offsets)], z["names"].tolist(),
                      z["views"].tolist(), json.loads(str(z["levels"])), z["photos"].tolist())


class Embedder:
    """Computes the cell statistics of images (``grid``: uint8 HxWx3 pixels -> a grid with ``features`` and
    ``window_features``), caching per photo and protocol under ``cache``/``name``."""

    def __init__(self, grid: Callable[[np.ndarray], Any], cache: Path, name: str) -> None:
        self.grid = grid
        self.cache = cache / name
        self.seconds = 0.0

    def image(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(whole-image features, the windows ``Inspector.inspect`` judges) of uint8 HxWx3 pixels."""
        grid = self.grid(pixels)
        return grid.features(), grid.window_features(IMAGE_WINDOW_CELLS, IMAGE_STRIDE_CELLS)

    def cached(self, split: str, photo: Path, protocol: str, make: Callable[[np.ndarray], Images]) -> Images:
        key = hashlib.sha256(f"{PROTOCOL}/{protocol}".encode()).hexdigest()[:12]
        path = self.cache / split / f"{photo.stem}-{key}.npz"
        if path.exists():
            return _load(path)
        start = time.perf_counter()
        images = make(load_rgb8(photo))
        self.seconds += time.perf_counter() - start
        _save(path, images)
        return images


def encoder_embedder(model: AirNet, cache: Path) -> Embedder:
    """The encoder's map statistics (``features.embed``), cached under the encoder's fingerprint."""
    return Embedder(lambda px: embed(model, torch.from_numpy(px).permute(2, 0, 1).float().div_(255.0)), cache,
                    encoder_fingerprint(model)[:16])


def hand_embedder(cache: Path) -> Embedder:
    """The hand-crafted pixel statistics (``handcrafted.hand_grid``), cached under their name."""
    return Embedder(hand_grid, cache, HAND_SET)


def _rng(*parts: object) -> np.random.Generator:
    return np.random.default_rng([zlib.crc32("/".join(map(str, parts)).encode())])


def crop(image: np.ndarray, rng: np.random.Generator, sizes: tuple[int, int]) -> np.ndarray:
    """A square crop whose side is drawn log-uniformly in ``sizes`` (at most the short side)."""
    side = round(float(np.exp(rng.uniform(np.log(sizes[0]), np.log(sizes[1])))))
    return random_crop(image, rng, (side, side))


def in_turn(kinds: Sequence[str], start: int, count: int) -> list[str]:
    """``count`` kinds taken in turn from ``start`` (wrapping)."""
    return [kinds[(start + k) % len(kinds)] for k in range(count)]


def training_images(emb: Embedder, photo: Path, index: int) -> Images:
    """``FIT_CROPS`` degraded random crops of one training photo (kinds in turn from ``index``), and the windows
    of the whole clean photo."""

    def make(full: np.ndarray) -> Images:
        feats, wins, names, views, levels = [], [], [], [], []
        grid = emb.grid(full)
        for window, stride in CLEAN_WINDOWS:
            for f in grid.window_features(window, stride):
                feats.append(f), wins.append(f[None]), names.append("clean"), views.append("window"), levels.append({})
        rng = _rng("fit", photo.name)
        for name in in_turn(FIT_TYPES, index * FIT_CROPS, FIT_CROPS):
            clean = crop(full, rng, CROPS)
            degraded, measured = degrade_measured(clean, name, rng) if name != "clean" else (clean, {})
            f, w = emb.image(degraded)
            feats.append(f), wins.append(w), names.append(name), views.append("crop"), levels.append(measured)
        return Images(np.array(feats), wins, names, views, levels, [photo.name] * len(names))

    return emb.cached("training", photo, json.dumps([FIT_TYPES, FIT_CROPS, index, CROPS, CLEAN_WINDOWS]), make)


def evaluation_images(emb: Embedder, split: str, photo: Path, index: int) -> Images:
    """One photo of an evaluation split: whole (clean and under ``WHOLE_TYPES`` kinds in turn from ``index``),
    in 256-px crops (clean, and under ``CROP_TYPES`` of all evaluation kinds in turn), and in clean crops of
    128-512 px (for the budget)."""

    def make(full: np.ndarray) -> Images:
        feats, wins, names, views, levels = [], [], [], [], []
        rng = _rng(split, photo.name)

        def add(clean: np.ndarray, name: str, view: str) -> None:
            if name == "clean":
                degraded, measured = clean, {}
            elif name in HELDOUT_KINDS:
                degraded, measured = REGISTRY[name].fn(clean, rng), {}
            else:
                degraded, measured = degrade_measured(clean, name, rng)
            f, w = emb.image(degraded)
            feats.append(f), wins.append(w), names.append(name), views.append(view), levels.append(measured)

        for name in ("clean", *in_turn(WHOLE, index * WHOLE_TYPES, WHOLE_TYPES)):
            add(full, name, "whole")
        kinds = (*PROJECT, *HELDOUT)
        for name in ["clean"] * CLEAN_CROPS + in_turn(kinds, index * CROP_TYPES, CROP_TYPES):
            add(random_crop(full, rng, (EVAL_CROP, EVAL_CROP)), name, "crop256")
        for _ in range(BUDGET_CROPS):
            add(crop(full, rng, CROPS), "clean", "crop")
        return Images(np.array(feats), wins, names, views, levels, [photo.name] * len(names))

    protocol = [WHOLE, WHOLE_TYPES, PROJECT, HELDOUT, index, EVAL_CROP, CLEAN_CROPS, CROP_TYPES, BUDGET_CROPS, CROPS]
    return emb.cached(split, photo, json.dumps(protocol), make)


def gather(embs: Sequence[Embedder], split: str, photos: list[tuple[int, Path]],
           fn: Callable[[Embedder, Path, int], Images]) -> Images:
    """The images of ``photos`` (index in the split, file) made by ``fn``, each embedder's features side by side,
    with progress on stderr."""
    start = time.perf_counter()
    parts = []
    for k, (index, photo) in enumerate(photos):
        parts.append(Images.side_by_side([fn(emb, photo, index) for emb in embs]))
        if (k + 1) % 10 == 0 or k + 1 == len(photos):
            print(f"{split}: {k + 1}/{len(photos)} photos, {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    return Images.concat(parts)


def fit_set(images: Images, windows: bool) -> CalibrationSet:
    """The fit's samples: every image as a whole; with ``windows``, also each 256-px window of the crops that have
    several (the windows ``inspect`` averages), with the crop's measured strengths."""
    rows = [(f, n, lv, ph) for f, n, lv, ph in zip(images.features, images.names, images.levels, images.photos)]
    if windows:
        rows += [(f, n, lv, ph) for w, n, lv, ph in zip(images.windows, images.names, images.levels, images.photos)
                 if len(w) > 1 for f in w]
    return CalibrationSet(np.array([r[0] for r in rows]), [r[1] for r in rows], [r[2] for r in rows], [r[3] for r in rows])


def predictions(probe: DegradationProbe, images: Images) -> list[Prediction]:
    """What ``Inspector.inspect`` says of every image (the probe's judgement of its windows)."""
    return [probe.judge(columns(probe, w)) for w in images.windows]


def columns(probe: DegradationProbe, windows: np.ndarray) -> np.ndarray:
    """The columns of (N, F) window features that ``probe`` reads: the encoder's statistics come first in every row,
    so a probe on them alone reads the first ones."""
    return windows[:, : len(probe.mean)]


def metrics(probe: DegradationProbe, images: Images, low: float) -> dict[str, float]:
    """Clean false positives, per-family misses, type accuracy over clean/noise/rain/haze and haze detection."""
    preds = predictions(probe, images)
    types, labels = images.truth()
    degraded = np.array([max(p.presence.values()) for p in preds])
    clean = np.array([t == "clean" for t in types])
    out: dict[str, float] = {"n": len(preds), "clean n": int(clean.sum())}
    out[f"clean FP (degraded > {low:.1f})"] = float(np.mean(degraded[clean] > low)) if clean.any() else np.nan
    hit = [degraded[clean & (np.array(images.photos) == ph)].max() > low for ph in sorted(set(np.array(images.photos)[clean]))]
    out["clean FP per photo"] = float(np.mean(hit)) if hit else np.nan  # photos with any clean image of the view over low
    out["clean mean strength"] = float(degraded[clean].mean()) if clean.any() else np.nan
    for k, family in enumerate(FAMILIES):
        has = labels[:, k] == 1
        found = np.array([p.presence.get(family, 0.0) >= 0.5 for p in preds])
        out[f"{family} n"] = int(has.sum())
        out[f"{family} miss"] = float(np.mean(~found[has])) if has.any() else np.nan
        out[f"{family} mean strength"] = float(degraded[has].mean()) if has.any() else np.nan
    per_type = []
    for t in CORE:
        rows = [p.type == t for p, tt in zip(preds, types) if tt == t]
        out[f"accuracy {t}"] = float(np.mean(rows)) if rows else np.nan
        per_type.append(out[f"accuracy {t}"])
    core = [p.type == t for p, t in zip(preds, types) if t in CORE]
    out["type accuracy"] = float(np.mean(core)) if core else np.nan
    out["type accuracy n"] = len(core)
    out["type accuracy, mean of types"] = float(np.nanmean(per_type))
    return out


def views(images: Images, family: tuple[str, ...]) -> dict[str, Images]:
    """The evaluation tables' subsets: whole photos and 256-px crops, clean plus one degradation family."""
    names = np.array(images.names)
    vw = np.array(images.views)
    keep = np.isin(names, ("clean", *family))
    return {"whole photos": images.select(keep & (vw == "whole")), "256-px crops": images.select(keep & (vw == "crop256"))}


def objective(probe: DegradationProbe, val: Images, low: float) -> float:
    """The validation score of a choice: mean type accuracy (per type) over whole photos and 256-px crops, project family."""
    return float(np.mean([metrics(probe, v, low)["type accuracy, mean of types"] for v in views(val, PROJECT).values()]))


def with_policy(probe: DegradationProbe, val: Images, budget: float, low: float, wide_from: int, count: str = "view") -> DegradationProbe:
    """A copy of ``probe`` with the policy fitted on the validation images (the clean budget counted per ``count``:
    ``calibrate.COUNTS``)."""
    vw = np.array(val.views)
    types, labels = val.truth()
    clean = np.array([t == "clean" for t in types])
    clean_views = {v: [columns(probe, val.windows[i]) for i in np.flatnonzero(clean & (vw == v))] for v in ("whole", "crop256", "crop")}
    photos = {v: [val.photos[i] for i in np.flatnonzero(clean & (vw == v))] for v in clean_views}
    labelled = np.isin(np.array(val.names), ("clean", *PROJECT)) & np.isin(vw, ("whole", "crop256"))
    idx = np.flatnonzero(labelled)
    order = [FAMILIES.index(f) for f in probe.families]
    policy = fit_policy(probe, clean_views, [columns(probe, val.windows[i]) for i in idx], labels[idx][:, order], budget=budget, low=low,
                        wide_from=wide_from, photos=photos, count=count)
    return DegradationProbe(**{**probe.__dict__, "policy": policy})


def transfer(probes: list[tuple[str, DegradationProbe]], val: Images, budget: float, low: float, wide_from: int,
             count: str = "view") -> tuple[str, dict]:
    """How the policy carries to photos it was not fitted on, within validation: for each detector set of ``probes``
    (policy refitted), the policy fitted on every other validation photo and judged on the rest, both ways."""
    photos = sorted(set(val.photos))
    half = np.array([photos.index(p) % 2 for p in val.photos])
    out, numbers = [], {}
    for fam_label, family in (("project", PROJECT), ("held-out synthesis", HELDOUT)):
        for view in ("whole photos", "256-px crops"):
            rows = []
            for label, probe in probes:
                for a in (0, 1):
                    fitted = with_policy(probe, val.select(half == a), budget, low, wide_from, count)
                    judged = views(val.select(half != a), family)[view]
                    rows.append((f"{label}, policy from half {a}, judged on half {1 - a}", metrics(fitted, judged, low)))
            numbers[f"{fam_label} / {view}"] = dict(rows)
            out += [f"### validation halves: {view}, clean and the {fam_label}\n", table(rows, low), ""]
    return "\n".join(out), numbers


def separation(probes: list[tuple[str, DegradationProbe]], images: Images, split: str, share: float = 0.05) -> tuple[str, dict]:
    """How well each detector, before any policy, separates images holding its family from clean ones: the share of
    images holding the family (project degradations and held-out synthesis together) whose window-averaged detector
    probability exceeds that of all but ``share`` of the clean images of the same view."""
    types, labels = images.truth()
    vw = np.array(images.views)
    clean = np.array([t == "clean" for t in types])
    cols = [f"{view} {family}" for view in ("whole", "crop256") for family in FAMILIES]
    lines = ["| detectors (no policy) | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    numbers = {}
    for label, probe in probes:
        found = {}
        for view in ("whole", "crop256"):
            idx = np.flatnonzero(vw == view)
            probs = [probe.image_probability(columns(probe, images.windows[i])) for i in idx]
            for k, family in enumerate(FAMILIES):
                s = np.array([p[family] for p in probs])
                bar = np.quantile(s[clean[idx]], 1.0 - share)
                found[f"{view} {family}"] = float(np.mean(s[labels[idx, k] == 1] > bar))
        numbers[label] = found
        lines.append(f"| {label} | " + " | ".join(f"{100 * found[c]:.0f} %" for c in cols) + " |")
    head = (f"### {split}: separation before the policy (detected at the clean images' {100 * (1 - share):.0f}th percentile, "
            "project degradations and held-out synthesis together)\n")
    return head + "\n" + "\n".join(lines) + "\n", numbers


def table(rows: list[tuple[str, dict[str, float]]], low: float) -> str:
    cols = [("clean FP", f"clean FP (degraded > {low:.1f})", "%"), ("clean FP per photo", "clean FP per photo", "%"), ("clean strength", "clean mean strength", "f"),
            ("noise miss", "noise miss", "%"), ("rain miss", "rain miss", "%"), ("haze miss", "haze miss", "%"),
            ("haze detected", "haze miss", "1-%"), ("type acc.", "type accuracy", "%"),
            ("clean", "accuracy clean", "%"), ("noise", "accuracy noise", "%"), ("rain", "accuracy rain", "%"),
            ("haze", "accuracy haze", "%"), ("n (clean/core)", None, "")]
    head = "| probe | " + " | ".join(c[0] for c in cols) + " |"
    lines = [head, "|---" * (len(cols) + 1) + "|"]
    for label, m in rows:
        cells = []
        for _, key, fmt in cols:
            if key is None:
                cells.append(f"{m['clean n']}/{m['type accuracy n']}")
                continue
            v = m.get(key, np.nan)
            cells.append("-" if np.isnan(v) else f"{100 * (1 - v):.1f} %" if fmt == "1-%" else f"{100 * v:.1f} %" if fmt == "%" else f"{v:.2f}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def evaluate(split: str, images: Images, probes: list[tuple[str, DegradationProbe]], low: float) -> tuple[str, dict]:
    """Markdown tables and the numbers of every probe on one split."""
    out, numbers = [], {}
    for fam_label, family in (("the project's degradations", PROJECT), ("the held-out synthesis (degradations/heldout.py)", HELDOUT)):
        for view, subset in views(images, family).items():
            rows = [(label, metrics(p, subset, low)) for label, p in probes]
            numbers[f"{fam_label} / {view}"] = dict(rows)
            out += [f"### {split}: {view}, clean and {fam_label}\n", table(rows, low), ""]
    return "\n".join(out), numbers


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", default="data/pool", help="the photo pool (data/photo_pool.py)")
    parser.add_argument("--cache", default="/tmp/detectors-cache", help="embedding cache (npz per photo)")
    parser.add_argument("--out", default="reports/detectors", help="folder for README.md and results.json")
    parser.add_argument("--quick", action="store_true", help="every 4th photo of each split and a 2-point grid")
    parser.add_argument("--fit-every", type=int, default=1, metavar="N", help="fit on every Nth training photo (default 1: all)")
    parser.add_argument("--heldout", action="store_true", help="also evaluate on data/pool/heldout (once, choices frozen)")
    parser.add_argument("--write", metavar="OUT.safetensors", help=f"write {BASE}'s tensors with the new probe")
    parser.add_argument("--budget", type=float, default=0.05, help="share of clean validation images allowed over --low")
    parser.add_argument("--low", type=float, default=0.2, help="presence (share of the correction) a clean image may get")
    parser.add_argument("--count", choices=COUNTS, default="view",
                        help="the budget per clean image of each view (v9), per photo (any of its images of a view over "
                             "--low counts the photo once), or per photo weighted (each image 1 / its photo's images)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--features", choices=("encoder", "both"), default="both",
                        help="the encoder's map statistics alone, or beside the hand-crafted pixel statistics (default)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(1)
    start = time.perf_counter()

    src = VARIANTS[BASE].checked_weights()
    base_probe = DegradationProbe.from_metadata(read_metadata(src), BASE)
    previous_probe = DegradationProbe.from_metadata(read_metadata(VARIANTS[PREVIOUS].checked_weights()), PREVIOUS)
    model = load_encoder(src)
    embs = [encoder_embedder(model, Path(args.cache))]
    if args.features == "both":
        embs.append(hand_embedder(Path(args.cache)))
    feature = COMBINED_SET if args.features == "both" else FEATURE_SET
    pool = Path(args.pool)
    steps = {"training": 4 if args.quick else args.fit_every, "validation": 4 if args.quick else 1, "heldout": 4 if args.quick else 1}
    photos = {s: list(enumerate(clean_folder(pool / s)))[::k] for s, k in steps.items()}
    train = gather(embs, "training", photos["training"], training_images)
    val = gather(embs, "validation", photos["validation"], lambda e, p, i: evaluation_images(e, "validation", p, i))
    embedded = time.perf_counter() - start

    grid = GRID if args.features == "encoder" else GRID_BOTH
    grid = grid[4:8] if args.quick else grid
    encoder_columns = len(base_probe.mean)
    scores = []
    for l2, weight, windows, emphasis in grid:
        factors = np.r_[np.ones(encoder_columns), np.full(train.features.shape[1] - encoder_columns, emphasis)]
        probe = fit_probe(fit_set(train, windows), l2=l2, clean_share=weight, feature=feature, emphasis=factors)
        probe.encoder_sha256 = base_probe.encoder_sha256
        for wide in WIDE_FROM:
            score = objective(with_policy(probe, val, args.budget, args.low, wide, args.count), val, args.low)
            scores.append(((l2, weight, windows, emphasis, wide), score, probe))
            print(f"l2 {l2:g}, clean share {weight:g}, crop windows {windows}, emphasis {emphasis:g}, wide from {wide}: "
                  f"validation score {score:.4f}", file=sys.stderr, flush=True)
    (l2, weight, windows, emphasis, wide), best_score, plain = max(scores, key=lambda s: s[1])
    final = with_policy(plain, val, args.budget, args.low, wide, args.count)
    samples = len(fit_set(train, windows).names)
    final.calibration = {
        "base": BASE, "fit photos": f"{len(photos['training'])} of data/pool/training",
        "policy photos": f"{len(photos['validation'])} of data/pool/validation",
        "fit types": list(FIT_TYPES), "fit crops": FIT_CROPS, "crop sizes": list(CROPS), "clean windows": [list(w) for w in CLEAN_WINDOWS],
        "samples": samples, "presence": PRESENCE, "l2": l2, "clean share": weight, "crop windows": windows,
        "hand-crafted emphasis": emphasis, "wide from": wide,
        "policy": f"at most {args.budget:.0%} of clean validation photos and crops (whole, 256-px, 128-512-px) get presence "
                  f"over {args.low} in any family; detection (presence 0.5) where the balanced accuracy is best",
        "budget counted": COUNT_TEXT[args.count],
        "command": "python benchmarks/detector_policy.py " + " ".join(sys.argv[1:]),
    }
    fitted = time.perf_counter() - start - embedded
    probes = [(f"{BASE} (stored probe)", base_probe), (f"{PREVIOUS} (stored probe + policy)", previous_probe),
              ("new probe, no policy", plain), ("new probe + policy", final)]
    text_val, num_val = evaluate("validation", val, probes, args.low)
    numbers = {"validation": num_val, "count": args.count, "choice": {"l2": l2, "clean share": weight, "crop windows": windows, "emphasis": emphasis,
                                                 "wide from": wide, "samples": samples, "score": best_score,
                                                 "grid": [[list(c), s] for c, s, _ in scores]},
               "policy": final.policy.__dict__}
    text_transfer, numbers["transfer"] = transfer([(PREVIOUS, previous_probe), ("new probe", plain)], val, args.budget, args.low, wide,
                                                  args.count)
    text_separation, numbers["separation"] = separation(probes[:3], val, "validation")  # v8, v9 and the new detectors
    sections = [text_val, text_separation, text_transfer]
    if args.heldout:
        held = gather(embs, "heldout", photos["heldout"], lambda e, p, i: evaluation_images(e, "heldout", p, i))
        text_held, numbers["heldout"] = evaluate("heldout", held, probes, args.low)
        sections.append(text_held)
    if args.write:
        extra = {"variant": NEW, "description": f"{NEW}: {BASE}'s weights with detectors recalibrated on the photo pool, "
                 f"on the encoder's and hand-crafted statistics ({final.feature}), and a do-no-harm policy "
                 f"(benchmarks/detector_policy.py). " + read_metadata(src).get("description", "")}
        write_probe(src, Path(args.write), final, extra)
        numbers["written"] = {"file": args.write, "sha256": hashlib.sha256(Path(args.write).read_bytes()).hexdigest()}
        print(f"wrote {args.write} (sha256 {numbers['written']['sha256']})", file=sys.stderr)
    total = time.perf_counter() - start
    numbers["seconds"] = {"embedding (new only)": round(sum(e.seconds for e in embs), 1), "embedding and loading": round(embedded, 1),
                          "fitting and choosing": round(fitted, 1), "total": round(total, 1)}
    report = render(args, photos, train, val, final, scores, sections, numbers)
    out = Path(args.out)
    atomic_write(out / ("README-quick.md" if args.quick else "README.md"), lambda p: p.write_text(report))
    atomic_write(out / ("results-quick.json" if args.quick else "results.json"), lambda p: p.write_text(json.dumps(numbers, indent=1, default=float)))
    print(report)
    return 0


def render(args: argparse.Namespace, photos: dict[str, list[Path]], train: Images, val: Images, final: DegradationProbe,
           scores: list, sections: list[str], numbers: dict) -> str:
    flags = " ".join(a for a in sys.argv[1:])
    policy = final.policy
    thresholds = "\n".join(f"| {f} | {lo:+.2f} | {hi:+.2f} | {policy.wide[f][0]:+.2f} | {policy.wide[f][1]:+.2f} |"
                           for f, (lo, hi) in policy.thresholds.items())
    grid = "\n".join(f"| {c[0]:g} | {c[1]:g} | {'yes' if c[2] else 'no'} | {c[3]:g} | {c[4]} | {100 * s:.2f} % |" for c, s, _ in scores)
    secs = numbers["seconds"]
    hand = "" if final.feature == FEATURE_SET else (
        f", beside {len(HAND_NAMES)} hand-crafted pixel statistics of every window (`inspection/handcrafted.py`: noise sigma "
        "in the flattest cells and the share of the residual common to the colour channels; dark-channel, saturation and "
        "contrast quantiles and their correlation with brightness; thin bright structures, their excess over thin dark "
        "ones, how one line direction dominates them and whether it is near vertical)")
    return f"""# Detectors that generalize, and a "do no harm" policy (issue 31, item 2)

Command: `python benchmarks/detector_policy.py {flags}` ({platform.machine()}, {torch.get_num_threads()} threads,
{secs['total']:.0f} s in all: {secs['embedding (new only)']:.0f} s embedding images not yet cached, {secs['fitting and choosing']:.0f} s
fitting and choosing). Features `{final.feature}`: the statistics of {BASE}'s encoder map (unchanged){hand}.

- **Fit** ({len(photos['training'])} photos of `data/pool/training`): {len(train.names)} crops and clean windows, {numbers['choice']['samples']}
  samples with the chosen crop windows: {FIT_CROPS} random crops of
  {CROPS[0]}-{CROPS[1]} px per photo (side log-uniform), their kinds in turn from {', '.join(FIT_TYPES)}; and the
  {', '.join(f'{16 * w}-px' for w, _ in CLEAN_WINDOWS)} windows of every whole clean photo.
- **Evaluation images** per photo: the whole photo clean and under {WHOLE_TYPES} kinds in turn from {', '.join(WHOLE)};
  {CLEAN_CROPS} clean {EVAL_CROP}-px crops and {CROP_TYPES} under kinds in turn from the project's {', '.join(PROJECT)} and the
  held-out {', '.join(HELDOUT)}; {BUDGET_CROPS} clean crops of {CROPS[0]}-{CROPS[1]} px (for the budget).
- **Choices** ({len(photos['validation'])} photos of `data/pool/validation`, {len(val.names)} images): the detectors' L2,
  whether the 256-px windows of the larger crops are samples too, the window count from which an image is judged
  "wide", and the clean samples' share of the weight of the samples without a family (each detector weighs the samples with
  and without its family equally; best mean per-type accuracy on the project's degradations, whole photos and 256-px crops,
  with the policy fitted for each), then the policy.
- **Policy** (stored in the probe, `Policy`): presence of a family is an affine map, in logit space, of the detectors'
  window-averaged probability: presence {policy.low} at the *clean* threshold, 0.5 at the *detect* threshold. The clean
  thresholds come from the budget: at most **{100 * policy.budget:.0f} %** of the clean validation photos and crops,
  counted {COUNT_TEXT[args.count]}, get presence over {policy.low} in any family,
  that is more than {policy.low} of the correction under `--strength auto`. The detect threshold of each family is where the
  decision "present" has the best balanced accuracy on the validation images (project degradations), at least 0.5
  above the clean threshold. Images judged on many windows (whole photos) get thresholds of their own: a single
  256-px window of flat sky or water looks hazy, the average over a whole photo is surer. The budget is spent
  where it lets most degraded validation images through (`calibrate.clean_thresholds`).

| family | clean threshold (logit), fewer than {policy.wide_from} windows | detect threshold | clean threshold, {policy.wide_from} windows or more | detect threshold |
|---|---|---|---|---|
{thresholds}

| detectors' L2 | clean share | crop windows as samples | hand-crafted emphasis | wide from (windows) | validation score |
|---|---|---|---|---|---|
{grid}

Truth: for the project's degradations each family's strength is measured on the image (noise sigma, haze density,
rain coverage; `calibrate.PRESENCE`); images with a family between "absent" and "present" are left out of the
type accuracy. For the held-out synthesis the truth is the kind (`HELDOUT_KINDS`). "miss": images holding the family
whose presence of it is under 0.5; "clean FP": clean images whose largest presence (the strength `auto` applies)
is over {policy.low}; "type acc.": the detected type equals the true one, over images of type clean, noise, rain or haze
(the noise rows hold all sigmas); "haze detected": 1 - haze miss (haze and haze+noise images).

"validation halves": the policy refitted on every other validation photo and judged on the rest (both ways), for
{PREVIOUS}'s detectors and the new ones: what a 5 % budget set on about 22 photos gives on photos it did not see.
"clean FP per photo": the share of photos with any clean image of the table's view over {policy.low} (whole photos: the same
as "clean FP"; 256-px crops: 2 per photo).

{chr(10).join(sections)}
"""


if __name__ == "__main__":
    sys.exit(main())
