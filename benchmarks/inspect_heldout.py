"""Identification accuracy of ``airnet inspect`` on the held-out protocol: the confusion matrix.

    python benchmarks/heldout_photos.py runs/heldout-photos          # once: the held-out photos
    python benchmarks/inspect_heldout.py --weights CALIBRATED.safetensors --photos runs/heldout-photos \\
        --out reports/inspect [--plot docs/inspect-embedding.png]

Photos and syntheses never used to build the prototypes: the held-out photos (the 6
validation photos, excluded from training and calibration, and 3 of scikit-image's), degraded
by the held-out family (``degradations/heldout.py``: Box-Muller noise, rendered rain, haze in
linear light over a ground-plane depth, and their mixtures with sigma-15 noise) that neither
training nor calibration uses. Two views: every whole photo (``--seeds`` draws of each
degradation) and random square crops (``--crops`` per photo, ``--crop`` px). The noise sigma
sweep (5 to 50 in steps of 5, on the crops) gives the sigma error. Writes ``confusion.md``
(tables) and ``results.json`` (every image) into ``--out``; ``--plot`` draws the embedding.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import zlib
from functools import partial
from pathlib import Path

import numpy as np
import torch

from airnet_restore.atomic import atomic_write
from airnet_restore.data.aio import load_rgb8
from airnet_restore.data.layouts import clean_folder
from airnet_restore.degradations import REGISTRY
from airnet_restore.degradations.heldout import HELDOUT_KINDS, ho_noise
from airnet_restore.errors import AirNetError
from airnet_restore.inspection import Inspector, plot_embedding, write_region_map
from airnet_restore.loading import load_model

SWEEP = tuple(range(5, 55, 5))
CORE = ("clean", "noise", "rain", "haze")


def degradation(name: str):
    """(function, true type, true sigma) of ``clean``, a held-out family member, or ``ho_noiseS`` for any S."""
    if name == "clean":
        return (lambda img, rng: img.copy()), "clean", None
    if name in HELDOUT_KINDS:
        kind, sigma = HELDOUT_KINDS[name]
        return REGISTRY[name].fn, kind, sigma
    sigma = float(name.removeprefix("ho_noise"))
    return partial(ho_noise, sigma=sigma), "noise", sigma


def crop_at(image: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    h, w = image.shape[:2]
    size = min(size, h, w)
    top, left = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    return np.ascontiguousarray(image[top : top + size, left : left + size])


def run(inspector: Inspector, photos: list[Path], crops: int, crop: int, seeds: int) -> list[dict]:
    """Inspect every (photo, view, degradation) of the protocol; one record each."""
    type_sets = ["clean", *HELDOUT_KINDS]
    sweep = [f"ho_noise{s}" for s in SWEEP]
    records = []
    start = time.perf_counter()
    for index, path in enumerate(photos):
        full = load_rgb8(path)
        views = [("whole", seed, None) for seed in range(seeds)] + [("crop", k, crop) for k in range(crops)]
        for view, k, size in views:
            names = type_sets if view == "whole" else list(dict.fromkeys(type_sets + sweep))
            if view == "whole" and k > 0:
                names = names[1:]  # a clean photo has no second draw
            for name in names:
                fn, kind, sigma = degradation(name)
                rng = np.random.default_rng([2024, index, k, zlib.crc32(f"{view}/{name}".encode())])
                clean = full if size is None else crop_at(full, size, rng)
                degraded = fn(clean, rng)
                result = inspector.inspect(torch.from_numpy(degraded).permute(2, 0, 1).float().div_(255.0))
                records.append({
                    "photo": path.name, "view": view, "draw": k, "set": name, "true": kind, "sigma": sigma,
                    "type": result.type, "confidence": result.confidence, "sigma_est": result.sigma,
                    "sigma_raw": float(inspector.probe.levels(result.features)[0][0]),
                    "haze_density": result.haze_density, "features": result.features.tolist(),
                })
        print(f"{index + 1}/{len(photos)} {path.name}: {len(records)} images, {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return records


def map_demo(inspector: Inspector, photo: Path, out: str) -> str:
    """A photo in three vertical bands (held-out noise sigma 25, rain, haze) and its region map: one line of result."""
    image = load_rgb8(photo).copy()
    rng = np.random.default_rng(0)
    third = image.shape[1] // 3
    for k, fn in enumerate((partial(ho_noise, sigma=25), REGISTRY["ho_rain"].fn, REGISTRY["ho_haze"].fn)):
        band = slice(k * third, (k + 1) * third if k < 2 else None)
        image[:, band] = fn(np.ascontiguousarray(image[:, band]), rng)
    result = inspector.inspect(torch.from_numpy(image).permute(2, 0, 1).float().div_(255.0), regions=True)
    write_region_map(out, image.astype(np.float32) / 255.0, result)
    return f"wrote {out}: {photo.name} in bands of noise, rain and haze, as a whole {result.summary()}"


def confusion(records: list[dict], sets: list[str], types: list[str]) -> tuple[str, float, int]:
    """A Markdown confusion matrix (rows: held-out sets, columns: detected types) and the core accuracy."""
    rows = ["| held-out set | n | " + " | ".join(types) + " | correct |", "|---" * (len(types) + 3) + "|"]
    hit = total = 0
    for name in sets:
        rs = [r for r in records if r["set"] == name]
        if not rs:
            continue
        counts = [sum(r["type"] == t for r in rs) for t in types]
        correct = sum(r["type"] == r["true"] for r in rs)
        cells = [f"**{c}**" if t == rs[0]["true"] else (str(c) if c else ".") for t, c in zip(types, counts)]
        rows.append(f"| {name} | {len(rs)} | " + " | ".join(cells) + f" | {correct / len(rs):.1%} |")
        if rs[0]["true"] in CORE:
            hit, total = hit + correct, total + len(rs)
    return "\n".join(rows), hit / max(total, 1), total


def report(records: list[dict], types: list[str], weights: str, args: argparse.Namespace) -> str:
    sets = ["clean", "ho_noise15", "ho_noise25", "ho_noise50", "ho_rain", "ho_haze", "ho_haze_noise", "ho_rain_noise"]
    out = [f"# `airnet inspect` on the held-out protocol\n\nWeights: `{weights}`. Command: "
           f"`python benchmarks/inspect_heldout.py {' '.join(sys.argv[1:])}`\n"]
    for view, label in (("whole", f"whole photos ({args.seeds} draws of each degradation)"), ("crop", f"{args.crop}-px crops ({args.crops} per photo)")):
        rs = [r for r in records if r["view"] == view]
        table, acc, n = confusion(rs, sets, types)
        per_type = [np.mean([r["type"] == t for r in rs if r["true"] == t and r["set"] in sets]) for t in CORE]
        out += [f"## {label}\n", table, f"\nType accuracy over clean/noise/rain/haze: **{acc:.1%}** of {n} images "
                f"(the noise row holds sigma 15, 25 and 50); per type {', '.join(f'{t} {a:.1%}' for t, a in zip(CORE, per_type))}, "
                f"their mean **{np.mean(per_type):.1%}**.\n"]
    noisy = [r for r in records if r["view"] == "crop" and r["set"].startswith("ho_noise") and r["sigma"] in SWEEP]
    rows = ["| sigma | n | detected as noise | MAE | mean error |", "|---|---|---|---|---|"]
    errs = []
    for s in SWEEP:
        rs = [r for r in noisy if r["sigma"] == s]
        e = np.array([r["sigma_raw"] - s for r in rs])
        errs += list(e)
        detected = sum("noise" in r["type"] for r in rs)
        rows.append(f"| {s} | {len(rs)} | {detected / len(rs):.0%} | {np.abs(e).mean():.2f} | {e.mean():+.2f} |")
    out += [f"## Noise sigma, {args.crop}-px crops, held-out noise at sigma 5-50\n", "\n".join(rows),
            f"\nSigma mean absolute error over sigma 5-50: **{np.abs(errs).mean():.2f}** ({len(errs)} crops; the probe's "
            "sigma estimate, which `inspect` reports wherever it detects noise).\n"]
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", required=True, help="calibrated weights (airnet inspect --calibrate)")
    parser.add_argument("--photos", default="runs/heldout-photos", help="held-out photo folder (benchmarks/heldout_photos.py)")
    parser.add_argument("--out", default="reports/inspect", help="folder for confusion.md and results.json")
    parser.add_argument("--crops", type=int, default=4, help="random crops per photo (default 4)")
    parser.add_argument("--crop", type=int, default=256, help="crop size in pixels (default 256)")
    parser.add_argument("--seeds", type=int, default=2, help="draws of each degradation on the whole photos (default 2)")
    parser.add_argument("--include", help="comma list of photo file names to keep (default: all)")
    parser.add_argument("--plot", help="also write the embedding plot of the crops (PNG), coloured by true type")
    parser.add_argument("--map-demo", metavar="OUT.png", help="also write the region map of a held-out photo (Path.png, else "
                        "the first) in three bands: noise sigma 25, rain, haze")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    try:
        inspector = load_model(args.weights, device=args.device).inspector()
        if inspector is None:
            raise AirNetError(f"{args.weights}: no degradation prototypes")
        photos = clean_folder(args.photos)
        if args.include:
            keep = set(args.include.split(","))
            photos = [p for p in photos if p.name in keep]
            if not photos:
                raise AirNetError(f"{args.photos}: none of {sorted(keep)}")
        records = run(inspector, photos, args.crops, args.crop, args.seeds)
        text = report(records, inspector.probe.types(), args.weights, args)
        out = Path(args.out)
        atomic_write(out / "confusion.md", lambda p: p.write_text(text + "\n"))
        slim = [{k: v for k, v in r.items() if k != "features"} for r in records]
        atomic_write(out / "results.json", lambda p: p.write_text(json.dumps(slim, indent=1)))
        print(text)
        if args.plot:
            rs = [r for r in records if r["view"] == "crop" and r["set"] in ("clean", *HELDOUT_KINDS)]
            plot_embedding(np.array([r["features"] for r in rs]), [r["true"] for r in rs], args.plot,
                           levels=[r["sigma"] for r in rs],
                           title=f"CBDE embedding of {len(rs)} held-out crops, coloured by true type")
            print(f"wrote {args.plot}")
        if args.map_demo:
            print(map_demo(inspector, next((p for p in photos if p.name == "Path.png"), photos[0]), args.map_demo))
    except AirNetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
