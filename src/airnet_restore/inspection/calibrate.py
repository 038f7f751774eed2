"""Calibration: fit the probe on the weights' own training family and store it in a copy of the weights.

Samples are random crops (128-384 px) of clean photographs degraded by the registered
degradations the weights were trained on (read from their metadata, else the general
family), one composition step at a time so that every family's strength is measured from
the step's input and output: noise sigma, haze density (1 - transmission, from a local
linear fit of hazy on clean) and rain coverage (share of pixels brightened by more than 20
levels). A family too weak to see counts as absent; samples between "absent" and "present"
(``PRESENCE``) are left out of that family's detector.

``fit_policy`` adds the "do no harm" policy (``probe.Policy``) from other photos than the fit's:
per family, the score above which a clean photo gets more than ``low`` presence is set so that at
most ``budget`` of the clean photos and crops exceed it in any family, and the score of presence
0.5 (the detection) where the decision "present" is most often right on degraded and clean photos.
"""

from __future__ import annotations

import json
import os
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save
from tqdm.auto import tqdm

from airnet_restore.atomic import atomic_write
from airnet_restore.data.aio import load_rgb8
from airnet_restore.data.layouts import clean_folder
from airnet_restore.degradations import REGISTRY, get_degradation
from airnet_restore.degradations.general import GENERAL_TYPES
from airnet_restore.device import resolve_device
from airnet_restore.errors import AirNetError
from airnet_restore.inspection.features import FEATURE_SET, embed, encoder_fingerprint
from airnet_restore.inspection.probe import (
    FAMILIES,
    METADATA_KEY,
    DegradationProbe,
    Policy,
    fit_logistic,
    fit_ridge,
    logit,
    type_name,
)
from airnet_restore.models.airnet import AirNet
from airnet_restore.weights import build_model, load_state_dict, save_weights, tensors_sha256

# The general family (configs/general.yaml): used for weights whose metadata names no training types.
# family -> (below: absent, at or above: present); in between a sample is left out of that family's detector.
# Noise in sigma (0-255), haze in density (1 - mean transmission), rain in coverage (share of pixels).
PRESENCE: dict[str, tuple[float, float]] = {"noise": (2.0, 4.0), "haze": (0.15, 0.3), "rain": (0.02, 0.05)}
CROP_SIZES = (128, 384)
DETECTOR_L2 = 1e-2
LEVEL_L2 = 10.0
RAIN_STEP = 20  # levels (0-255) by which a pixel must brighten to count as covered by rain


def part_family(part: str) -> str | None:
    """The corruption family of one registered degradation: ``noise_any`` -> noise, ``clean`` -> None."""
    if part == "clean":
        return None
    return next((f for f in FAMILIES if f in part), part)


def noise_level(before: np.ndarray, after: np.ndarray) -> float:
    """Standard deviation (0-255) of ``after - before`` over pixels far enough from 0 and 255 not to clip."""
    residual = after.astype(np.float64) - before
    sigma = float(residual.std())
    for _ in range(3):
        unclipped = (before >= 2 * sigma) & (before <= 255 - 2 * sigma)
        if unclipped.mean() > 0.05:
            sigma = float(residual[unclipped].std())
    return sigma


def haze_level(before: np.ndarray, after: np.ndarray, block: int = 16) -> float:
    """1 - mean transmission: per textured block, the slope of a linear fit of ``after`` on ``before``."""
    h, w = (before.shape[0] // block) * block, (before.shape[1] // block) * block

    def blocks(a: np.ndarray) -> np.ndarray:
        a = a[:h, :w].astype(np.float64) / 255.0
        return a.reshape(h // block, block, w // block, block, -1).transpose(0, 2, 1, 3, 4).reshape(-1, block * block * a.shape[2])

    x, y = blocks(before), blocks(after)
    var = x.var(axis=1)
    textured = var > 1e-3
    if textured.sum() < 3:
        return float(np.clip(1.0 - y.std() / max(x.std(), 1e-6), 0.0, 1.0))
    x, y = x[textured], y[textured]
    slope = ((x - x.mean(1, keepdims=True)) * (y - y.mean(1, keepdims=True))).mean(1) / var[textured]
    return float(1.0 - np.clip(slope, 0.0, 1.0).mean())


def rain_level(before: np.ndarray, after: np.ndarray) -> float:
    """Share of pixels that the rain brightened by more than ``RAIN_STEP`` levels in some channel."""
    return float(((after.astype(np.int16) - before).max(axis=2) > RAIN_STEP).mean())


LEVELS = {"noise": noise_level, "haze": haze_level, "rain": rain_level}


def degrade_measured(clean: np.ndarray, name: str, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, float]]:
    """``get_degradation(name)(clean, rng)`` step by step (the same output), with each family's measured strength."""
    get_degradation(name)  # validates every part
    image, levels = clean, {}
    for part in name.split("+"):
        out = REGISTRY[part].fn(image, rng)
        family = part_family(part)
        if family is not None:
            levels[family] = LEVELS[family](image, out) if family in LEVELS else 1.0
        image = out
    return image, levels


@dataclass
class CalibrationSet:
    """Features of the calibration samples, their degradation names and measured family strengths."""

    features: np.ndarray
    names: list[str]
    levels: list[dict[str, float]]
    photos: list[str]

    def families(self) -> list[str]:
        found = {f for name in self.names for part in name.split("+") if (f := part_family(part))}
        return [f for f in FAMILIES if f in found] + sorted(found - set(FAMILIES))

    def present(self, family: str) -> np.ndarray:
        """1 where the family is present, 0 where absent, -1 where too weak to say (left out)."""
        low, high = PRESENCE.get(family, (0.5, 0.5))
        level = np.array([lv.get(family, 0.0) for lv in self.levels])
        return np.where(level >= high, 1, np.where(level < low, 0, -1))

    def level(self, family: str) -> np.ndarray:
        return np.array([lv.get(family, 0.0) for lv in self.levels])

    def true_types(self) -> list[str]:
        """Each sample's type after the strength thresholds (weak parts dropped)."""
        return [type_name({f for f, v in lv.items() if v >= PRESENCE.get(f, (0.5, 0.5))[1]}) for lv in self.levels]


def collect(
    model: AirNet,
    photos: Sequence[Path],
    types: Sequence[str],
    crops: int = 4,
    seed: int = 0,
    progress: bool = True,
) -> CalibrationSet:
    """Embed ``crops`` random crops of every photo under every degradation type; deterministic for a seed."""
    feats, names, levels, files = [], [], [], []
    for index, photo in enumerate(tqdm(photos, desc="calibration photos", unit="photo", disable=not progress)):
        full = load_rgb8(photo)
        for name in types:
            rng = np.random.default_rng([seed, index, zlib.crc32(name.encode())])
            for _ in range(crops):
                crop = random_crop(full, rng)
                degraded, measured = degrade_measured(crop, name, rng)
                x = torch.from_numpy(degraded).permute(2, 0, 1).float().div_(255.0)
                feats.append(embed(model, x).features())
                names.append(name)
                levels.append(measured)
                files.append(photo.name)
    return CalibrationSet(np.array(feats), names, levels, files)


def random_crop(image: np.ndarray, rng: np.random.Generator, sizes: tuple[int, int] = CROP_SIZES) -> np.ndarray:
    """A square crop of a random size in ``sizes`` (at most the image's short side) at a random place."""
    h, w = image.shape[:2]
    size = min(int(rng.integers(sizes[0], sizes[1] + 1)), h, w)
    top, left = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    return np.ascontiguousarray(image[top : top + size, left : left + size])


def fit_probe(
    samples: CalibrationSet,
    provenance: Mapping[str, object] | None = None,
    *,
    l2: float = DETECTOR_L2,
    clean_share: float | None = None,
    feature: str = FEATURE_SET,
    emphasis: np.ndarray | None = None,
) -> DegradationProbe:
    """Standardise the features, then fit one detector per family and the two level regressions.

    ``clean_share``: where given, each detector weighs its samples so that those holding the family and
    those without it count the same, and clean samples (no family) are that share of the latter (the rest
    is the other families'); else every sample counts once. ``feature``: what the columns of ``samples.features``
    are (``features.FEATURE_SET``, or ``handcrafted.COMBINED_SET`` for the encoder's beside the hand-crafted);
    ``emphasis``: per column, a factor on the standardised feature (default 1), so that the L2 penalty holds a
    column with factor k back as much as ``l2 / k**2`` would."""
    x = samples.features
    mean, scale = x.mean(axis=0), np.maximum(x.std(axis=0), 1e-6)
    if emphasis is not None:
        scale = scale / np.asarray(emphasis, np.float64)
    z = (x - mean) / scale
    detectors = {}
    clean = np.array([t == "clean" for t in samples.true_types()])
    for family in samples.families():
        target = samples.present(family)
        keep = target >= 0
        if len(set(target[keep])) < 2:
            raise AirNetError(f"calibration: no samples without (or with) {family}; add a type that has it (or lacks it)")
        weight = None if clean_share is None else _balance(target, clean, clean_share)[keep]
        detectors[family] = fit_logistic(z[keep], target[keep], l2, weight)
    sigma = fit_ridge(z, samples.level("noise"), LEVEL_L2)
    haze = fit_ridge(z, samples.level("haze"), LEVEL_L2)
    return DegradationProbe(
        families=list(detectors), feature=feature, mean=mean.tolist(), scale=scale.tolist(),
        detectors=detectors, sigma=sigma, haze=haze, calibration=dict(provenance or {}),
    )


def _balance(target: np.ndarray, clean: np.ndarray, clean_share: float) -> np.ndarray:
    """Sample weights: half for the samples holding the family, half for the others, of which the clean
    samples get ``clean_share`` (all of it where there are no others)."""
    present, absent = target == 1, target == 0
    others = absent & ~clean
    share = clean_share if others.any() else 1.0
    weight = np.zeros(len(target))
    for group, total in ((present, 0.5), (absent & clean, 0.5 * share), (others, 0.5 * (1.0 - share))):
        if group.any():
            weight[group] = total / group.sum()
    return weight


def image_scores(probe: DegradationProbe, windows: Sequence[np.ndarray]) -> np.ndarray:
    """(images, families) detector logits, before any policy, of images given by their (N, F) window features
    (the windows ``Inspector.inspect`` judges)."""
    rows = [probe.image_probability(w) for w in windows]
    if not rows:
        return np.zeros((0, len(probe.families)))
    return logit(np.array([[r[f] for f in probe.families] for r in rows], np.float64).reshape(len(rows), len(probe.families)))


COUNTS = ("view", "photo", "weighted")  # how the clean budget is counted (``clean_thresholds``)


def false_positive_share(exceed: np.ndarray, photos: Sequence[str] | None = None, count: str = "view") -> np.ndarray:
    """The share of clean false positives of one view from ``exceed`` (images, ...) booleans (image over the
    threshold, for each of any number of threshold choices in the trailing axes): ``view``, per image;
    ``photo``, per photo (``photos``: each image's photo), a photo counting once where any of its images exceeds;
    ``weighted``, per photo, each image weighing 1 / the number of its photo's images."""
    if count not in COUNTS:
        raise AirNetError(f"budget count must be one of {', '.join(COUNTS)}, got {count!r}")
    n = len(exceed)
    if count == "view" or n == 0:
        return exceed.sum(axis=0) / max(n, 1)
    if photos is None or len(photos) != n:
        raise AirNetError(f"budget counted per {count}: give each clean image's photo")
    _, inverse, sizes = np.unique(np.asarray(photos), return_inverse=True, return_counts=True)
    if count == "photo":
        hit = np.stack([exceed[inverse == k].any(axis=0) for k in range(len(sizes))])
        return hit.sum(axis=0) / len(sizes)
    weight = 1.0 / sizes[inverse]
    return np.tensordot(weight, exceed.astype(np.float64), axes=(0, 0)) / len(sizes)


def clean_thresholds(clean: Mapping[str, np.ndarray], budget: float, positives: Sequence[np.ndarray] | None = None,
                     steps: int = 10, photos: Mapping[str, Sequence[str]] | None = None, count: str = "view") -> np.ndarray:
    """Per family the score above which a clean image counts as a false positive, such that every view
    (``clean``: view -> (n, families) scores) has at most ``budget`` of its images above it in any family
    (counted as ``count`` says, ``false_positive_share``; ``photos``: view -> each image's photo).

    Each family's threshold is a quantile of the pooled clean scores at 1 - ``budget`` * k / ``steps``
    (k = 0 .. steps); of the allowed combinations, the one under which most images holding each family
    (``positives``: per family, the scores of those images; default none) pass its threshold, on average
    over the families, and of equal ones the highest thresholds (the first of equal ones)."""
    pooled = np.concatenate(list(clean.values()))
    families = pooled.shape[1]
    levels = 1.0 - budget * np.arange(steps + 1) / steps
    candidates = np.quantile(pooled, levels, axis=0)  # (steps + 1, families)
    shape = (steps + 1,) * families

    def along(k: int, values: np.ndarray) -> np.ndarray:  # values (..., steps + 1) on family k's axis of the combos
        return values.reshape(values.shape[:-1] + (1,) * k + (steps + 1,) + (1,) * (families - 1 - k))

    worst = np.zeros(shape)
    for view, scores in clean.items():
        if not len(scores):
            continue
        exceed = np.zeros((len(scores), *shape), bool)
        for k in range(families):
            exceed |= along(k, scores[:, k, None] > candidates[None, :, k])
        worst = np.maximum(worst, false_positive_share(exceed, None if photos is None else photos.get(view), count))
    allowed = (worst <= budget + 1e-12).ravel()
    if not allowed.any():
        return candidates[0]
    found, total = np.zeros(shape), np.zeros(shape)
    for k in range(families):
        if positives:
            p = positives[k]
            found = found + along(k, np.array([np.mean(p > c) if len(p) else 0.0 for c in candidates[:, k]]))
        total = total + along(k, candidates[:, k])
    found = (found / families).ravel() if positives else found.ravel()
    index = np.flatnonzero(allowed)
    index = index[found[index] == found[index].max()]
    best = index[int(np.argmax(total.ravel()[index]))]
    return candidates[list(np.unravel_index(best, shape)), range(families)]


def detect_threshold(scores: np.ndarray, present: np.ndarray, clean: float, gaps: tuple[float, float] = (0.5, 8.0)) -> float:
    """The score of presence 0.5 for one family: where the decision "present" has the best balanced accuracy
    on ``scores`` with ``present`` labels (1, 0; -1 left out), at ``gaps`` above the ``clean`` threshold;
    the middle one of equal ones. Without both labels, the plain logistic slope (presence 0.2 -> 0.5 over 1.39)."""
    keep = present >= 0
    s, y = scores[keep], present[keep] == 1
    if y.all() or not y.any():
        return clean + float(-logit(np.asarray(0.2)))
    candidates = clean + np.arange(gaps[0], gaps[1] + 1e-9, 0.05)
    accuracy = np.array([0.5 * (np.mean(s[y] >= t) + np.mean(s[~y] < t)) for t in candidates])
    best = np.flatnonzero(accuracy >= accuracy.max() - 1e-12)
    return float(candidates[best[len(best) // 2]])


def fit_policy(
    probe: DegradationProbe,
    clean: Mapping[str, Sequence[np.ndarray]],
    labelled: Sequence[np.ndarray],
    present: np.ndarray,
    *,
    budget: float = 0.05,
    low: float = 0.2,
    wide_from: int = 2,
    photos: Mapping[str, Sequence[str]] | None = None,
    count: str = "view",
) -> Policy:
    """The "do no harm" policy of ``probe`` from photos it was not fitted on.

    ``clean``: view name (whole photos, crops, ...) -> the window features of each clean image;
    ``labelled``: window features of degraded and clean images, with ``present`` (images, families) in
    {1, 0, -1 (too weak to say)} in ``probe.families`` order. Images judged on one window and those judged on
    ``wide_from`` or more get thresholds of their own. The clean thresholds (presence ``low``) come from the
    budget, shared among the families where it lets most labelled images through (``clean_thresholds``), the
    detection thresholds from ``detect_threshold``. ``count``: the budget per clean image of each view (``view``)
    or per photo (``photo``: a photo whose images of a view exceed counts once; ``weighted``: each image weighs
    1 / its photo's images of the view), ``photos`` naming each clean image's photo (view -> names)."""
    if not 0.0 < budget < 1.0 or not 0.0 < low < 0.5:
        raise AirNetError(f"policy: budget must be in (0, 1) and low in (0, 0.5), got {budget} and {low}")
    if count not in COUNTS:
        raise AirNetError(f"policy: budget count must be one of {', '.join(COUNTS)}, got {count!r}")
    if count != "view" and (photos is None or any(len(photos.get(v, ())) != len(images) for v, images in clean.items())):
        raise AirNetError(f"policy: a budget counted per {count} needs each clean image's photo")
    tables: list[dict[str, list[float]]] = []
    for wide in (False, True):
        def keep(w: np.ndarray, wide: bool = wide) -> bool:
            return (len(w) >= wide_from) == wide

        views = {v: image_scores(probe, [w for w in images if keep(w)]) for v, images in clean.items()}
        views = {v: s for v, s in views.items() if len(s)}
        names = None if photos is None else {
            v: [p for p, w in zip(photos[v], clean[v]) if keep(w)] for v in views}
        rows = [i for i, w in enumerate(labelled) if keep(w)]
        if not views:
            tables.append({})
            continue
        scores, labels = image_scores(probe, [labelled[i] for i in rows]), present[rows]
        positives = [scores[labels[:, k] == 1, k] for k in range(len(probe.families))]
        lows = clean_thresholds(views, budget, positives, photos=names, count=count)
        tables.append({family: [float(lows[k]), detect_threshold(scores[:, k], labels[:, k], float(lows[k]))]
                       for k, family in enumerate(probe.families)})
    if not tables[0]:
        raise AirNetError("policy: no clean image judged on a single window; add small crops")
    return Policy(low=low, budget=budget, thresholds=tables[0], wide=tables[1], wide_from=wide_from)


@dataclass
class CalibrationReport:
    """What ``calibrate`` did: the file written, the samples, and how well the probe fits them."""

    path: Path
    samples: int
    photos: int
    types: list[str]
    seconds: float
    fit: dict[str, float] = field(default_factory=dict)

    def lines(self) -> list[str]:
        fit = ", ".join(f"{k} {v:.3g}" for k, v in self.fit.items())
        return [
            f"calibrated on {self.samples} samples: {self.photos} photos x {len(self.types)} types ({', '.join(self.types)})",
            f"fit on the calibration samples: {fit}",
            f"wrote {self.path} in {self.seconds:.0f} s",
        ]


def training_family(metadata: Mapping[str, str]) -> tuple[list[str], list[str], list[Path]]:
    """(degradation types, excluded file names, clean folders) of the weights' training config, if recorded."""
    try:
        types = json.loads(metadata["training"])["config"]["data"]["types"]
    except (KeyError, TypeError, ValueError):
        return [], [], []
    names, exclude, folders = [], [], []
    for t in types:
        if not isinstance(t, dict) or not t.get("clean"):
            continue
        name = str(t.get("degradation") or t.get("name"))
        if all(p in REGISTRY for p in name.split("+")):
            names.append(name)
        exclude += list(t.get("exclude") or [])
        folders.append(Path(t["clean"]))
    return list(dict.fromkeys(names)), sorted(set(exclude)), list(dict.fromkeys(folders))


def weights_file(weights: str | os.PathLike) -> Path:
    """The file of a registered variant's bundled weights, or the given path; an error where there is none."""
    from airnet_restore.variants import VARIANTS

    if str(weights) in VARIANTS:
        path = VARIANTS[str(weights)].weights_path()
        if path is None:
            raise AirNetError(f"variant {weights!r} ships without weights; pass a weights file")
        return path
    path = Path(weights)
    if not path.is_file():
        raise AirNetError(f"weights file not found: {weights}")
    return path


def read_metadata(path: Path) -> dict[str, str]:
    """The metadata of a safetensors file (empty for other formats), without reading the tensors."""
    if path.suffix != ".safetensors":
        return {}
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as e:  # noqa: BLE001 - safetensors raises several unrelated types for a bad header
        raise AirNetError(f"{path}: not a readable safetensors file ({e})") from None


def calibrate(
    weights_in: str | os.PathLike,
    weights_out: str | os.PathLike,
    photos: str | os.PathLike | None = None,
    *,
    types: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
    crops: int = 4,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = True,
) -> CalibrationReport:
    """Compute the degradation probe of ``weights_in`` and write the weights with it to ``weights_out``.

    ``photos``: clean photographs (default: the training config's folder, if it exists here);
    ``types``: registered degradations (default: the training config's, else the general family);
    file names in ``exclude`` and in the training config's exclusions (validation photos) are never used.
    """
    start = time.perf_counter()
    src, dst = weights_file(weights_in), Path(weights_out)
    if dst.suffix != ".safetensors":
        raise AirNetError(f"{dst}: calibrated weights are written as safetensors; name the output *.safetensors")
    if dst.exists() and os.path.samefile(src, dst):
        raise AirNetError(f"{dst} is the input file; write the calibrated weights to another file")
    if crops < 1:
        raise AirNetError(f"--crops must be at least 1, got {crops}")
    metadata = read_metadata(src)
    trained, excluded, folders = training_family(metadata)
    types = list(types or trained or GENERAL_TYPES)
    for name in types:
        get_degradation(name)
    folder = Path(photos) if photos is not None else next((f for f in folders if f.is_dir()), None)
    if folder is None:
        raise AirNetError(f"{src}: its training photos are not here; give the clean photos with --photos DIR")
    skip = set(excluded) | set(exclude)
    files = [p for p in clean_folder(folder) if p.name not in skip]
    if not files:
        raise AirNetError(f"{folder}: no photos left after excluding {len(skip)} names")
    model = load_encoder(src, device)
    samples = collect(model, files, types, crops=crops, seed=seed, progress=progress)
    provenance = {
        "photos": len(files), "excluded": sorted(skip), "types": types, "crops": crops, "seed": seed,
        "samples": len(samples.names), "presence": PRESENCE,
    }
    probe = fit_probe(samples, provenance)
    probe.encoder_sha256 = encoder_fingerprint(model)
    probe.calibration["fit"] = fit = _fit_scores(probe, samples)
    write_probe(src, dst, probe)
    return CalibrationReport(dst, len(samples.names), len(files), types, time.perf_counter() - start, fit)


def load_encoder(path: Path, device: str = "cpu") -> AirNet:
    """The network of a weights file in eval mode on ``device``: what the statistics are computed with
    (only its degradation encoder runs)."""
    model, _ = build_model(path)
    return model.to(resolve_device(device)).eval()


def _fit_scores(probe: DegradationProbe, samples: CalibrationSet) -> dict[str, float]:
    """Type accuracy and sigma error of the probe on its own calibration samples (a sanity check, not a test)."""
    predictions = probe.predict(samples.features)
    truth = samples.true_types()
    noisy = samples.present("noise") == 1
    sigma = np.array([p.sigma if p.sigma is not None else 0.0 for p in predictions])
    return {
        "type accuracy": float(np.mean([p.type == t for p, t in zip(predictions, truth)])),
        "sigma MAE": float(np.abs(sigma - samples.level("noise"))[noisy].mean()) if noisy.any() else 0.0,
    }


def write_probe(src: Path, dst: Path, probe: DegradationProbe, extra: Mapping[str, str] | None = None) -> None:
    """The input's tensors unchanged, its metadata plus the probe and ``extra`` entries (such as a new
    ``variant`` name); a ``.pth`` is converted to our format."""
    if src.suffix == ".safetensors":
        sd, metadata = load_state_dict(src)
        meta = {**metadata, **(extra or {}), "sha256": tensors_sha256(sd), METADATA_KEY: probe.to_json()}
        data = save(sd, metadata=meta)
        try:
            atomic_write(dst, lambda tmp: tmp.write_bytes(data))
        except OSError as e:
            raise AirNetError(f"{dst}: cannot write: {e.strerror or e}") from None
        return
    model, _ = build_model(src)
    save_weights(model, dst, metadata={"source": src.name, **(extra or {}), METADATA_KEY: probe.to_json()})
