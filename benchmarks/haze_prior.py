"""Experiment (issue 31, not in the default): the dark channel prior as a haze estimate for the post-filter.

    python data/photo_pool.py --split validation
    python benchmarks/haze_prior.py data/pool/validation [--every 1]

For each photo and condition (``airnet eval``'s pairs: 256-px centre crops, seed 0) the PSNR of: the input;
the dark channel prior (``baselines.dehaze_dcp``); and for airnet-general-v8 and -v9, the default restore
moved towards the prior by ``h = w * gate(p_haze) * (1 - ramp(sigma, 4, 12))`` (``p_haze``: the detectors'
haze probability, ``gate``: p itself, or ``ramp(p, lo, 1)`` that trusts only sure detections; the ramp of the
noise sigma keeps the prior from noisy photos, whose noise it amplifies). Per condition: mean, median, worst
and harm (clean photos: below 40 dB; degraded ones: more than 0.5 dB below their input). Choose on training
or validation photos only. Results: reports/haze-prior/README.md.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from airnet_restore.baselines.dcp import dehaze_dcp
from airnet_restore.evaluate import build_tasks
from airnet_restore.inference.pipeline import restore_image
from airnet_restore.loading import load_model
from airnet_restore.metrics import get_protocol
from airnet_restore.postfilter.params import ramp

CONDITIONS = ("clean", "haze", "haze_any", "ho_haze", "haze_any+noise_any", "ho_haze_noise")
GATES = ((0.0, 0.0), (0.5, 0.0), (0.5, 0.5), (0.5, 0.9), (1.0, 0.0), (1.0, 0.5), (1.0, 0.9))  # (w, lo); w 0: the default


def db(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 99.0 if mse == 0 else min(99.0, 10 * np.log10(255**2 / mse))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("photos", type=Path)
    parser.add_argument("--every", type=int, default=1, help="keep every N-th photo")
    args = parser.parse_args()
    models = {n: load_model(n, device="cpu") for n in ("airnet-general-v8", "airnet-general-v9")}
    include = [f.name for f in sorted(args.photos.glob("*.png"))[:: args.every]]
    start = time.perf_counter()
    for condition in CONDITIONS:
        (task,) = build_tasks(condition, args.photos, get_protocol("airnet"), crop=256, include=include)
        columns: dict[str, list[float]] = {}
        inputs = []
        for degraded, clean in zip(task.degraded, task.clean):
            prior = np.clip(np.rint(dehaze_dcp(degraded.astype(np.float32) / 255) * 255), 0, 255)
            inputs.append(db(degraded, clean))
            columns.setdefault("dark channel prior", []).append(db(prior, clean))
            for name, model in models.items():
                done = restore_image(model, degraded)
                p = done.found.presence.get("haze", 0.0) if done.found is not None else 0.0
                quiet = 1.0 - ramp(done.found.sigma or 0.0, 4.0, 12.0) if done.found is not None else 0.0
                for w, lo in GATES:
                    h = w * (ramp(p, lo, 1.0) if lo else p) * quiet
                    out = np.rint(done.pixels.astype(np.float64) * (1 - h) + prior * h)
                    columns.setdefault(f"{name[-2:]} w {w} p>{lo}" if w else f"{name[-2:]} default", []).append(db(out, clean))
        base = np.array(inputs)
        print(f"\n{condition}: {len(base)} photos, input {base.mean():.2f} dB ({time.perf_counter() - start:.0f} s)")
        print("| method | mean | median | worst | harmed |\n|---|---|---|---|---|")
        for name, values in columns.items():
            v = np.array(values)
            harmed = int(np.sum(v < 40)) if condition == "clean" else int(np.sum(v < base - 0.5))
            print(f"| {name} | {v.mean():.2f} | {np.median(v):.2f} | {v.min():.2f} | {harmed} |", flush=True)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
