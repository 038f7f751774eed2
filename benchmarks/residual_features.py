"""Does the network's own residual tell rain from a clean photo better than the detectors? (issue 31, item 4)

    python benchmarks/residual_features.py data/pool/validation --weights airnet-general-v10 \\
        [--conditions clean,ho_rain,ho_rain_noise,ho_noise25] [--crop 256] [--jsonl per-photo.jsonl]

Each photo is centre-cropped and degraded as ``airnet eval --heldout`` degrades it (``evaluate.build_tasks``,
seed 0) and restored by the network alone (``postfilter="none"``). Statistics of the residual ``r = input -
output`` (its luminance, the mean of the three channels): ``rms`` (0-255 scale); ``pos``, the share of its energy
that is positive (bright streaks removed leave a positive residual; a darkening network too); ``hpos`` and
``hskew``, the same share and the skewness after a 7x7 local mean is removed (thin bright lines); ``hchan``, the
correlation of the channels' high-passed residuals (white rain and texture: high; noise: none); ``lcoh``, the
gradient-weighted coherence of the structure tensor in 8x8 windows (one dominant direction). Beside them
the detectors' rain presence (``prain``). Prints each condition's medians and, for every degraded condition,
the AUC of each statistic against the clean crops (1: every degraded crop above every clean one).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from airnet_restore.evaluate import build_tasks
from airnet_restore.inference.pipeline import restore_tensor
from airnet_restore.loading import load_model
from airnet_restore.memory import tune_allocator
from airnet_restore.metrics import get_protocol

STATISTICS = ("rms", "pos", "hpos", "hskew", "hchan", "lcoh", "prain")


def residual_statistics(x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """The residual statistics of the module docstring for (3,H,W) input ``x`` and output ``y`` in [0, 1]."""
    def high(t: torch.Tensor) -> torch.Tensor:  # (C,H,W) less its 7x7 local mean
        return t - F.avg_pool2d(t[None], 7, stride=1, padding=3, count_include_pad=False)[0]

    r = (x - y).double()
    lum = r.mean(0)
    hp = high(lum[None])[0]
    z = (hp - hp.mean()) / (hp.std() + 1e-12)
    chans = torch.corrcoef(high(r).reshape(3, -1))
    gy, gx = lum[1:, :-1] - lum[:-1, :-1], lum[:-1, 1:] - lum[:-1, :-1]
    jxx, jyy, jxy = (F.avg_pool2d(g[None, None], 8) for g in (gx * gx, gy * gy, gx * gy))
    energy = jxx + jyy
    coherence = ((jxx - jyy).square() + 4 * jxy.square()).sqrt() / (energy + 1e-12)
    return {"rms": r.square().mean().sqrt().item() * 255,
            "pos": lum.clamp(min=0).square().sum().item() / (lum.square().sum().item() + 1e-12),
            "hpos": hp.clamp(min=0).square().sum().item() / (hp.square().sum().item() + 1e-12),
            "hskew": z.pow(3).mean().item(),
            "hchan": ((chans[0, 1] + chans[0, 2] + chans[1, 2]) / 3).item(),
            "lcoh": ((coherence * energy).sum() / (energy.sum() + 1e-12)).item()}


def auc(positive: list[float], negative: list[float]) -> float:
    """The probability that a degraded crop's statistic exceeds a clean one's (ties count half)."""
    p, n = np.asarray(positive)[:, None], np.asarray(negative)[None, :]
    return float((p > n).mean() + 0.5 * (p == n).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="clean photos, e.g. data/pool/validation")
    parser.add_argument("--weights", default="airnet-general-v10")
    parser.add_argument("--conditions", default="clean,ho_rain,ho_rain_noise,ho_noise25")
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--jsonl", type=Path, help="write one line per photo and condition here")
    args = parser.parse_args()
    tune_allocator()
    model = load_model(args.weights)
    protocol = get_protocol("airnet")
    rows = []
    for condition in args.conditions.split(","):
        task = build_tasks(condition, args.folder, protocol, crop=args.crop, seed=0)[0]
        for name, image in zip(task.names, task.degraded):
            x = torch.from_numpy(image).permute(2, 0, 1).float() / 255
            found = model.inspect(x)
            y = restore_tensor(model, x, postfilter="none").clamp(0, 1)
            rows.append({"condition": condition, "photo": name, **residual_statistics(x, y),
                         "prain": found.presence.get("rain", 0.0) if found is not None else 0.0})
    if args.jsonl:
        args.jsonl.write_text("".join(json.dumps(row) + "\n" for row in rows))
    by = {c: [row for row in rows if row["condition"] == c] for c in args.conditions.split(",")}
    print("| condition | crops | " + " | ".join(f"median {s}" for s in STATISTICS) + " |")
    print("|---|---|" + "---|" * len(STATISTICS))
    for condition, group in by.items():
        print(f"| {condition} | {len(group)} | "
              + " | ".join(f"{statistics.median(row[s] for row in group):.3f}" for s in STATISTICS) + " |")
    if "clean" in by:
        print("\n| AUC against clean | " + " | ".join(STATISTICS) + " |")
        print("|---|" + "---|" * len(STATISTICS))
        for condition, group in by.items():
            if condition != "clean":
                print(f"| {condition} | " + " | ".join(
                    f"{auc([r[s] for r in group], [r[s] for r in by['clean']]):.2f}" for s in STATISTICS) + " |")


if __name__ == "__main__":
    main()
