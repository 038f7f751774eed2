"""Flat, saturated colour fields under noise, restored as `airnet restore` does: a release check for
weights that take such a field for haze (v8's held-out retina, a flat red crop, showed it), made
without any held-out photo.

    python benchmarks/flat_fields.py --weights airnet-general-v8 --weights runs/general-cpuN/calibrated.safetensors

Each field: a random colour with one channel at a quarter of its draw (saturated), darkened
towards the corners by up to a quarter (a slow vignette), ``--size`` px a side; Gaussian noise of
each sigma from a generator seeded by the field's index, clipped and rounded to 8 bits. Printed per
weights and sigma: the mean and the lowest PSNR (dB) of the default output (strength and anchor auto)
against the field. A weights whose lowest value falls far below the previous release's shifts some
field's tones: check it before a held-out run.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from airnet_restore.constants import DEFAULT_VARIANT
from airnet_restore.inference.pipeline import restore_tensor
from airnet_restore.loading import load_model
from airnet_restore.metrics import psnr


def fields(count: int, size: int, seed: int = 0) -> list[torch.Tensor]:
    """``count`` (3,size,size) saturated fields with a vignette, in [0, 1]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.linspace(-1, 1, size), np.linspace(-1, 1, size), indexing="ij")
    out = []
    for _ in range(count):
        colour = rng.uniform(0.3, 0.95, 3)
        colour[rng.integers(3)] *= 0.25
        shade = 1 - 0.25 * rng.uniform(0.3, 1) * (xx**2 + yy**2)
        out.append(torch.from_numpy((colour[:, None, None] * shade[None]).clip(0, 1)).float())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", action="append", help=f"variants or files (default {DEFAULT_VARIANT})")
    parser.add_argument("--sigmas", default="0,15,25")
    parser.add_argument("--count", type=int, default=8)
    parser.add_argument("--size", type=int, default=192)
    args = parser.parse_args()
    clean = fields(args.count, args.size)
    print(f"{args.count} flat saturated fields, {args.size} px; PSNR dB of the default output, mean (lowest)")
    for weights in args.weights or [DEFAULT_VARIANT]:
        model = load_model(weights, device="cpu")
        line = []
        for sigma in (float(s) for s in args.sigmas.split(",")):
            values = []
            for i, y in enumerate(clean):
                noise = torch.randn(y.shape, generator=torch.Generator().manual_seed(i))
                x = ((y + sigma / 255 * noise).clamp(0, 1) * 255).round() / 255
                values.append(min(99.0, psnr(restore_tensor(model, x)[None], y[None]).item()))
            line.append(f"sigma {sigma:g}: {np.mean(values):.2f} ({min(values):.2f})")
        print(f"{weights}: " + ", ".join(line), flush=True)


if __name__ == "__main__":
    main()
