"""A picture of registered degradations: one row per degradation, several seeds side by side.

    python benchmarks/degradation_grid.py OUT.jpg clean noise_any rain_any haze_any ... \\
        [--photo data/pool/training/gcompris-explore-monuments-montstmichel.png] [--crop 192] [--seeds 5]

Row 1 of every block is drawn from seed 0, so the picture is reproducible.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from airnet_restore.data.aio import load_rgb8
from airnet_restore.degradations import get_degradation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("names", nargs="+", help="registered degradations (a+b composes)")
    parser.add_argument("--photo", type=Path, default=Path("data/pool/training/gcompris-explore-monuments-montstmichel.png"),
                        help="a clean photo (default: one of the photo pool's, python data/photo_pool.py --split training)")
    parser.add_argument("--crop", type=int, default=192)
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    photo = load_rgb8(args.photo)
    h, w = photo.shape[:2]
    c = args.crop
    # Degrade a 2x region around the centre (context for haze depth), then show its centre crop.
    region = photo[max(0, h // 2 - c) : h // 2 + c, max(0, w // 2 - c) : w // 2 + c]
    rh, rw = region.shape[:2]
    rows = []
    for name in args.names:
        fn = get_degradation(name)
        tiles = [fn(region, np.random.default_rng(seed)) for seed in range(args.seeds)]
        row = Image.fromarray(np.concatenate([t[(rh - c) // 2 : (rh + c) // 2, (rw - c) // 2 : (rw + c) // 2] for t in tiles], axis=1))
        ImageDraw.Draw(row).text((6, 4), name, fill=(255, 255, 0))
        rows.append(np.asarray(row))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(rows, axis=0)).save(args.out, quality=85)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
