"""Assemble a photo folder for ``airnet eval --heldout DIR`` from one split of the project's photo pool.

    python data/photo_pool.py --split heldout                       # once: build the split
    python benchmarks/heldout_photos.py OUT_DIR [--split heldout] [--photos DIR] [--manifest FILE]

Copies the photos of one split of the photo pool (data/README.md; default ``heldout``, whose
sources no weights were trained or tuned on) from ``data/pool/<split>`` (or ``--photos``) into
OUT_DIR, checks that every photo the manifest lists for the split is there and is the file it
lists (sha256 of its pixels), and writes ``SOURCES.md`` with each file's source, author and licence
from ``data/photo_pool.json``. Nothing is downloaded. ``airnet eval --heldout data/pool/heldout``
reads the split in place; this script makes a self-contained copy with its credits.

The held-out splits are looked at once per release (``heldout``) or exactly once per release
(``heldout2``); choices are made on ``training`` and ``validation`` only (data/README.md, Rules).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from PIL import Image

from airnet_restore.atomic import atomic_write
from airnet_restore.errors import AirNetError

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "data" / "photo_pool.json"
POOL = ROOT / "data" / "pool"


def build_command(split: str, folder: Path | None = None) -> str:
    """The command that builds ``split`` of the photo pool into ``folder`` (default ``data/pool/<split>``)."""
    out = "" if folder is None or folder.resolve() == (POOL / split).resolve() else f" --out {folder.parent}"
    return f"python data/photo_pool.py --split {split}{out}"


def split_photos(manifest: Path, split: str) -> list[dict[str, Any]]:
    """The manifest's entries of ``split``, in file-name order; an unknown split is a one-line error."""
    if not manifest.is_file():
        raise AirNetError(f"photo pool manifest not found: {manifest}")
    data = json.loads(manifest.read_text())
    if split not in data["splits"]:
        raise AirNetError(f"unknown split {split!r}: the photo pool has {', '.join(data['splits'])}")
    return sorted((p for p in data["photos"] if p["split"] == split), key=lambda p: p["file"])


def describe_source(source: dict[str, Any]) -> str:
    """One line naming where a photo was taken from (package or wheel, path, resource member)."""
    kind = "Debian package" if source["type"] == "debian" else "wheel"
    where = f"{kind} {source['name']}: `{source['path']}`"
    return f"{where} (`{source['member']}`)" if source.get("member") else where


def pixels_sha256(path: Path) -> str:
    """sha256 of a photo's decoded pixels as data/photo_pool.py computes it (``"WxH RGB\\n"`` + RGB bytes)."""
    with Image.open(path) as im:
        rgb = im.convert("RGB")
        return hashlib.sha256(f"{rgb.size[0]}x{rgb.size[1]} RGB\n".encode() + rgb.tobytes()).hexdigest()


def assemble(out_dir: Path, split: str = "heldout", photos: Path | None = None, manifest: Path = MANIFEST) -> list[Path]:
    """Copy the photos of ``split`` into ``out_dir`` and write SOURCES.md; returns the image paths.

    ``photos`` is the split's folder (default ``data/pool/<split>``). A missing folder or photo, or a
    photo whose pixels differ from the manifest's, is a one-line ``AirNetError`` naming the command
    that builds the split; nothing is written then.
    """
    entries = split_photos(manifest, split)
    folder = POOL / split if photos is None else photos
    if not folder.is_dir():
        raise AirNetError(f"photo folder not found: {folder}; build it with `{build_command(split, folder)}`")
    missing = [e["file"] for e in entries if not (folder / e["file"]).is_file()]
    if missing:
        raise AirNetError(f"{folder}: {len(missing)} of the {len(entries)} {split} photos are missing "
                          f"(first: {missing[0]}); build them with `{build_command(split, folder)}`")
    changed = [e["file"] for e in entries if pixels_sha256(folder / e["file"]) != e["pixels_sha256"]]
    if changed:
        raise AirNetError(f"{folder}: {len(changed)} {split} photos differ from data/photo_pool.json "
                          f"(first: {changed[0]}); rebuild them with `{build_command(split, folder)}`")
    out_dir.mkdir(parents=True, exist_ok=True)
    written, rows = [], []
    for e in entries:
        src = folder / e["file"]
        written.append(atomic_write(out_dir / e["file"], lambda p, s=src: shutil.copyfile(s, p)))
        author = e.get("author", "").replace("|", "/")
        rows.append(f"| {e['file']} | {describe_source(e['source'])} | {author} | {e['licence']} |")
    table = "\n".join(["| file | source | author | licence |", "|---|---|---|---|", *rows])
    text = (f"# Photos of the photo pool's {split} split\n\nMade by `benchmarks/heldout_photos.py` from "
            f"`data/photo_pool.json` ({len(entries)} photos).\n\n{table}\n")
    atomic_write(out_dir / "SOURCES.md", lambda p: p.write_text(text))
    return written


def main(argv: list[str] | None = None) -> int:
    """Command line: returns the exit status (2 with a one-line reason on a user error)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path, help="folder to create (e.g. runs/heldout-photos, git-ignored)")
    parser.add_argument("--split", default="heldout", help="split of the photo pool (default: heldout)")
    parser.add_argument("--photos", type=Path, help="the split's folder (default: data/pool/<split>)")
    parser.add_argument("--manifest", type=Path, default=MANIFEST, help="the pool's manifest (default: data/photo_pool.json)")
    args = parser.parse_args(argv)
    try:
        written = assemble(args.out_dir, args.split, args.photos, args.manifest)
    except AirNetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {len(written)} photos and SOURCES.md to {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
