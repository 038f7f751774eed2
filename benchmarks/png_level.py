"""Seconds and bytes of writing a PNG at each zlib level: what ``PNG_COMPRESS_LEVEL`` (``constants.py``) trades.

    python benchmarks/png_level.py [--size 1000] [--repeats 3] [IMAGE ...]

Without images it uses scikit-image's astronaut and coffee resized to ``--size`` square (photos without noise,
as a restored one is). 8-bit images are encoded as ``write_image`` encodes them (Pillow), 16-bit ones as it
encodes those (OpenCV, the same pixels times 257); the fastest of ``--repeats`` encodings into memory.
"""

from __future__ import annotations

import argparse
import io
import time
from collections.abc import Callable

import cv2
import numpy as np
from PIL import Image

from airnet_restore.constants import PNG_COMPRESS_LEVEL

LEVELS = (1, 2, 3, 4, 6, 9)


def sample_photos(size: int) -> dict[str, np.ndarray]:
    from skimage import data, transform

    return {name: (transform.resize(getattr(data, name)(), (size, size), anti_aliasing=True) * 255).round().astype(np.uint8)
            for name in ("astronaut", "coffee")}


def pillow_png(rgb: np.ndarray, level: int | None) -> bytes:
    """None: Pillow's own default (level 6)."""
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="PNG", **({} if level is None else {"compress_level": level}))
    return out.getvalue()


def opencv_png_16(rgb: np.ndarray, level: int | None) -> bytes:
    """None: OpenCV's own default (what 16-bit outputs were written with before ``PNG_COMPRESS_LEVEL``)."""
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb.astype(np.uint16) * 257, cv2.COLOR_RGB2BGR),
                           [] if level is None else [cv2.IMWRITE_PNG_COMPRESSION, level])
    assert ok
    return buf.tobytes()


def fastest(encode: Callable[[np.ndarray, int | None], bytes], rgb: np.ndarray, level: int | None, repeats: int) -> tuple[float, int]:
    times, size = [], 0
    for _ in range(repeats):
        start = time.perf_counter()
        size = len(encode(rgb, level))
        times.append(time.perf_counter() - start)
    return min(times), size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("images", nargs="*", help="RGB images to encode (default: two scikit-image photos)")
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    photos = ({p: np.asarray(Image.open(p).convert("RGB")) for p in args.images} if args.images
              else sample_photos(args.size))
    print(f"PNG_COMPRESS_LEVEL = {PNG_COMPRESS_LEVEL}; fastest of {args.repeats}")
    print("| image | depth | level | seconds | MB | size / level 6 |")
    print("|---|---|---|---|---|---|")
    for name, rgb in photos.items():
        for depth, encode in (("8-bit (Pillow)", pillow_png), ("16-bit (OpenCV)", opencv_png_16)):
            rows = {level: fastest(encode, rgb, level, args.repeats) for level in (*LEVELS, None)}
            for level, (seconds, size) in rows.items():
                print(f"| {name} {rgb.shape[1]}x{rgb.shape[0]} | {depth} | {'default' if level is None else level} | {seconds:.3f} | {size / 1e6:.2f} "
                      f"| {size / rows[6][1]:.3f} |")


if __name__ == "__main__":
    main()
