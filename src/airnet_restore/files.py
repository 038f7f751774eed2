"""Which files a batch reads and where it writes: inputs from files, folders and globs, and every output
planned, resolved and checked before anything is written.

The rules (issue 34): an output is resolved through symlinks, ``..`` and folders that do not exist yet,
and refused if it lands outside the output folder or on another input; an existing file is replaced
only with ``overwrite`` (or skipped with ``skip_existing``); a file that is the planned output of another
input of the same run (a rerun into the input folder) is not restored again.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from airnet_restore.constants import IMAGE_SUFFIXES
from airnet_restore.errors import AirNetError
from airnet_restore.image_io import check_writable

Identity = tuple[int, int]


@dataclass
class Inputs:
    """Inputs found: (file, relative output) pairs, (item, reason) failures and (file, reason) skips."""

    pairs: list[tuple[Path, Path]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)


@dataclass
class Plan:
    """(input, output) jobs, (input, reason) refusals and (input, reason) skips, decided before any write."""

    jobs: list[tuple[Path, Path]] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)


def collect_inputs(inputs: Iterable[str | os.PathLike], outdir: str | os.PathLike | None = None) -> Inputs:
    """Expand files, folders and globs into (input, relative output) pairs.

    Folders are walked recursively for image files, skipping hidden files and folders (``._x.png``,
    ``.thumbnails/``). Folders keep their tree below the folder, globs below their fixed prefix
    (``shots/**/*.png`` writes ``shots/day1/z.png`` as ``day1/z.png``); a file is written by its name,
    as is a glob match outside its prefix (``in/*/../x.png``). Where the output folder lies inside a
    folder or glob tree, the files in it are skipped (and reported): they are likely earlier outputs.
    """
    found = Inputs()
    out = _real(Path(outdir)) if outdir is not None else None
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files = _walk_images(path)
            if not files:
                found.failed.append((str(item), f"no image files ({', '.join(IMAGE_SUFFIXES)}) in this folder"))
            _add_tree(found, path, files, out)
        elif path.is_file():
            found.pairs.append((path, Path(path.name)))
        elif path.exists():
            found.failed.append((str(item), "not a regular file (a FIFO, socket or device); give an image file"))
        else:
            matches = sorted(Path(m) for m in glob.glob(str(item), recursive=True) if Path(m).is_file())
            if not matches:
                found.failed.append((str(item), "no such file, folder or matching glob"))
            _add_tree(found, glob_prefix(str(item)), matches, out)
    return found


def _add_tree(found: Inputs, root: Path, files: list[Path], out: Path | None) -> None:
    """Add ``files`` under ``root`` with their path below it; those in an output folder strictly inside the tree skipped."""
    real_root = _real(root)
    inside = out if out is not None and out != real_root and out.is_relative_to(real_root) else None
    for f in files:
        if inside is not None and _real(f).is_relative_to(inside):
            found.skipped.append((f, f"inside the output folder {inside}; restore it separately if it is not an earlier output"))
            continue
        found.pairs.append((f, _below(f, root)))


def _below(path: Path, root: Path) -> Path:
    """``path`` relative to ``root`` with ``..`` folded; its name alone where it does not lie below ``root``."""
    rel = Path(os.path.normpath(path))
    base = Path(os.path.normpath(root))
    if base != Path(".") and not rel.is_relative_to(base):
        return Path(path.name)
    rel = rel.relative_to(base) if base != Path(".") else rel
    return rel if not rel.is_absolute() and ".." not in rel.parts else Path(path.name)


def glob_prefix(pattern: str) -> Path:
    """The leading folders of a glob pattern that hold no wildcard (``*``, ``?``, ``[``); ``.`` if none."""
    parts = Path(pattern).parts[:-1]
    fixed = next((i for i, part in enumerate(parts) if any(c in part for c in "*?[")), len(parts))
    return Path(*parts[:fixed]) if fixed else Path(".")


def _walk_images(root: Path) -> list[Path]:
    """Image files under ``root``, sorted; hidden names left out."""
    files = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        files += [Path(folder, n) for n in names if not n.startswith(".") and Path(n).suffix.lower() in IMAGE_SUFFIXES]
    return sorted(p for p in files if p.is_file())


def _real(path: Path) -> Path:
    """``path`` absolute with every symlink and ``..`` resolved, as far as it exists (the rest taken as written)."""
    return Path(os.path.realpath(path))


def file_identity(path: Path) -> Identity | None:
    """(device, inode) of an existing path: the same for every alias (symlink, bind mount, hard link)."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _slot(path: Path) -> tuple:
    """Where ``path`` would be written, alias-proof: the identity of its nearest existing ancestor plus the rest."""
    rest: list[str] = []
    path = path.absolute()
    while (ident := file_identity(path)) is None and path.parent != path:
        rest.append(path.name)
        path = path.parent
    return (ident, *reversed(rest))


def check_suffix(suffix: str) -> str:
    """Refuse a ``--suffix`` that would leave the output's folder or name nothing."""
    if any(c in suffix for c in ("/", "\\", "\0")) or suffix in (".", ".."):
        raise AirNetError(f"--suffix {suffix!r} must be part of a file name: no '/', '\\\\' or NUL")
    return suffix


def output_path(rel: Path, outdir: Path, suffix: str = "", ext: str | None = None) -> Path:
    """Where the input at ``rel`` (relative to its folder or glob) is written."""
    ext = (ext if ext.startswith(".") else f".{ext}") if ext else rel.suffix
    return outdir / rel.parent / f"{rel.stem}{suffix}{ext}"


def check_output_folder(outdir: str | os.PathLike, ext: str | None = None, suffix: str = "") -> Path:
    """Refuse, before any model is loaded, an output folder that is a file, an unwritable ``ext`` and a bad ``suffix``.

    Returns the folder to write into: as given, or resolved where it holds ``..`` (``w/new/..`` is ``w``,
    even while ``w/new`` does not exist).
    """
    outdir = Path(outdir)
    if ".." in outdir.parts:
        outdir = _real(outdir)
    if outdir.exists() and not outdir.is_dir():
        raise AirNetError(f"output folder {outdir} exists and is not a folder; give a folder with -o")
    if ext is not None and f".{ext.lstrip('.').lower()}" not in IMAGE_SUFFIXES:
        raise AirNetError(f"unsupported output extension {ext!r}; use one of {', '.join(IMAGE_SUFFIXES)}")
    check_suffix(suffix)
    return outdir


def plan_outputs(
    pairs: Sequence[tuple[Path, Path]],
    outdir: Path,
    *,
    suffix: str = "",
    ext: str | None = None,
    overwrite: bool = False,
    skip_existing: bool = False,
) -> Plan:
    """Decide every output before anything is written.

    Outputs are compared resolved (symlinks, ``..``) and by device and inode, so an alias of the input
    folder is caught. An output must lie inside ``outdir``; it may replace its own input or another
    existing file only with ``overwrite`` (``skip_existing`` skips it instead), another input never;
    two inputs with the same output are both refused; an input that is another input's planned output
    (``p_r.png`` beside ``p.png`` with ``--suffix _r``) is skipped.
    """
    outdir = check_output_folder(outdir, ext, suffix)
    root = _real(outdir)
    plan = Plan()
    planned = [(src, output_path(rel, outdir, suffix, ext)) for src, rel in pairs]
    ident_of = {src: file_identity(src) for src, _ in planned}
    real_of = {src: _real(src) for src, _ in planned}
    # an input that is, by path, another input's planned output (and not its own): an earlier output of a rerun
    own = {real_of[src] for src, dst in planned if _real(dst) == real_of[src]}
    earlier = {target: src for src, dst in planned if (target := _real(dst)) != real_of[src] and target not in own}
    inputs: dict[Identity, Path] = {}
    kept = []
    for src, dst in planned:
        if real_of[src] in earlier:
            plan.skipped.append((src, f"it is the output of {earlier[real_of[src]]} in this run; give it alone to restore it"))
            continue
        if (ident := ident_of[src]) is not None:
            inputs[ident] = src
        kept.append((src, dst))
    by_target: dict[tuple, list[tuple[Path, Path]]] = {}
    for src, dst in kept:
        reason = _refusal(src, dst, outdir, root, inputs, overwrite, skip_existing)
        if reason == "skip":
            plan.skipped.append((src, f"output {dst} exists (--skip-existing)"))
        elif reason:
            plan.refused.append((str(src), reason))
        else:
            by_target.setdefault(_slot(dst), []).append((src, dst))
    for group in by_target.values():
        if len({ident_of[src] for src, _ in group}) == 1:
            plan.jobs.append(group[0])  # one input named twice: restored once
            continue
        names = ", ".join(str(src) for src, _ in group)
        plan.refused += [(str(src), f"output {dst} would be written by {len(group)} inputs ({names}); use --suffix or separate runs")
                         for src, dst in group]
    return plan


def _refusal(src: Path, dst: Path, outdir: Path, root: Path, inputs: dict[Identity, Path], overwrite: bool,
             skip_existing: bool) -> str | None:
    """Why ``dst`` cannot be written for ``src``, "skip" to skip it, or None."""
    if not _real(dst).is_relative_to(root):
        return f"output {dst} would be written outside the output folder {outdir} (through a symlink or '..')"
    try:
        check_writable(dst)
    except AirNetError as e:
        return str(e)
    for parent in reversed(dst.relative_to(outdir).parents):
        folder = outdir / parent
        if folder.exists() and not folder.is_dir():
            return f"output folder {folder} is a file"
    if dst.is_dir():
        return f"output {dst} is a folder"
    if not dst.exists():
        return None
    if skip_existing:
        return "skip"
    ident = file_identity(dst)
    owner = inputs.get(ident) if ident is not None else None
    if owner is not None and file_identity(owner) != file_identity(src):
        return f"output {dst} is the input {owner}, which is never overwritten; choose another -o/--suffix/--ext"
    if overwrite:
        return None
    if owner is not None:
        return f"output {dst} would overwrite an input (its own); choose another -o/--suffix or pass --overwrite"
    return f"output {dst} exists and is not an input; pass --overwrite to replace it or --skip-existing to skip it"
