"""Lightly noisy photos: Gaussian noise of a small sigma, saved as JPEG, restored as `airnet restore` does and by the network alone.

    python benchmarks/light_noise.py runs/heldout-photos [--weights airnet-general ...] [--sigma 8] [--quality 90]

Per photo of the folder: a centre crop (192 px), noise from one seeded generator, a JPEG round
trip; printed: the mean PSNR against the clean crop of the input and of each weights' output at
the defaults (``--strength auto --anchor auto``) and as the network gives it (strength 1, anchor 0),
and the per-photo values.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from airnet_restore.constants import DEFAULT_VARIANT
from airnet_restore.data.aio import load_rgb8
from airnet_restore.inference import restore
from airnet_restore.loading import load_model
from airnet_restore.metrics import centre_crop, psnr

BLENDS = {"auto": {}, "network": {"strength": 1.0, "anchor": 0.0}}


def score(out: np.ndarray, clean: np.ndarray) -> float:
    """PSNR (dB) of uint8 ``out`` against ``clean``."""
    return psnr(torch.from_numpy(out)[None].double() / 255, torch.from_numpy(clean)[None].double() / 255).item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("photos", type=Path)
    parser.add_argument("--weights", action="append", help="variants or files (default airnet-general)")
    parser.add_argument("--sigma", type=float, default=8.0)
    parser.add_argument("--quality", type=int, default=90)
    parser.add_argument("--crop", type=int, default=192)
    args = parser.parse_args()
    models = {w: load_model(w, device="cpu") for w in args.weights or [DEFAULT_VARIANT]}
    rng = np.random.default_rng(int(args.sigma))
    scores: dict[str, list[float]] = {"input": []}
    for path in sorted(args.photos.glob("*.png")):
        photo = torch.from_numpy(load_rgb8(path)).permute(2, 0, 1)
        clean = np.ascontiguousarray(centre_crop(photo, args.crop, args.crop).permute(1, 2, 0).numpy())
        noisy = np.clip(np.rint(clean + rng.normal(0.0, args.sigma, clean.shape)), 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(noisy).save(buffer, "JPEG", quality=args.quality)
        degraded = np.asarray(Image.open(buffer).convert("RGB"))
        scores["input"].append(score(degraded, clean))
        for name, model in models.items():
            for label, options in BLENDS.items():
                scores.setdefault(f"{name}, {label}", []).append(score(restore(degraded, model, **options), clean))
    print(f"sigma {args.sigma:g}, JPEG quality {args.quality}, {len(scores['input'])} photos, {args.crop}-px crops")
    for label, values in scores.items():
        print(f"{label}: mean {np.mean(values):.2f} dB; per photo {' '.join(f'{v:.1f}' for v in values)}")


if __name__ == "__main__":
    main()
