"""The post-filter's haze band (issue 31, item 3), measured on validation photos.

    python data/photo_pool.py --split validation
    python benchmarks/haze_band.py cache data/pool/validation runs/haze-band [--every 3] [--weights airnet-general-v8]
    python benchmarks/haze_band.py score data/pool/validation runs/haze-band [--every 3] [--verbose]
    python benchmarks/haze_band.py order data/pool/validation runs/haze-band [--every 3]

``cache`` stores, for each photo and condition (``airnet eval``'s pairs: 256-px centre crops, seed 0), the
degraded and clean crops, the default restore with the haze band off (``PostFilterParams().haze`` disabled)
and what the detectors found; photos are done every ``--every``-th first, so a partial cache holds a
subset. ``score`` applies haze-band settings to the cached default outputs exactly as the stage does
(``postfilter.haze.dehaze`` on the finished output, here rounded to 8 bits: a full restore with the band
agreed with this within 50 dB PSNR on the photos checked) and prints per condition the mean, median,
worst and harm count (clean photos: below 40 dB; degraded ones: more than 0.5 dB below their input) against
the input, the dark channel prior (``baselines.dehaze_dcp``), the haze map on every photo and the default
without the band. ``order``
compares the band (the prior after the network) with the network run on the prior's output. The variants
named "map" dehaze with the bundled haze map (``HazeSettings.map``) instead of the prior. Choose on
training or validation photos only. Results: reports/haze-prior/README.md, reports/haze-map/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from airnet_restore.baselines.dcp import dehaze_dcp
from airnet_restore.evaluate import build_tasks
from airnet_restore.metrics import get_protocol
from airnet_restore.postfilter.haze import dehaze, haze_confidence, haziness, map_output
from airnet_restore.postfilter.params import HazeSettings

HAZE_CONDITIONS = ("clean", "haze", "haze_any", "ho_haze", "haze_any+noise_any", "ho_haze_noise")
OTHER_CONDITIONS = ("noise25", "rain_any", "ho_rain_noise")
CONDITIONS = HAZE_CONDITIONS + OTHER_CONDITIONS


def db(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR (dB, 8-bit scale) of ``a`` against ``b``, 99 for identical images."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 99.0 if mse == 0 else min(99.0, 10 * np.log10(255**2 / mse))


def every_first(names: list[str], every: int) -> list[str]:
    """Every ``every``-th photo first, then the rest (a partial cache is the ``--every`` subset)."""
    first = names[::every]
    return first + [n for n in names if n not in first]


def without_haze_band(model: object) -> object:
    """``model`` (a descriptor) with its post-filter's haze band disabled."""
    params = model.postfilter.params  # type: ignore[attr-defined]
    if not hasattr(params, "haze"):
        return model
    off = replace(params, haze=replace(params.haze, enabled=False))
    return replace(model, postfilter=replace(model.postfilter, params=off))  # type: ignore[attr-defined]


def cache(args: argparse.Namespace) -> None:
    from airnet_restore.inference.pipeline import restore_image
    from airnet_restore.loading import load_model

    names = sorted(f.name for f in args.photos.glob("*.png"))
    tasks = {}  # each condition's pairs built over all photos at once: its generator degrades them in order
    for condition in args.conditions:
        (task,) = build_tasks(condition, args.photos, get_protocol("airnet"), crop=256)
        tasks[condition] = dict(zip(task.names, zip(task.degraded, task.clean)))
    start = time.perf_counter()
    for weights in args.weights:
        model = without_haze_band(load_model(weights, device="cpu"))
        for name in every_first(names, args.every):
            for condition in args.conditions:
                path = args.cache / weights / condition / f"{Path(name).stem}.npz"
                if path.exists():
                    continue
                degraded, clean = tasks[condition][name]
                done = restore_image(model, degraded)
                found = done.found.to_dict() if done.found is not None else None
                path.parent.mkdir(parents=True, exist_ok=True)
                part = path.with_suffix(".part.npz")
                np.savez_compressed(part, degraded=degraded, clean=clean, default=done.pixels,
                                    found=json.dumps(found), blend=done.blend.describe())
                os.replace(part, path)
            print(f"{weights} {name} done ({time.perf_counter() - start:.0f} s)", flush=True)


def load(cache_dir: Path, weights: str, condition: str, names: list[str]) -> list[dict]:
    """The cached photos of one weights and condition among ``names`` (those present)."""
    rows = []
    for name in names:
        path = cache_dir / weights / condition / f"{Path(name).stem}.npz"
        try:
            with np.load(path) as z:
                row = {k: z[k] for k in ("degraded", "clean", "default")}
                row["found"] = json.loads(str(z["found"]))
                row["name"] = name
        except (OSError, EOFError, ValueError):  # not cached yet, or being written
            continue
        rows.append(row)
    return rows


def variants() -> dict[str, tuple[str, HazeSettings]]:
    """The haze-band settings measured: name -> (what is dehazed: "output" or "input", settings). A haze map
    always sees the input; "output" moves the output towards the map's result, "input" the input."""
    on = HazeSettings(enabled=True)
    mapped = replace(on, map="hazemap-v1", max_clipped=1.0)
    return {
        "band": ("output", on),
        "band, no clip check": ("output", replace(on, max_clipped=1.0)),
        "band, no dark-channel check": ("output", replace(on, hazy_dark=(0.0, 1e-6))),
        "band, omega 0.95": ("output", replace(on, omega=0.95)),
        "band, floor 0.3": ("output", replace(on, floor=0.3)),
        "band, sure 0.5-0.9": ("output", replace(on, sure=(0.5, 0.9))),
        "band, no rain gate": ("output", replace(on, others=0.0)),
        "band, noise 16-32": ("output", replace(on, noise_sigmas=(16.0, 32.0))),
        "band on the input": ("input", on),
        "map": ("output", mapped),
        "map on the input alone": ("input", mapped),
        "map, clip check": ("output", replace(mapped, max_clipped=on.max_clipped)),
        "map, no dark-channel check": ("output", replace(mapped, hazy_dark=(0.0, 1e-6))),
        "map, dark 0.2-0.35": ("output", replace(mapped, hazy_dark=(0.2, 0.35))),
        "map, sure 0.05-0.3": ("output", replace(mapped, sure=(0.05, 0.3))),
        "map, sure 0.3-0.7": ("output", replace(mapped, sure=(0.3, 0.7))),
        "map, noise 16-32": ("output", replace(mapped, noise_sigmas=(16.0, 32.0))),
    }


def apply(row: dict, mode: str, settings: HazeSettings) -> tuple[np.ndarray, float]:
    """The cached photo finished with the haze band ``settings`` as the stage does; and the confidence used."""
    found = row["found"]
    if found is None:
        return row["default"], 0.0
    c = haze_confidence(found["presence"], found["sigma"], settings)
    x = row["degraded"].astype(np.float64) / 255
    default = row["default"].astype(np.float64) / 255
    out, used = dehaze(default if mode == "output" else x, x, c, settings)
    if used == 0.0:
        return row["default"], 0.0
    return np.clip(np.rint(out * 255), 0, 255), used


def table(condition: str, base: np.ndarray, columns: dict[str, list[float]], against: tuple[str, str]) -> None:
    """Per method: mean, median, worst, harm, and on how many photos it beats each of ``against``."""
    print(f"\n{condition}: {len(base)} photos, input {base.mean():.2f} dB")
    print(f"| method | mean | median | worst | harmed | > {against[0]} | >= {against[1]} |\n|---|---|---|---|---|---|---|")
    for name, values in columns.items():
        v = np.array(values)
        harmed = int(np.sum(v < 40)) if condition == "clean" else int(np.sum(v < base - 0.5))
        wins = [int(np.sum(v > np.array(columns[a]))) if a in columns else 0 for a in against[:1]]
        ties = [int(np.sum(v >= np.array(columns[a]) - 0.005)) if a in columns else 0 for a in against[1:]]
        print(f"| {name} | {v.mean():.2f} | {np.median(v):.2f} | {v.min():.2f} | {harmed} | {wins[0]} | {ties[0]} |",
              flush=True)


def score(args: argparse.Namespace) -> None:
    names = sorted(f.name for f in args.photos.glob("*.png"))[:: args.every]
    chosen = {k: v for k, v in variants().items() if not args.variants or k in args.variants.split(";")}
    for weights in args.weights:
        print(f"\n## {weights}")
        for condition in args.conditions:
            rows = load(args.cache, weights, condition, names)
            if not rows:
                continue
            base = np.array([db(r["degraded"], r["clean"]) for r in rows])
            columns: dict[str, list[float]] = {"input": list(base)}
            columns["dark channel prior"] = [
                db(np.clip(np.rint(dehaze_dcp(r["degraded"].astype(np.float32) / 255) * 255), 0, 255), r["clean"])
                for r in rows]
            columns["haze map alone"] = [
                db(np.clip(np.rint(map_output(r["degraded"] / 255.0, "hazemap-v1") * 255), 0, 255), r["clean"]) for r in rows]
            columns["default"] = [db(r["default"], r["clean"]) for r in rows]
            used: dict[str, list[float]] = {}
            for label, (mode, settings) in chosen.items():
                for r in rows:
                    out, c = apply(r, mode, settings)
                    columns.setdefault(label, []).append(db(out, r["clean"]))
                    used.setdefault(label, []).append(c)
            table(condition, base, columns, ("dark channel prior", "default"))
            if args.verbose:
                for i, r in enumerate(rows):
                    found = r["found"] or {"presence": {}, "sigma": None}
                    print(f"  {r['name'][:28]:28s} p_haze {found['presence'].get('haze', 0):.2f} sigma "
                          f"{found['sigma'] or 0:5.1f} dark {haziness(r['degraded'] / 255.0, HazeSettings()):.3f} | "
                          + " ".join(f"{columns[k][i]:6.2f}" for k in columns)
                          + " | c " + " ".join(f"{used[k][i]:.2f}" for k in used))


def order(args: argparse.Namespace) -> None:
    """Which order: the prior on the network's output (the band) or the network on the prior's output (the
    input dehazed by the band's bounded prior, then restored by the default with the band off). The band's
    noise gate is lifted for both, so that noisy photos are dehazed too."""
    from airnet_restore.inference.pipeline import restore_image
    from airnet_restore.loading import load_model

    names = sorted(f.name for f in args.photos.glob("*.png"))[:: args.every]
    settings = HazeSettings(enabled=True, noise_sigmas=(254.0, 255.0))
    for weights in args.weights:
        model = without_haze_band(load_model(weights, device="cpu"))
        for condition in args.conditions:
            scores = []
            for r in load(args.cache, weights, condition, names):
                found = r["found"]
                c = haze_confidence(found["presence"], found["sigma"], settings) if found else 0.0
                x = r["degraded"] / 255.0
                prior, used = dehaze(x, x, c, settings)
                default = db(r["default"], r["clean"])
                first = default
                if used > 0.0:
                    first = db(restore_image(model, np.clip(np.rint(prior * 255), 0, 255).astype(np.uint8)).pixels,
                               r["clean"])
                scores.append((db(r["degraded"], r["clean"]), default, db(apply(r, "output", settings)[0], r["clean"]),
                               first))
            v = np.array(scores)
            print(f"{weights} {condition}: {len(v)} photos; mean input {v[:, 0].mean():.2f}, default {v[:, 1].mean():.2f}, "
                  f"prior after the network {v[:, 2].mean():.2f} ({int(np.sum(v[:, 2] < v[:, 0] - 0.5))} harmed), "
                  f"network after the prior {v[:, 3].mean():.2f} ({int(np.sum(v[:, 3] < v[:, 0] - 0.5))} harmed)",
                  flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, every: int, every_help: str, conditions: str) -> argparse.ArgumentParser:
        c = sub.add_parser(name)
        c.add_argument("photos", type=Path)
        c.add_argument("cache", type=Path)
        c.add_argument("--every", type=int, default=every, help=every_help)
        c.add_argument("--weights", action="append", default=None, help="default: airnet-general-v8")
        c.add_argument("--conditions", default=conditions)
        return c

    command("cache", 3, "do every N-th photo first", ",".join(CONDITIONS))
    c = command("score", 1, "keep every N-th photo", ",".join(CONDITIONS))
    c.add_argument("--variants", default="", help="names of variants() separated by ';' (default: all)")
    c.add_argument("--verbose", action="store_true", help="per photo: detections and PSNRs")
    command("order", 3, "keep every N-th photo", "haze,ho_haze,haze_any+noise_any,ho_haze_noise")
    args = parser.parse_args()
    args.weights = args.weights or ["airnet-general-v8"]
    args.conditions = args.conditions.split(",")
    {"cache": cache, "score": score, "order": order}[args.command](args)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
