"""Stack the input | output | target strips that ``airnet eval --grid`` saved into one picture.

    python benchmarks/report_grid.py EVAL_DIR METHOD IMAGE_STEM OUT.jpg [--crop 256]

One row per task (degradation), centre crops of ``--crop`` pixels from each panel.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("eval_dir", type=Path)
    parser.add_argument("method")
    parser.add_argument("stem")
    parser.add_argument("out", type=Path)
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--tasks", help="comma list of task folders (default: all, sorted)")
    args = parser.parse_args()
    root = args.eval_dir / "images" / args.method
    tasks = args.tasks.split(",") if args.tasks else sorted(p.name for p in root.iterdir())
    rows = []
    for task in tasks:
        strip = np.asarray(Image.open(root / task / f"grid_{args.stem}.png").convert("RGB"))
        w = strip.shape[1] // 3
        panels = []
        for i in range(3):
            p = strip[:, i * w : (i + 1) * w]
            top, left = max(0, (p.shape[0] - args.crop) // 2), max(0, (p.shape[1] - args.crop) // 2)
            panels.append(p[top : top + args.crop, left : left + args.crop])
        row = Image.fromarray(np.concatenate(panels, axis=1))
        ImageDraw.Draw(row).text((6, 4), f"{task}: input | {args.method} | clean", fill=(255, 255, 0))
        rows.append(np.asarray(row))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(rows, axis=0)).save(args.out, quality=90)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
