"""Folder layouts: the paper's training and test sets, and a user's own folders.

Every reader lists files sorted, ignores hidden and non-image files (``.DS_Store``...),
and raises ``AirNetError`` saying which folder is missing and what it must contain.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from airnet_restore.constants import IMAGE_SUFFIXES
from airnet_restore.errors import AirNetError


@dataclass(frozen=True)
class Pair:
    """A degraded image and its clean target."""

    degraded: Path
    clean: Path


def _match(degraded: list[Path], find) -> tuple[list[Pair], list[Path]]:
    """Pair each degraded file with ``find(file)``; (pairs, files whose partner is missing)."""
    pairs, missing = [], []
    for d in degraded:
        c = find(d)
        if c is None:
            missing.append(d)
        else:
            pairs.append(Pair(d, c))
    return pairs, missing


# The command that builds the photo pool's splits the presets read (data/README.md), run from the repository root.
POOL_COMMAND = "python data/photo_pool.py --split training --split validation"


def _require_dir(folder: Path, what: str) -> Path:
    if not folder.is_dir():
        where = "" if folder.is_absolute() else f", relative to {Path.cwd()}"
        parts = folder.parts
        if any(parts[i : i + 2] == ("data", "pool") for i in range(len(parts) - 1)):  # a split of the photo pool
            raise AirNetError(f"folder not found: {folder}{where}: build the photo pool first with `{POOL_COMMAND}` "
                              "(from the repository root)")
        raise AirNetError(f"folder not found: {folder}{where} (it must contain {what})")
    return folder


def list_images(folder: str | Path, recursive: bool = False, what: str = "images") -> list[Path]:
    """Sorted image files of ``folder``; a missing or empty folder is a clear error."""
    folder = _require_dir(Path(folder), what)
    walk = folder.rglob("*") if recursive else folder.iterdir()
    files = sorted(p for p in walk if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise AirNetError(f"no image files in {folder} (it must contain {what})")
    return files


def clean_folder(root: str | Path) -> list[Path]:
    """A folder of clean images, subfolders included (as ``airnet restore`` reads folders):
    the denoising training set (BSD400 + WED), BSD68 / Urban100, or a user's photos."""
    return list_images(root, recursive=True, what="clean images (e.g. BSD400 + WED for training, BSD68 or Urban100 for testing)")


def paired_folders(degraded_dir: str | Path, clean_dir: str | Path) -> tuple[list[Pair], list[Path]]:
    """Match degraded and clean images by file name, else by stem: (pairs, degraded files without a match)."""
    degraded = list_images(degraded_dir, what="degraded images")
    clean = list_images(clean_dir, what="clean images matching the degraded ones by name")
    by_name = {p.name: p for p in clean}
    by_stem = {p.stem: p for p in clean}
    return _match(degraded, lambda d: by_name.get(d.name) or by_stem.get(d.stem))


def rain100l(root: str | Path) -> tuple[list[Pair], list[Path]]:
    """Rain100L test layout (and any ``input/`` + ``target/`` pair folder): same names in both."""
    root = Path(root)
    return paired_folders(root / "input", root / "target")


def derain_train(root: str | Path) -> tuple[list[Pair], list[Path]]:
    """Official derain training layout: ``rainy/rain-N.png`` with ``gt/norain-N.png``."""
    root = Path(root)
    rainy = list_images(root / "rainy", what="rain-N.png files (Rain100L training set)")
    gt_dir = _require_dir(root / "gt", "norain-N.png for every rainy/rain-N.png")
    return _match(rainy, lambda r: gt_dir / f"no{r.name}" if (gt_dir / f"no{r.name}").is_file() else None)


HAZY_NAME = re.compile(r"^(?P<id>[^_]+)_(?P<A>[0-9.]+)_(?P<beta>[0-9.]+)$")


def _hazy_target(hazy: Path, folder: Path, suffixes: tuple[str, ...]) -> Path | None:
    m = HAZY_NAME.match(hazy.stem)
    if not m:
        return None
    for suffix in suffixes:
        candidate = folder / f"{m['id']}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def dehaze_train(root: str | Path) -> tuple[list[Pair], list[Path]]:
    """Official dehaze training layout (RESIDE OTS): ``synthetic/partK/{id}_{A}_{beta}.jpg`` with ``original/{id}.jpg``."""
    root = Path(root)
    hazy = list_images(root / "synthetic", recursive=True, what="part1..part4/{id}_{A}_{beta}.jpg (RESIDE OTS)")
    original = _require_dir(root / "original", "{id}.jpg for every synthetic/partK/{id}_A_beta.jpg")
    return _match(hazy, lambda h: _hazy_target(h, original, (h.suffix, ".jpg", ".png")))


def sots(root: str | Path) -> tuple[list[Pair], list[Path]]:
    """SOTS-outdoor test layout: ``input/{id}_{A}_{beta}.jpg`` with ``target/{id}.png``."""
    root = Path(root)
    hazy = list_images(root / "input", what="hazy {id}_{A}_{beta}.jpg files (SOTS-outdoor)")
    target = _require_dir(root / "target", "{id}.png for every input/{id}_A_beta.jpg")
    return _match(hazy, lambda h: _hazy_target(h, target, (".png", ".jpg", h.suffix)))


PAIRED_LAYOUTS = {
    "paired": rain100l,
    "rain100l": rain100l,
    "derain-train": derain_train,
    "dehaze-train": dehaze_train,
    "sots": sots,
}
LAYOUTS = ("clean", *PAIRED_LAYOUTS)


def read_layout(root: str | Path, layout: str) -> tuple[list[Pair] | list[Path], list[Path]]:
    """(pairs or clean files, files without a partner) of ``root`` read as ``layout``."""
    if layout not in LAYOUTS:
        raise AirNetError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    return (clean_folder(root), []) if layout == "clean" else read_pairs(root, layout)


def read_pairs(root: str | Path, layout: str) -> tuple[list[Pair], list[Path]]:
    """(pairs, degraded files without a target) of ``root`` read as the paired ``layout``."""
    if layout not in PAIRED_LAYOUTS:
        raise AirNetError(f"unknown paired layout {layout!r}; choose one of {', '.join(PAIRED_LAYOUTS)}")
    return PAIRED_LAYOUTS[layout](root)
