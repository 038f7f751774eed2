"""Assemble the held-out photo folder for ``airnet eval --heldout DIR``: photos no weights train on.

    python benchmarks/heldout_photos.py OUT_DIR [--photos ../shared/data/photos]

Copies the 6 validation photos of the project's photo set (excluded from every training
config) and writes the bundled scikit-image sample photos that are neither in that set's
training split nor duplicates of it, as 8-bit RGB PNGs (grey replicated), with
``SOURCES.md`` giving each file's origin and licence. Nothing is downloaded. The picture of
the held-out family in ``docs/`` comes from ``benchmarks/degradation_grid.py``.

Bundled scikit-image photos left out: ``astronaut``, ``chelsea`` and ``rocket`` (in the
training split), ``coffee`` (a validation photo already), ``hubble_deep_field`` (almost all
black: clipping dominates noise statistics, haze and rain are meaningless there),
``motorcycle_left`` (Middlebury 2014 stereo; scikit-image states no licence for it), and
textures, drawings and scans (brick, grass, gravel, text, page, chessboard, ...).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from airnet_restore.atomic import atomic_write
from airnet_restore.errors import AirNetError

VALIDATION = (  # the validation split of ../shared/data/photos, excluded by every training config
    "Storm.png", "LadyBird.png", "coffee.png", "friends_by_Aitzol_Berasategi.png", "Path.png", "Bridge_by_Sander_Klootwijk.png",
)
# scikit-image loader -> licence, as its docstring states it
SKIMAGE = {
    "camera": "CC0 (photographer Lav Varshney); grey, stored as RGB",
    "immunohistochemistry": "no known copyright restrictions (Center for Microscopy And Molecular Imaging)",
    "retina": "CC0 1.0 (Mikael Häggström, Wikimedia Commons)",
}


def assemble(out_dir: Path, photos: Path) -> list[Path]:
    """Write the held-out photos and SOURCES.md into ``out_dir``; returns the image paths."""
    import skimage.data

    sources_file = photos / "sources.json"
    if not sources_file.is_file():
        raise AirNetError(f"{photos}: no sources.json; give --photos the project's photo folder")
    sources = json.loads(sources_file.read_text())
    out_dir.mkdir(parents=True, exist_ok=True)
    written, rows = [], []
    for name in VALIDATION:
        src = photos / name
        if not src.is_file():
            raise AirNetError(f"validation photo not found: {src}")
        written.append(atomic_write(out_dir / name, lambda p, s=src: shutil.copyfile(s, p)))
        info = sources[src.stem]
        rows.append(f"| {name} | project validation photo: {info['source']} | {info['licence']} |")
    for loader, licence in SKIMAGE.items():
        img = np.asarray(getattr(skimage.data, loader)())
        rgb = np.repeat(img[:, :, None], 3, axis=2) if img.ndim == 2 else img[:, :, :3]
        name = f"skimage_{loader}.png"
        written.append(atomic_write(out_dir / name, lambda p, a=rgb: Image.fromarray(a).save(p, format="PNG")))
        rows.append(f"| {name} | scikit-image {skimage.__version__} `skimage.data.{loader}()` (bundled) | {licence} |")
    table = "\n".join(["| file | source | licence |", "|---|---|---|", *rows])
    text = f"# Held-out photos (never trained on)\n\nMade by `benchmarks/heldout_photos.py`.\n\n{table}\n"
    atomic_write(out_dir / "SOURCES.md", lambda p: p.write_text(text))
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path, help="folder to create (e.g. runs/heldout-photos, git-ignored)")
    parser.add_argument("--photos", type=Path, default=Path("../shared/data/photos"), help="the project's photo folder")
    args = parser.parse_args()
    written = assemble(args.out_dir, args.photos)
    for path in written:
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
