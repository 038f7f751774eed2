"""Pictures of inspection results: the embedding of many images in two dimensions, and a region map."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont, PngImagePlugin

from airnet_restore.atomic import atomic_write
from airnet_restore.errors import AirNetError
from airnet_restore.inspection.results import Inspection

# Fixed colours for the usual types; others get one from the spare list, in order of appearance.
TYPE_COLOURS = {
    "clean": (90, 90, 90), "noise": (215, 48, 39), "rain": (69, 117, 180), "haze": (230, 171, 2),
    "haze+noise": (166, 86, 40), "rain+noise": (152, 78, 163), "haze+rain": (77, 175, 74), "haze+rain+noise": (0, 0, 0),
}
SPARE_COLOURS = [(102, 194, 165), (231, 41, 138), (27, 158, 119), (117, 112, 179), (217, 95, 2)]


def colours(types: Sequence[str]) -> dict[str, tuple[int, int, int]]:
    """A colour per type name."""
    spare = iter(SPARE_COLOURS * (len(types) // len(SPARE_COLOURS) + 1))
    return {t: TYPE_COLOURS.get(t) or next(spare) for t in dict.fromkeys(types)}


def project_2d(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """PCA to two dimensions of standardised features: (N, 2) coordinates and the two variance shares."""
    x = np.asarray(features, np.float64)
    if x.ndim != 2 or len(x) < 3:
        raise AirNetError(f"an embedding plot needs at least 3 images, got {len(x)}")
    z = (x - x.mean(0)) / np.maximum(x.std(0), 1e-9)
    _, s, vt = np.linalg.svd(z, full_matrices=False)
    var = s**2 / max(float((s**2).sum()), 1e-12)
    coords = z @ vt[:2].T
    coords *= np.where(coords.sum(0) < 0, -1.0, 1.0)  # a deterministic sign
    return coords, var[:2]


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one bitmap size
        return ImageFont.load_default()


def plot_embedding(
    features: np.ndarray,
    labels: Sequence[str],
    out: str | os.PathLike,
    *,
    levels: Sequence[float | None] | None = None,
    title: str = "CBDE embedding",
    size: int = 900,
) -> Path:
    """Scatter the images' embedding (PCA, 2-D) coloured by ``labels``; a ``level`` (e.g. sigma) sets the
    dot size, so strengths of one type line up. Writes a PNG atomically."""
    coords, var = project_2d(features)
    palette = colours(labels)
    lv = np.array([np.nan if v is None else float(v) for v in (levels if levels is not None else [None] * len(labels))])
    top_lv = np.nanmax(lv) if np.isfinite(lv).any() else 1.0
    margin, legend_w = 60, 200
    img = Image.new("RGB", (size + legend_w, size), "white")
    draw = ImageDraw.Draw(img)
    lo, hi = coords.min(0), coords.max(0)
    span = np.maximum(hi - lo, 1e-9)
    xy = margin + (coords - lo) / span * (size - 2 * margin)
    order = np.argsort([list(palette).index(lbl) for lbl in labels], kind="stable")
    for i in order:
        r = 4.0 + (6.0 * lv[i] / top_lv if np.isfinite(lv[i]) and top_lv > 0 else 0.0)
        x, y = xy[i, 0], size - xy[i, 1]
        draw.ellipse((x - r, y - r, x + r, y + r), fill=palette[labels[i]], outline="white")
    font, small = _font(18), _font(14)
    draw.text((margin, 15), title, fill="black", font=font)
    draw.text((margin, size - 30), f"PCA 1 ({var[0]:.0%} of the variance) ->", fill="black", font=small)
    draw.text((8, size - margin), f"PCA 2 ({var[1]:.0%}) ^", fill="black", font=small)
    counts = {t: list(labels).count(t) for t in palette}
    for k, (name, colour) in enumerate(palette.items()):
        y = margin + 28 * k
        draw.ellipse((size + 10, y, size + 24, y + 14), fill=colour)
        draw.text((size + 32, y - 2), f"{name} ({counts[name]})", fill="black", font=small)
    if np.isfinite(lv).any():
        draw.text((size + 10, margin + 28 * len(palette) + 10), "dot size: level\n(noise sigma)", fill="black", font=small)
    return _save(img, Path(out))


def write_region_map(out: str | os.PathLike, rgb: np.ndarray, result: Inspection, max_side: int = 1024) -> Path:
    """The image, dimmed, under a coloured tile per region with its type, and a legend; PNG, written atomically."""
    if result.regions is None:
        raise AirNetError("no region map: inspect with regions=True")
    grid = result.regions
    h, w = rgb.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    base = Image.fromarray(np.rint(np.clip(rgb, 0, 1) * 255).astype(np.uint8)).convert("RGB")
    base = base.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BILINEAR)
    names = [t for row in grid.types for t in row]
    palette = colours(sorted(set(names), key=lambda t: (t != "clean", t.count("+"), t)))
    overlay = Image.new("RGB", base.size)
    draw = ImageDraw.Draw(overlay)
    step = grid.region * scale
    for r, row in enumerate(grid.types):
        for c, name in enumerate(row):
            draw.rectangle((c * step, r * step, (c + 1) * step, (r + 1) * step), fill=palette[name])
    img = Image.blend(base, overlay, 0.45)
    legend_h = 26
    canvas = Image.new("RGB", (img.width, img.height + legend_h), "white")
    canvas.paste(img, (0, 0))
    draw = ImageDraw.Draw(canvas)
    x = 6
    font = _font(14)
    for name, colour in palette.items():
        draw.rectangle((x, img.height + 6, x + 14, img.height + 20), fill=colour)
        draw.text((x + 18, img.height + 5), name, fill="black", font=font)
        x += 28 + int(draw.textlength(name, font=font))
    return _save(canvas, Path(out))


# The PNG text chunk that marks a picture as this program's: only such a file is ever replaced by another.
MARK = ("Software", "airnet-restore inspect")


def check_picture_target(out: str | os.PathLike) -> Path:
    """Refuse a picture's file name that is not ``*.png``, is a folder, or is an existing file this program did
    not write (an input photo, say: ``inspect --plot *.png`` puts the first photo after ``--plot``)."""
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise AirNetError(f"{out}: pictures are written as PNG; name the file *.png")
    if out.is_dir():
        raise AirNetError(f"{out} is a folder; give a file name *.png")
    if out.exists() and not _ours(out):
        raise AirNetError(f"{out} exists and is not a picture written by airnet inspect; it is never replaced: choose another name")
    return out


def _ours(path: Path) -> bool:
    try:
        with Image.open(path) as im:
            return im.format == "PNG" and im.info.get(MARK[0]) == MARK[1]
    except (OSError, ValueError, SyntaxError):
        return False


def _save(img: Image.Image, out: Path) -> Path:
    check_picture_target(out)
    info = PngImagePlugin.PngInfo()
    info.add_text(*MARK)
    try:
        return atomic_write(out, lambda tmp: img.save(tmp, format="PNG", pnginfo=info))
    except OSError as e:
        raise AirNetError(f"{out}: cannot write: {e.strerror or e}") from None
