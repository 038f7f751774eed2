"""Time v7's second pass (``Blend.first``): a hazy, noisy photo restored with and without it, and the network alone.

    python benchmarks/second_pass_speed.py PHOTO [--size 1000] [--repeats 2]

The photo is resized to size x size, hazed (0.55 x + 0.4) and given noise of sigma 25 (seed 0);
the default weights' resolved blend is used with its check set to 1, its anchor capped at 0.5 and
``first`` on, so that the second pass runs wherever the network's output shows more than noise
removal (the output says whether it ran). Interleaved; medians printed.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from typing import Any

import numpy as np
import torch
from PIL import Image

from airnet_restore.constants import DEFAULT_VARIANT
from airnet_restore.inference.pipeline import restore_image
from airnet_restore.loading import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("photo")
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    model = load_model(DEFAULT_VARIANT, device="cpu")
    photo = Image.open(args.photo).convert("RGB").resize((args.size, args.size))
    clean = np.asarray(photo, dtype=np.float32) / 255
    noise = np.random.default_rng(0).normal(0.0, 25 / 255, clean.shape)
    x = np.clip(0.55 * clean + 0.4 + noise, 0, 1).astype(np.float32)
    found = model.inspect(x)
    blend = model.postfilter.plan(found)
    summary = found.summary() if found is not None else "nothing (no prototypes)"
    print(f"{DEFAULT_VARIANT}, {torch.get_num_threads()} threads, {args.size}x{args.size}; found {summary}")
    forced = dataclasses.replace(blend, first=True, check=1.0, anchor=min(blend.anchor, 0.5))
    runs: dict[str, dict[str, Any]] = {"network alone": {"postfilter": "none"},
            "blend without the second pass": {"blend": dataclasses.replace(forced, first=False)},
            "blend with the second pass": {"blend": forced}}
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, options in runs.items():
            start = time.perf_counter()
            applied = restore_image(model, x, **options).blend
            times[name].append(time.perf_counter() - start)
            print(f"{name}: {times[name][-1]:.2f} s ({applied.describe()})", flush=True)
    for name, values in times.items():
        print(f"| {name} | {statistics.median(values):.2f} |")


if __name__ == "__main__":
    main()
