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

Each set gives one or more tasks (table columns); methods are the rows.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

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
from airnet_restore.inference.pipeline import restore_tensor
from airnet_restore.metrics import Protocol, average, centre_crop, crop_to_multiple
from airnet_restore.models.airnet import AirNet

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


def model_method(model: AirNet, **options) -> Method:
    def run(degraded: np.ndarray, task: Task) -> np.ndarray:  # noqa: ARG001
        x = torch.from_numpy(degraded).permute(2, 0, 1).float() / 255.0
        return restore_tensor(model, x, **options).permute(1, 2, 0).numpy()

    return run


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


def baseline_methods(keys: Sequence[str]) -> dict[str, tuple[Method, Callable[[Task], bool]]]:
    """The named baselines as table rows (``all`` = every one); an unknown name is an ``AirNetError``."""
    keys = [k for key in keys for k in (BASELINES if key == "all" else [key])]
    unknown = [k for k in keys if k not in BASELINES]
    if unknown:
        raise AirNetError(f"unknown baseline {', '.join(map(repr, unknown))}; choose from {', '.join(BASELINES)}")
    return {BASELINES[k][0]: BASELINES[k][1:] for k in keys}


@dataclass
class Report:
    protocol: Protocol
    tasks: list[str]
    # method -> task -> (mean psnr, mean ssim); per-image rows kept for the CSV
    scores: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)
    per_image: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # lines printed under the table (how the models ran)

    def average(self, method: str) -> tuple[float, float] | None:
        cells = self.scores.get(method, {})
        if len(cells) != len(self.tasks):
            return None  # a baseline that does not apply to every task has no average
        return average([c[0] for c in cells.values()]), average([c[1] for c in cells.values()])

    def markdown(self) -> str:
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
        return "\n".join(lines)

    def write(self, out_dir: Path) -> list[Path]:
        """results.md, .csv, .json and per_image.csv in ``out_dir``, each atomically; a failure is one line."""
        try:
            return self._write(out_dir)
        except OSError as e:
            raise AirNetError(f"output folder {out_dir}: cannot write the results: {e.strerror or e}") from None

    def _write(self, out_dir: Path) -> list[Path]:
        out_dir.mkdir(parents=True, exist_ok=True)
        written = [atomic_write(out_dir / "results.md", lambda p: p.write_text(self.markdown() + "\n"))]

        def table_csv(p: Path) -> None:
            with open(p, "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["method", "task", "psnr", "ssim", "protocol"])
                for method, cells in self.scores.items():
                    for task, (ps, ss) in cells.items():
                        w.writerow([method, task, f"{ps:.4f}", f"{ss:.6f}", self.protocol.name])

        def images_csv(p: Path) -> None:
            with open(p, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=["method", "task", "image", "psnr", "ssim"])
                w.writeheader()
                w.writerows(self.per_image)

        written.append(atomic_write(out_dir / "results.csv", table_csv))
        written.append(atomic_write(out_dir / "per_image.csv", images_csv))
        payload = {
            "protocol": {"name": self.protocol.name, "description": self.protocol.description},
            "tasks": self.tasks,
            "notes": self.notes,
            "scores": {m: {t: {"psnr": c[0], "ssim": c[1]} for t, c in cells.items()} for m, cells in self.scores.items()},
            "average": {m: dict(zip(("psnr", "ssim"), a)) if (a := self.average(m)) else None for m in self.scores},
        }
        written.append(atomic_write(out_dir / "results.json", lambda p: p.write_text(json.dumps(payload, indent=2, allow_nan=True))))
        return written


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(x, 0, 1) * 255).astype(np.uint8)  # rounded, not truncated


def evaluate(
    tasks: list[Task],
    methods: dict[str, tuple[Method, Callable[[Task], bool]]],
    protocol: Protocol,
    save_dir: Path | None = None,
    grid_images: int = 0,
    progress: bool = True,
) -> Report:
    """Score every applicable method on every task; optionally save outputs and input/output/target grids."""
    check_options(grid=grid_images)
    report = Report(protocol, [t.label for t in tasks])
    for method, (fn, applies) in methods.items():
        for task in tasks:
            if not applies(task):
                continue
            ps, ss = [], []
            for i, (name, degraded, clean) in enumerate(
                tqdm(list(zip(task.names, task.degraded, task.clean)), desc=f"{method} | {task.label}", unit="img", disable=not progress, leave=False)
            ):
                out = fn(degraded, task)
                r = torch.from_numpy(np.ascontiguousarray(out)).permute(2, 0, 1).double()
                c = torch.from_numpy(clean).permute(2, 0, 1).double() / 255.0
                p, s = (v.item() for v in protocol.score(r, c))
                ps.append(p)
                ss.append(s)
                report.per_image.append({"method": method, "task": task.label, "image": name, "psnr": f"{p:.4f}", "ssim": f"{s:.6f}"})
                if save_dir is not None:
                    _save_images(save_dir / _slug(method) / _slug(task.label), Path(name).stem, degraded, out, clean,
                                 grid=i < grid_images)
            report.scores.setdefault(method, {})[task.label] = (average(ps), average(ss))
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


def heldout_sets(path: str | Path) -> list[tuple[str, str]]:
    """The held-out protocol on one clean folder: clean input, then every held-out degradation."""
    return [("clean", str(path)), *((name, str(path)) for name in HELDOUT_KINDS)]


def parse_sets(items: Sequence[str]) -> list[tuple[str, str]]:
    out = []
    for item in items:
        if "=" not in item:
            raise AirNetError(f"test set {item!r} must look like NAME=PATH, e.g. bsd68=data/test/bsd68")
        name, path = item.split("=", 1)
        out.append((name.strip().lower(), path))
    return out
