#!/usr/bin/env python3
"""Build the reproducible photo pool described by ``data/photo_pool.json``.

    python data/photo_pool.py [--out data/pool] [--cache data/cache] [--manifest data/photo_pool.json]
                              [--accept-changes] [--split NAME ...] [--update-manifest]

Every photograph comes from a pinned Debian bookworm package (fetched with ``apt-get download``,
read with ``dpkg-deb --fsys-tarfile``; nothing is installed) or from a pinned wheel of
scikit-image, matplotlib, scikit-learn or scipy (fetched with ``pip download --no-deps``).
Each selected file is checked against the sha256 in the manifest, decoded, turned into 8-bit RGB
(EXIF orientation applied, grey replicated), downscaled with Lanczos so that its long side is at
most 1024 px, and written as ``OUT/<split>/<file>`` (PNG). Each output is verified against the
manifest: ``pixels_sha256`` (the decoded pixels) must match; ``png_sha256`` (the file bytes)
normally matches too but depends on Pillow's PNG encoder and zlib, so a mismatch there with
identical pixels is only reported.

If the archive no longer carries a pinned version, or a downloaded file, a source file or an
output differs from the manifest, the script names every mismatch and exits with status 2,
unless ``--accept-changes`` is given (then it uses what the archive has now, still reports
every difference, and exits 0 so that the new state can be reviewed and, if wanted, recorded
with ``--update-manifest``).

Only the standard library, numpy and Pillow are used; ``apt-get``, ``dpkg-deb`` and ``pip`` must
be on PATH (and ``apt-get update`` must have been run once on a fresh Debian bookworm machine).
"""

from __future__ import annotations

import argparse
import bz2
import hashlib
import io
import json
import os
import pickle
import struct
import subprocess
import sys
import tarfile
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

Image.MAX_IMAGE_PIXELS = None  # some wallpapers are 5120x2880 and more; the sources are pinned by hash

HERE = Path(__file__).resolve().parent
MAX_SIDE = 1024
WHEEL_PLATFORM = ["--platform", "manylinux2014_x86_64", "--python-version", "3.11",
                  "--implementation", "cp", "--abi", "cp311"]


class PoolError(Exception):
    pass


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class Report:
    """Collects mismatches; decides at the end whether they are fatal."""

    def __init__(self, accept: bool):
        self.accept = accept
        self.problems: list[str] = []
        self.notes: list[str] = []

    def mismatch(self, msg: str) -> None:
        self.problems.append(msg)
        print(("CHANGED (accepted): " if self.accept else "MISMATCH: ") + msg, file=sys.stderr)

    def note(self, msg: str) -> None:
        self.notes.append(msg)
        print("note: " + msg, file=sys.stderr)


# ----------------------------------------------------------------------------- Debian packages

def deb_filename_version(version: str) -> str:
    return version.replace(":", "%3a")


def available_versions(pkg: str) -> list[str]:
    out = subprocess.run(["apt-cache", "madison", pkg], capture_output=True, text=True).stdout
    return [line.split("|")[1].strip() for line in out.splitlines() if "|" in line]


def fetch_deb(pkg: str, info: dict, cache: Path, report: Report) -> Path:
    """Return the path of the pinned .deb (downloaded into ``cache/deb`` unless already there)."""
    debdir = cache / "deb"
    debdir.mkdir(parents=True, exist_ok=True)
    version = info["version"]
    pattern = f"{pkg}_{deb_filename_version(version)}_*.deb"
    found = sorted(debdir.glob(pattern))
    if found and (not info["sha256"] or file_sha256(found[0]) == info["sha256"]):
        return found[0]  # an empty sha256 only occurs while a maintainer builds a new manifest
    for stale in found:
        stale.unlink()
    proc = subprocess.run(["apt-get", "download", f"{pkg}={version}"], cwd=debdir, capture_output=True, text=True)
    found = sorted(debdir.glob(pattern))
    if proc.returncode != 0 or not found:
        versions = available_versions(pkg)
        msg = (f"Debian package {pkg}: pinned version {version} is not available from the configured archive "
               f"(available: {', '.join(versions) or 'none'}; apt-get said: {proc.stderr.strip()[-300:]})")
        if not report.accept or not versions:
            report.mismatch(msg)
            raise PoolError(msg)
        report.mismatch(msg + f"; using {versions[0]}")
        proc = subprocess.run(["apt-get", "download", f"{pkg}={versions[0]}"], cwd=debdir, capture_output=True, text=True)
        found = sorted(debdir.glob(f"{pkg}_{deb_filename_version(versions[0])}_*.deb"))
        if proc.returncode != 0 or not found:
            raise PoolError(f"apt-get download {pkg}={versions[0]} failed: {proc.stderr.strip()[-300:]}")
    digest = file_sha256(found[0])
    if digest != info["sha256"]:
        report.mismatch(f"Debian package {pkg} {version}: {found[0].name} has sha256 {digest}, manifest says {info['sha256']}")
    return found[0]


def read_deb_members(deb: Path, wanted: set[str]) -> dict[str, bytes]:
    """Read the wanted paths (relative, e.g. ``usr/share/...``) from the package's data archive."""
    proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    out: dict[str, bytes] = {}
    links: dict[str, str] = {}
    assert proc.stdout is not None
    with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
        for member in tar:
            name = member.name[2:] if member.name.startswith("./") else member.name
            if name not in wanted:
                continue
            if member.issym() or member.islnk():
                links[name] = member.linkname
                continue
            f = tar.extractfile(member)
            if f is not None:
                out[name] = f.read()
    proc.wait()
    if proc.returncode != 0:
        raise PoolError(f"dpkg-deb --fsys-tarfile {deb} failed")
    if links:
        raise PoolError(f"{deb.name}: selected paths are links, list their targets instead: {sorted(links)}")
    return out


# ----------------------------------------------------------------------------- wheels

def fetch_wheel(name: str, info: dict, cache: Path, report: Report) -> Path:
    wheeldir = cache / "wheels"
    wheeldir.mkdir(parents=True, exist_ok=True)
    path = wheeldir / info["filename"]
    if path.is_file() and (not info["sha256"] or file_sha256(path) == info["sha256"]):
        return path
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", *WHEEL_PLATFORM,
           "-d", str(wheeldir), f"{name}=={info['version']}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 or not path.is_file():
        msg = f"wheel {name}=={info['version']} ({info['filename']}) could not be downloaded: {proc.stderr.strip()[-300:]}"
        report.mismatch(msg)
        raise PoolError(msg)
    digest = file_sha256(path)
    if digest != info["sha256"]:
        report.mismatch(f"wheel {info['filename']}: sha256 {digest}, manifest says {info['sha256']}")
    return path


# ----------------------------------------------------------------------------- decoders

def rcc_member(blob: bytes, inner: str) -> bytes:
    """One file from a Qt binary resource (.rcc) file, as GCompris ships its activities."""
    if blob[:4] != b"qres":
        raise PoolError("not a Qt resource file")
    version, tree, data, names = struct.unpack(">IIII", blob[4:20])
    entry_size = 14 if version == 1 else 22

    def name_at(off: int) -> str:
        n = struct.unpack(">H", blob[names + off:names + off + 2])[0]
        return blob[names + off + 6:names + off + 6 + 2 * n].decode("utf-16-be")

    parts = inner.strip("/").split("/")
    node = 0
    for depth, part in enumerate(parts):
        e = tree + node * entry_size
        flags = struct.unpack(">H", blob[e + 4:e + 6])[0]
        if not flags & 2:
            raise PoolError(f"rcc: {'/'.join(parts[:depth])} is not a directory")
        count, first = struct.unpack(">II", blob[e + 6:e + 14])
        for child in range(first, first + count):
            ce = tree + child * entry_size
            if name_at(struct.unpack(">I", blob[ce:ce + 4])[0]) == part:
                node = child
                break
        else:
            raise PoolError(f"rcc: {inner} not found")
    e = tree + node * entry_size
    flags = struct.unpack(">H", blob[e + 4:e + 6])[0]
    offset = data + struct.unpack(">I", blob[e + 10:e + 14])[0]
    length = struct.unpack(">I", blob[offset:offset + 4])[0]
    raw = blob[offset + 4:offset + 4 + length]
    if flags & 1:
        raw = zlib.decompress(raw[4:])
    elif flags & 4:
        raise PoolError(f"rcc: {inner} is zstd-compressed (not supported without extra modules)")
    return raw


class _NoGlobals(pickle.Unpickler):
    def find_class(self, module, name):  # scipy's ascent.dat is a pickled list of lists: no classes needed
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def decode(photo: dict, blob: bytes) -> Image.Image:
    kind = photo.get("decode", "image")
    if kind == "scipy_face":
        arr = np.frombuffer(bz2.decompress(blob), dtype=np.uint8).reshape(768, 1024, 3)
        return Image.fromarray(arr, "RGB")
    if kind == "scipy_ascent":
        arr = np.asarray(_NoGlobals(io.BytesIO(blob)).load())
        return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "L")
    im = Image.open(io.BytesIO(blob))
    im.load()
    return ImageOps.exif_transpose(im) or im


def to_rgb8(im: Image.Image, label: str) -> Image.Image:
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im, dtype=np.float64)
        im = Image.fromarray(np.clip(np.round(arr / 257.0), 0, 255).astype(np.uint8), "L")
    if im.mode == "P":
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA"):
        alpha = np.asarray(im.getchannel("A"))
        if alpha.min() < 255:
            raise PoolError(f"{label}: has transparent pixels; photos must be opaque")
        im = im.convert("RGB")
    return im.convert("RGB")


def downscale(im: Image.Image) -> Image.Image:
    w, h = im.size
    long_side = max(w, h)
    if long_side <= MAX_SIDE:
        return im
    scale = MAX_SIDE / long_side
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return im.resize(size, Image.Resampling.LANCZOS)


def pixels_sha256(im: Image.Image) -> str:
    return sha256(f"{im.size[0]}x{im.size[1]} RGB\n".encode() + im.tobytes())


def png_bytes(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG", compress_level=6, optimize=False)
    return buf.getvalue()


# ----------------------------------------------------------------------------- main build

def build(args: argparse.Namespace) -> int:
    manifest_path = Path(args.manifest)
    manifest = json.loads(manifest_path.read_text())
    report = Report(args.accept_changes or args.update_manifest)
    out, cache = Path(args.out), Path(args.cache)
    photos = [p for p in manifest["photos"] if not args.split or p["split"] in args.split]
    t0 = time.time()

    by_source: dict[tuple[str, str], list[dict]] = {}
    for p in photos:
        by_source.setdefault((p["source"]["type"], p["source"]["name"]), []).append(p)

    written = 0
    downloaded_bytes = 0
    for (kind, name), items in sorted(by_source.items()):
        try:
            if kind == "debian":
                info = manifest["debian_packages"][name]
                before = {f.name for f in (cache / "deb").glob("*.deb")} if (cache / "deb").is_dir() else set()
                archive = fetch_deb(name, info, cache, report)
                if archive.name not in before:
                    downloaded_bytes += archive.stat().st_size
            else:
                info = manifest["wheels"][name]
                existed = (cache / "wheels" / info["filename"]).is_file()
                archive = fetch_wheel(name, info, cache, report)
                if not existed:
                    downloaded_bytes += archive.stat().st_size
        except PoolError:  # already reported; go on so that every unavailable source is listed
            print(f"{kind} {name}: SKIPPED ({len(items)} photos)", flush=True)
            continue
        if kind == "debian":
            members = read_deb_members(archive, {p["source"]["path"] for p in items})
            if args.update_manifest:
                info["sha256"] = file_sha256(archive)
                info["size"] = archive.stat().st_size
                info["file"] = archive.name
        else:
            with zipfile.ZipFile(archive) as zf:
                members = {p["source"]["path"]: zf.read(p["source"]["path"]) for p in items}
            if args.update_manifest:
                info["sha256"] = file_sha256(archive)
                info["size"] = archive.stat().st_size
        for p in items:
            src = p["source"]
            label = f"{p['file']} ({name}:{src['path']}{'!' + src['member'] if src.get('member') else ''})"
            blob = members.get(src["path"])
            if blob is None:
                report.mismatch(f"{label}: source file missing from {archive.name}")
                continue
            if src.get("member"):
                blob = rcc_member(blob, src["member"])
            digest = sha256(blob)
            if args.update_manifest:
                p["source_sha256"] = digest
            elif digest != p["source_sha256"]:
                report.mismatch(f"{label}: source sha256 {digest}, manifest says {p['source_sha256']}")
            im = downscale(to_rgb8(decode(p, blob), label))
            data = png_bytes(im)
            pix, png = pixels_sha256(im), sha256(data)
            if args.update_manifest:
                p["pixels_sha256"], p["png_sha256"], p["size"] = pix, png, list(im.size)
            else:
                if pix != p["pixels_sha256"]:
                    report.mismatch(f"{label}: output pixels sha256 {pix}, manifest says {p['pixels_sha256']}")
                elif png != p["png_sha256"]:
                    report.note(f"{label}: PNG bytes differ from the manifest (different Pillow/zlib?) but the pixels are identical")
            dest = out / p["split"] / p["file"]
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_suffix(".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, dest)
            written += 1
        print(f"{kind} {name}: {len(items)} photos", flush=True)

    if args.update_manifest:
        manifest["built_with"] = {"python": sys.version.split()[0], "numpy": np.__version__,
                                  "pillow": Image.__version__ if hasattr(Image, "__version__") else "?"}
        manifest_path.write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")
        print(f"updated {manifest_path}")

    elapsed = time.time() - t0
    print(f"wrote {written} photos to {out} in {elapsed:.0f} s; downloaded {downloaded_bytes / 1e6:.0f} MB this run")
    if report.problems:
        print(f"{len(report.problems)} difference(s) from the manifest (see above)", file=sys.stderr)
        if not report.accept:
            print("the pool does not match the manifest; rerun with --accept-changes to build it anyway", file=sys.stderr)
            return 2
    elif not args.update_manifest:
        print("all outputs match the manifest")
    return 0


def credits(manifest: dict, splits: list[str]) -> str:
    """The credits table (Markdown) of the photos of ``splits``: file, split, licence, author and where it comes from."""
    lines = ["| photograph | split | licence | author | source |", "|---|---|---|---|---|"]
    for photo in manifest["photos"]:
        if photo["split"] not in splits:
            continue
        src = photo["source"]
        where = ("Debian package " if src["type"] == "debian" else "PyPI wheel ") + f"{src['name']}: {src['path']}"
        where += f" ({src['member']})" if src.get("member") else ""
        lines.append(f"| {photo['file']} | {photo['split']} | {photo['licence']} | {photo.get('author') or 'unknown'} | {where} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(HERE / "pool"), help="output folder (default: data/pool)")
    parser.add_argument("--cache", default=str(HERE / "cache"), help="download cache (default: data/cache)")
    parser.add_argument("--manifest", default=str(HERE / "photo_pool.json"), help="manifest (default: data/photo_pool.json)")
    parser.add_argument("--split", action="append", choices=["training", "validation", "heldout", "heldout2"],
                        help="build only this split (repeatable; default: all)")
    parser.add_argument("--accept-changes", action="store_true",
                        help="build even if the archive or the files differ from the manifest (differences are still listed)")
    parser.add_argument("--update-manifest", action="store_true",
                        help="maintainers: record the hashes of this build in the manifest instead of checking them")
    parser.add_argument("--credits", action="store_true",
                        help="print the credits table of the --split photos (default: all) as Markdown, build nothing")
    args = parser.parse_args(argv)
    if args.credits:
        try:
            manifest = json.loads(Path(args.manifest).read_text())
            table = credits(manifest, args.split or list(manifest["splits"]))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            print(f"error: {args.manifest}: not a readable photo-pool manifest ({type(exc).__name__}: {exc})", file=sys.stderr)
            return 2
        print(table, end="")
        return 0
    try:
        return build(args)
    except PoolError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
