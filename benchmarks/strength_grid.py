"""A picture of what ``--strength auto --anchor auto`` does: per photo, input | the network's output | auto.

    python benchmarks/strength_grid.py OUT.jpg PHOTO [PHOTO ...] [--weights airnet-general] \\
        [--degradation clean] [--crop 192]

Each row is a centre crop of one photo, degraded by a held-out or registered degradation
(``clean``: the photo itself) from seed 0, with the detected type, the blend applied and the
PSNR of each output against the clean crop printed on it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from airnet_restore.constants import DEFAULT_VARIANT
from airnet_restore.data.aio import load_rgb8
from airnet_restore.degradations import get_degradation
from airnet_restore.inference import restore
from airnet_restore.inference.pipeline import restore_image
from airnet_restore.loading import load_model
from airnet_restore.metrics import psnr


def score(out: np.ndarray, clean: np.ndarray) -> float:
    """PSNR (dB) of uint8 ``out`` against ``clean``."""
    return psnr(torch.from_numpy(out)[None].double() / 255, torch.from_numpy(clean)[None].double() / 255).item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("photos", nargs="+", type=Path)
    parser.add_argument("--weights", default=DEFAULT_VARIANT)
    parser.add_argument("--degradation", default="clean", help="registered degradation, or clean for the photo itself")
    parser.add_argument("--crop", type=int, default=192)
    args = parser.parse_args()
    model = load_model(args.weights, device="cpu")
    rows = []
    for path in args.photos:
        photo = load_rgb8(path)
        h, w = photo.shape[:2]
        c = min(args.crop, h, w)
        clean = np.ascontiguousarray(photo[(h - c) // 2 : (h - c) // 2 + c, (w - c) // 2 : (w - c) // 2 + c])
        degraded = clean if args.degradation == "clean" else get_degradation(args.degradation)(clean, np.random.default_rng(0))
        network = restore(degraded, model, postfilter="none")
        done = restore_image(model, degraded)  # the blend applied: its anchor checked
        auto, blend, found = done.pixels, done.blend, done.found
        row = Image.fromarray(np.concatenate([degraded, network, auto], axis=1))
        draw = ImageDraw.Draw(row)
        found_text = f"found {found.type}" if found is not None else "no prototypes"
        draw.text((6, 4), f"{path.stem}: input ({args.degradation})", fill=(255, 255, 0))
        draw.text((c + 6, 4), f"network: {score(network, clean):.1f} dB", fill=(255, 255, 0))
        draw.text((2 * c + 6, 4), f"auto ({found_text}): {score(auto, clean):.1f} dB", fill=(255, 255, 0))
        draw.text((2 * c + 6, 16), blend.describe(), fill=(255, 255, 0))
        rows.append(np.asarray(row))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(rows, axis=0)).save(args.out, quality=90)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
