"""``airnet eval``: the paper's protocol on named test sets, baselines side by side, tables to compare.

A *set* is given as ``NAME=PATH``:

- ``bsd68``, ``urban100``: a clean folder; noisy inputs at sigma 15, 25 and 50 from one
  seeded NumPy stream (seed 0, files sorted), truncated to uint8, as the official test.
- ``bsd68-sv``: a clean folder with spatially variant noise (paper Table 6).
- ``rain100l`` / ``paired``: ``input/`` + ``target/`` with matching names.
- ``sots``: SOTS-outdoor (``input/{id}_{A}_{beta}.jpg`` + ``target/{id}.png``).
- any registered degradation (``noise25``, ``rain``, ``haze``, ``haze+noise15``...): a clean
  folder degraded deterministically with that degradation.
- ``clean``: a clean folder given as input unchanged: how much each method damages good photos.
  The identity is not scored there (its PSNR would be inf, making every mean inf).

``heldout_sets(DIR)`` is the held-out protocol (``airnet eval --heldout DIR``): ``clean`` and
the ``ho_*`` degradations of ``degradations/heldout.py``, which no training code uses.

Each set gives one or more tasks (table columns); methods are the rows, two for each weights
(``model_rows``: the network alone and with the post-filter). Beside each mean the report keeps
what a mean hides (``Spread``): the median, the worst photo and the photos the method harmed.
"""

from __future__ import annotations

import csv
import json
import math
import os
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from airnet_restore.atomic import atomic_write, check_can_write
from airnet_restore.baselines import cbm3d, cbm3d_blind, dehaze_dcp, nlm, wavelet
from airnet_restore.data.aio import load_rgb8, synthetic_pairs
from airnet_restore.data.layouts import clean_folder, read_pairs
from airnet_restore.degradations import HELDOUT_KINDS, REGISTRY, official_test_noise, spatially_variant_noise
from airnet_restore.errors import AirNetError
from airnet_restore.inference.pipeline import Model, restore_tensor
from airnet_restore.metrics import Protocol, average, centre_crop, crop_to_multiple, psnr

NOISE_SETS = ("bsd68", "urban100")
PAIRED_SETS = {"rain100l": "rain100l", "paired": "paired", "sots": "sots"}
# registered degradation -> (task kind, noise sigma): the held-out family and the paper's own
DEGRADATION_KINDS: dict[str, tuple[str, float | None]] = {
    "noise15": ("noise", 15.0), "noise25": ("noise", 25.0), "noise50": ("noise", 50.0),
    "rain": ("rain", None), "haze": ("haze", None), **HELDOUT_KINDS,
}


MAX_SEED = 2**32 - 1  # NumPy's RandomState takes seeds up to here
# option -> (lowest, highest) allowed value
OPTION_RANGES: dict[str, tuple[int, int]] = {
    "crop": (16, 65536), "seed": (0, MAX_SEED), "crop_border": (0, 1024), "grid": (0, 1_000_000), "tile_overlap": (0, 1024),
}


def check_options(**values: int | None) -> None:
    """Refuse an option of ``OPTION_RANGES`` out of its range (None: not given), before any image is read."""
    for name, value in values.items():
        low, high = OPTION_RANGES[name]
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high):
            raise AirNetError(f"{name} must be an integer from {low:,} to {high:,}, got {value!r}")


def check_out_folder(out: str | os.PathLike) -> Path:
    """``out`` if results can be written there: a folder that exists or can be made, and takes new files.
    Checked before any image is read or model loaded; nothing is left behind."""
    out = Path(out)
    check_can_write(out, f"output folder {out}")
    return out


@dataclass
class Task:
    """One table column: named (degraded, clean) uint8 RGB image pairs, and the noise sigma if known."""

    label: str
    names: list[str]
    degraded: list[np.ndarray]
    clean: list[np.ndarray]
    sigma: float | None = None
    kind: str = "other"  # clean, noise, rain, haze, haze+noise, rain+noise or other: picks the baselines


def _crop(a: np.ndarray, protocol: Protocol, crop: int | None) -> np.ndarray:
    """HxWxC ``a`` centre-cropped to ``crop`` (if given), then as the protocol says."""
    t = torch.from_numpy(a).permute(2, 0, 1)
    if crop:
        t = centre_crop(t, crop, crop)
    if protocol.crop_base:
        t = crop_to_multiple(t, protocol.crop_base)
    return np.ascontiguousarray(t.permute(1, 2, 0).numpy())


def _select(files: list[Path], include: Sequence[str], folder: Path) -> list[Path]:
    if not include:
        return files
    missing = sorted(set(include) - {f.name for f in files})
    if missing:
        raise AirNetError(f"files not found in {folder}: {', '.join(missing)}")
    return [f for f in files if f.name in set(include)]


def build_tasks(
    name: str, path: str | Path, protocol: Protocol, crop: int | None = None, include: Sequence[str] = (), seed: int = 0
) -> list[Task]:
    """The tasks of one ``NAME=PATH`` set: inputs cropped as the protocol says, then degraded from ``seed``
    (0: the paper's noise); training validation builds its pairs here too."""
    check_options(crop=crop, seed=seed)
    path = Path(path)
    label = path.name if name in ("paired",) else name
    if name in NOISE_SETS or name in ("bsd68-sv", "clean") or name in REGISTRY or "+" in name:
        files = _select(clean_folder(path), include, path)
        cleans = [_crop(load_rgb8(f), protocol, crop) for f in files]
        names = [f.name for f in files]
        if name == "clean":
            return [Task("clean", names, [c.copy() for c in cleans], cleans, kind="clean")]
        if name in NOISE_SETS:
            noisy = official_test_noise(cleans, seed=seed)
            return [Task(f"{name} s{int(s)}", names, noisy[s], cleans, float(s), "noise") for s in noisy]
        if name == "bsd68-sv":
            rng = np.random.RandomState(seed)
            return [Task("bsd68 spatially variant", names, [spatially_variant_noise(c, rng) for c in cleans], cleans)]
        kind, sigma = DEGRADATION_KINDS.get(name, ("other", None))
        return [Task(name, names, [d for d, _ in synthetic_pairs(cleans, name, seed)], cleans, sigma, kind)]
    if name in PAIRED_SETS:
        pairs, missing = read_pairs(path, PAIRED_SETS[name])
        if missing:
            raise AirNetError(f"{path}: {len(missing)} input(s) without a target, e.g. {missing[0]}")
        pairs = [p for p in pairs if not include or p.degraded.name in set(include)]
        degraded, cleans = [], []
        for p in pairs:
            d, c = load_rgb8(p.degraded), load_rgb8(p.clean)
            if d.shape != c.shape:
                raise AirNetError(f"{p.degraded}: size {d.shape[:2]} differs from its target {c.shape[:2]}")
            degraded.append(_crop(d, protocol, crop))
            cleans.append(_crop(c, protocol, crop))
        return [Task(label, [p.degraded.name for p in pairs], degraded, cleans, kind="haze" if name == "sots" else "other")]
    known = [*NOISE_SETS, "bsd68-sv", "clean", *PAIRED_SETS, *REGISTRY]
    raise AirNetError(f"unknown test set {name!r}; use one of {', '.join(known)} (or a composition like haze+noise15)")


Method = Callable[[np.ndarray, Task], np.ndarray]  # uint8 degraded -> float restored in [0, 1]
Row = tuple[Method, Callable[[Task], bool]]  # a table row: the method and which tasks it applies to

# restore_tensor's options for the network's output exactly, as training validation scores it
NETWORK_ALONE: dict[str, Any] = {"postfilter": "none"}


def model_method(model: Model, **options: Any) -> Method:
    """``restore_tensor`` with ``options`` as a method."""
    def run(degraded: np.ndarray, task: Task) -> np.ndarray:  # noqa: ARG001
        x = torch.from_numpy(degraded).permute(2, 0, 1).float() / 255.0
        return restore_tensor(model, x, **options).permute(1, 2, 0).numpy()

    return run


def model_rows(name: str, model: Model, post: dict[str, Any] | None = None, post_label: str = "+post-filter",
               **common: Any) -> dict[str, Row]:
    """The two rows of one weights: ``NAME (network)``, the network alone, and ``NAME (+post-filter)``, restored
    as ``airnet restore`` does. ``common`` (tiling) applies to both, ``post`` (strength, anchor) to the second."""
    return {
        f"{name} (network)": (model_method(model, **common, **NETWORK_ALONE), lambda _task: True),
        f"{name} ({post_label})": (model_method(model, **common, **(post or {})), lambda _task: True),
    }


def identity(degraded: np.ndarray, task: Task) -> np.ndarray:  # noqa: ARG001
    return degraded.astype(np.float32) / 255.0


def cbm3d_method(degraded: np.ndarray, task: Task) -> np.ndarray:
    """CBM3D told the true noise sigma (applies only to tasks that know it)."""
    if task.sigma is None:
        raise ValueError(f"task {task.label!r} has no known noise sigma for CBM3D")
    return cbm3d(degraded.astype(np.float64) / 255.0, task.sigma)


def _on_float(fn: Callable[[np.ndarray], np.ndarray]) -> Method:
    """A blind float-in-[0, 1] restorer as a method (it ignores the task)."""
    return lambda degraded, task: fn(degraded.astype(np.float64) / 255.0)  # noqa: ARG005


DENOISE_KINDS = ("noise", "haze+noise", "rain+noise", "clean")  # clean: the damage a denoiser does to good photos
DEHAZE_KINDS = ("haze", "haze+noise", "clean")

# short name -> (table row name, method, which tasks it applies to); '-' in the table where it does not
BASELINES: dict[str, tuple[str, Method, Callable[[Task], bool]]] = {
    "identity": ("input (identity)", identity, lambda t: t.kind != "clean"),  # input = target there: PSNR inf
    "cbm3d": ("CBM3D (true sigma)", cbm3d_method, lambda t: t.kind in DENOISE_KINDS and t.sigma is not None),
    "cbm3d-est": ("CBM3D (estimated sigma)", _on_float(cbm3d_blind), lambda t: t.kind in DENOISE_KINDS),
    "wavelet": ("wavelet BayesShrink", _on_float(wavelet), lambda t: t.kind in DENOISE_KINDS),
    "nlm": ("non-local means", _on_float(nlm), lambda t: t.kind in DENOISE_KINDS),
    "dcp": ("dark channel prior", _on_float(dehaze_dcp), lambda t: t.kind in DEHAZE_KINDS),
    "wavelet+dcp": ("wavelet + DCP", _on_float(lambda x: dehaze_dcp(wavelet(x))), lambda t: t.kind == "haze+noise"),
}


def baseline_methods(keys: Sequence[str]) -> dict[str, Row]:
    """The named baselines as table rows (``all`` = every one); an unknown name is an ``AirNetError``."""
    keys = [k for key in keys for k in (BASELINES if key == "all" else [key])]
    unknown = [k for k in keys if k not in BASELINES]
    if unknown:
        raise AirNetError(f"unknown baseline {', '.join(map(repr, unknown))}; choose from {', '.join(BASELINES)}")
    return {BASELINES[k][0]: BASELINES[k][1:] for k in keys}


HARM_MARGIN_DB = 0.5  # a photo is harmed when it comes out more than this worse than its input...
CLEAN_FLOOR_DB = 40.0  # ...or, where the input is its own reference (a clean photo), below this


def is_harmed(psnr_db: float, input_psnr_db: float) -> bool:
    """Whether an output scoring ``psnr_db`` is more than ``HARM_MARGIN_DB`` worse than its input; an input
    identical to its reference (``inf``: a clean photo) is harmed by any output below ``CLEAN_FLOOR_DB``."""
    if math.isinf(input_psnr_db):
        return psnr_db < CLEAN_FLOOR_DB
    return psnr_db < input_psnr_db - HARM_MARGIN_DB


@dataclass(frozen=True)
class Spread:
    """What the mean of one method on one task hides: the median, the worst photo, the photos harmed."""

    images: int
    median_psnr: float
    worst_image: str
    worst_psnr: float
    harmed: int

    @classmethod
    def of(cls, names: Sequence[str], psnrs: Sequence[float], input_psnrs: Sequence[float]) -> Spread:
        """From per-photo PSNRs of the outputs and of the inputs (in ``names``' order; the first worst photo)."""
        worst = min(range(len(psnrs)), key=psnrs.__getitem__)
        return cls(len(psnrs), statistics.median(psnrs), names[worst], psnrs[worst],
                   sum(is_harmed(p, q) for p, q in zip(psnrs, input_psnrs)))


@dataclass
class Report:
    protocol: Protocol
    tasks: list[str]
    # method -> task -> (mean psnr, mean ssim), and what the mean hides; per-image rows kept for the CSV
    scores: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)
    spreads: dict[str, dict[str, Spread]] = field(default_factory=dict)
    per_image: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # lines printed under the table (how the models ran)

    def average(self, method: str) -> tuple[float, float] | None:
        cells = self.scores.get(method, {})
        if len(cells) != len(self.tasks):
            return None  # a baseline that does not apply to every task has no average
        return average([c[0] for c in cells.values()]), average([c[1] for c in cells.values()])

    def markdown(self) -> str:
        """The means (PSNR/SSIM) of every method and task in one table, then one table per task with the spread."""
        head = "| method | " + " | ".join(self.tasks) + " | average |"
        lines = [head, "|" + "---|" * (len(self.tasks) + 2)]
        for method, cells in self.scores.items():
            row = [f"{cells[t][0]:.2f}/{cells[t][1]:.4f}" if t in cells else "-" for t in self.tasks]
            avg = self.average(method)
            row.append(f"{avg[0]:.2f}/{avg[1]:.4f}" if avg else "-")
            lines.append(f"| {method} | " + " | ".join(row) + " |")
        lines.append("")
        lines.append(f"PSNR (dB) / SSIM, protocol `{self.protocol.name}`: {self.protocol.description}.")
        lines.append("`-`: the method does not apply to that task (and has no average); on `clean` the input is the target.")
        lines += ["", *self.notes] if self.notes else []
        lines += ["", "## Each task: what the mean hides", "",
                  f"Per photo: mean and median PSNR (dB), mean SSIM, the worst photo, and the photos harmed: more than "
                  f"{HARM_MARGIN_DB:g} dB worse than their input, or, where the input is its own reference (`clean`), "
                  f"below {CLEAN_FLOOR_DB:g} dB."]
        for task in self.tasks:
            rows = [(m, cells[task], self.spreads[m][task]) for m, cells in self.scores.items() if task in cells]
            if not rows:
                continue
            lines += ["", f"### {task} ({rows[0][2].images} photos)", "",
                      "| method | mean | median | SSIM | worst photo | harmed |", "|---|---|---|---|---|---|"]
            lines += [f"| {m} | {mean:.2f} | {s.median_psnr:.2f} | {ssim:.4f} | {s.worst_image} {s.worst_psnr:.2f} | "
                      f"{s.harmed}/{s.images} |" for m, (mean, ssim), s in rows]
        return "\n".join(lines)

    def write(self, out_dir: Path) -> list[Path]:
        """results.md, .csv, .json and per_image.csv in ``out_dir``, each atomically; a failure is one line."""
        try:
            return self._write(out_dir)
        except OSError as e:
            raise AirNetError(f"output folder {out_dir}: cannot write the results: {e.strerror or e}") from None

    def _cell(self, method: str, task: str) -> dict[str, Any]:
        """One method on one task as the CSV and JSON hold it."""
        (ps, ss), s = self.scores[method][task], self.spreads[method][task]
        return {"psnr": ps, "ssim": ss, "median_psnr": s.median_psnr, "worst_image": s.worst_image,
                "worst_psnr": s.worst_psnr, "harmed": s.harmed, "images": s.images}

    def _write(self, out_dir: Path) -> list[Path]:
        out_dir.mkdir(parents=True, exist_ok=True)
        written = [atomic_write(out_dir / "results.md", lambda p: p.write_text(self.markdown() + "\n"))]
        places = {"psnr": 4, "ssim": 6, "median_psnr": 4, "worst_psnr": 4}  # decimals in the CSV

        def table_csv(p: Path) -> None:
            with open(p, "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["method", "task", "psnr", "ssim", "median_psnr", "worst_image", "worst_psnr", "harmed", "images", "protocol"])
                for method, cells in self.scores.items():
                    for task in cells:
                        cell = self._cell(method, task)
                        w.writerow([method, task, *(f"{v:.{places[k]}f}" if k in places else v for k, v in cell.items()),
                                    self.protocol.name])

        def images_csv(p: Path) -> None:
            with open(p, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=["method", "task", "image", "psnr", "ssim", "input_psnr", "harmed"])
                w.writeheader()
                w.writerows(self.per_image)

        written.append(atomic_write(out_dir / "results.csv", table_csv))
        written.append(atomic_write(out_dir / "per_image.csv", images_csv))
        payload = {
            "protocol": {"name": self.protocol.name, "description": self.protocol.description},
            "tasks": self.tasks,
            "notes": self.notes,
            "harm": {"margin_db": HARM_MARGIN_DB, "clean_floor_db": CLEAN_FLOOR_DB},
            "scores": {m: {t: self._cell(m, t) for t in cells} for m, cells in self.scores.items()},
            "average": {m: dict(zip(("psnr", "ssim"), a)) if (a := self.average(m)) else None for m in self.scores},
        }
        written.append(atomic_write(out_dir / "results.json", lambda p: p.write_text(json.dumps(payload, indent=2, allow_nan=True))))
        return written


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(x, 0, 1) * 255).astype(np.uint8)  # rounded, not truncated


def _chw(image: np.ndarray) -> torch.Tensor:
    """HxWxC float in [0, 1] or uint8 -> (1, C, H, W) float64 in [0, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).double()
    return (t / 255.0 if image.dtype == np.uint8 else t)[None]


def input_psnrs(task: Task, protocol: Protocol) -> list[float]:
    """PSNR of each input against its reference under ``protocol`` (inf where they are identical)."""
    return [psnr(protocol.prepare(_chw(d)), protocol.prepare(_chw(c))).item() for d, c in zip(task.degraded, task.clean)]


def evaluate(
    tasks: list[Task],
    methods: dict[str, Row],
    protocol: Protocol,
    save_dir: Path | None = None,
    grid_images: int = 0,
    progress: bool = True,
) -> Report:
    """Score every applicable method on every task; optionally save outputs and input/output/target grids."""
    check_options(grid=grid_images)
    report = Report(protocol, [t.label for t in tasks])
    inputs: dict[str, list[float]] = {}  # task -> its inputs' PSNR, computed once
    for method, (fn, applies) in methods.items():
        for task in tasks:
            if not applies(task):
                continue
            before = inputs.setdefault(task.label, input_psnrs(task, protocol))
            ps, ss = [], []
            for i, (name, degraded, clean) in enumerate(
                tqdm(list(zip(task.names, task.degraded, task.clean)), desc=f"{method} | {task.label}", unit="img", disable=not progress, leave=False)
            ):
                out = fn(degraded, task)
                p, s = (v.item() for v in protocol.score(_chw(out)[0], _chw(clean)[0]))
                ps.append(p)
                ss.append(s)
                report.per_image.append({"method": method, "task": task.label, "image": name, "psnr": f"{p:.4f}", "ssim": f"{s:.6f}",
                                         "input_psnr": f"{before[i]:.4f}", "harmed": int(is_harmed(p, before[i]))})
                if save_dir is not None:
                    _save_images(save_dir / _slug(method) / _slug(task.label), Path(name).stem, degraded, out, clean,
                                 grid=i < grid_images)
            report.scores.setdefault(method, {})[task.label] = (average(ps), average(ss))
            report.spreads.setdefault(method, {})[task.label] = Spread.of(task.names, ps, before)
    return report


def _save_images(folder: Path, stem: str, degraded: np.ndarray, out: np.ndarray, clean: np.ndarray, grid: bool) -> None:
    """The output as ``stem.png`` (and the input|output|target grid); a failure to write is one line."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(_to_uint8(out)).save(folder / f"{stem}.png")
        if grid:
            Image.fromarray(np.concatenate([degraded, _to_uint8(out), clean], axis=1)).save(folder / f"grid_{stem}.png")
    except OSError as e:
        raise AirNetError(f"{folder}: cannot save the images: {e.strerror or e}") from None


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in text).strip("_")


POOL_SPLITS = ("training", "validation", "heldout", "heldout2")  # data/photo_pool.py's splits: data/pool/<split>/


def heldout_sets(path: str | Path) -> list[tuple[str, str]]:
    """The held-out protocol on one folder of clean photos (e.g. the photo pool's ``data/pool/heldout``):
    clean input, then every held-out degradation. A missing folder, or the whole pool, is a one-line error."""
    folder = Path(path)
    if not folder.is_dir():
        raise AirNetError(f"held-out folder not found: {folder}; build the photo pool's held-out split with "
                          "`python data/photo_pool.py --split heldout` (then --heldout data/pool/heldout), "
                          "or give a folder of your own clean photos")
    if any((folder / split).is_dir() for split in POOL_SPLITS):
        raise AirNetError(f"{folder} holds the photo pool's splits (training photos too): give one split, "
                          f"e.g. --heldout {folder / 'heldout'}")
    return [("clean", str(folder)), *((name, str(folder)) for name in HELDOUT_KINDS)]


def parse_sets(items: Sequence[str]) -> list[tuple[str, str]]:
    out = []
    for item in items:
        if "=" not in item:
            raise AirNetError(f"test set {item!r} must look like NAME=PATH, e.g. bsd68=data/test/bsd68")
        name, path = item.split("=", 1)
        out.append((name.strip().lower(), path))
    return out
