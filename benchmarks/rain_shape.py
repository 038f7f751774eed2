"""The rain band's shape judgement (``RainSettings.elongated``) under other thresholds, on clean and rainy crops.

    python benchmarks/rain_shape.py data/pool/training [--weights airnet-general-v13] [--every 1] [--crop 256] \
        [--gate 2:3 --gate 1.5:2.5 ...] [--sure 2.5:3.5 --sure none ...] [--jsonl per-photo.jsonl]

Every ``--every``-th photo (sorted) is centre-cropped to ``--crop`` and degraded as ``airnet eval --heldout``
degrades it (``clean`` and ``ho_rain``; ``evaluate.build_tasks``, seed 0). Each crop is restored once by the
network alone (``f(x)``) and once by the stage with the rain band off (``o``); the band removes ``c`` times the fine
bright part of ``o - f(x)`` from ``o`` (``rain.remove_streaks``), which is linear in ``c``, so every threshold is
scored from those two restores: ``c = shape_confidence(rain_confidence(...), elongation(x, f(x)), ...)`` with the
weights' own rain settings but ``elongation_gate`` and ``elongation_sure`` (every ``--gate`` with every ``--sure``;
``none``: never from the shape alone). Reference rows: the band off, and the band without the shape judgement
(``airnet-general-v12``'s). Outputs are rounded to 8 bits. Per row: clean crops' median and worst PSNR against
themselves (an identical output counts as 100 dB), how many fall below 35 and 40 dB, on how many the band works
(confidence over 0.2: the budget is 5 %); rainy crops' mean PSNR, mean / median / worst gain over the input, the
harmed (more than 0.5 dB below the input), and how many gain 1.5 dB or more. Thresholds are chosen on the training
photos; validation photos check the choice (issue 31).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from airnet_restore.evaluate import build_tasks
from airnet_restore.inference.pipeline import restore_tensor
from airnet_restore.loading import load_model
from airnet_restore.metrics import get_protocol, psnr
from airnet_restore.postfilter import PostFilter
from airnet_restore.postfilter.params import RainSettings
from airnet_restore.postfilter.rain import elongation, rain_confidence, remove_streaks, shape_confidence

CAP_DB = 100.0
CONDITIONS = ("clean", "ho_rain")


def pair(text: str) -> tuple[float, float] | None:
    """``LOW:HIGH`` -> (low, high); ``none`` -> None."""
    if text == "none":
        return None
    low, high = (float(v) for v in text.split(":"))
    return low, high


def source_of(image: torch.Tensor) -> Callable[[int, int, int, int], torch.Tensor]:
    """(y, x, height, width) -> that crop of (1,3,H,W) ``image``: the whole image as the stage's ``source``."""
    return lambda y, x, height, width: image[:, :, y : y + height, x : x + width]


def score(out: torch.Tensor, clean: torch.Tensor) -> float:
    """PSNR (dB, capped) of (3,H,W) ``out`` in [0, 1], rounded to 8 bits, against (1,3,H,W) float64 ``clean``."""
    return min(CAP_DB, psnr((out.clamp(0, 1) * 255).round().double()[None] / 255, clean).item())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="clean photos, e.g. data/pool/training")
    parser.add_argument("--weights", default="airnet-general-v13")
    parser.add_argument("--every", type=int, default=1)
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--gate", action="append", type=pair, help="elongation_gate LOW:HIGH (repeatable)")
    parser.add_argument("--sure", action="append", type=pair, help="elongation_sure LOW:HIGH or none (repeatable)")
    parser.add_argument("--jsonl", type=Path, help="write one line per crop here (presence, elongation, PSNRs)")
    args = parser.parse_args()
    desc = load_model(args.weights)
    stored = desc.postfilter.params
    base = dataclasses.replace(stored.rain, enabled=True, elongated=True)
    bandless = dataclasses.replace(desc, postfilter=PostFilter(dataclasses.replace(
        stored, rain=dataclasses.replace(stored.rain, enabled=False))))
    gates = args.gate or [base.elongation_gate]
    sures = args.sure or [base.elongation_sure]
    variants: dict[str, RainSettings | None] = {"band off": None, "band, no shape (v12)": dataclasses.replace(base, elongated=False)}
    for gate in gates:
        for sure in sures:
            variants[f"gate {gate} sure {sure}"] = dataclasses.replace(
                base, elongation_gate=gate or (0.0, 1e-9), elongation_sure=sure or (99.0, 100.0))
    protocol = get_protocol("airnet")
    crops: dict[str, list[dict[str, Any]]] = {c: [] for c in CONDITIONS}
    for condition in CONDITIONS:
        task = build_tasks(condition, args.folder, protocol, crop=args.crop, seed=0)[0]
        for i in range(0, len(task.names), args.every):
            x = torch.from_numpy(task.degraded[i]).permute(2, 0, 1).float() / 255
            clean = torch.from_numpy(task.clean[i]).permute(2, 0, 1).double()[None] / 255
            found = desc.inspect(x)
            network = restore_tensor(desc, x, postfilter="none")[None]
            mixed = restore_tensor(bandless, x)[None]
            full = remove_streaks(mixed, network, 1.0, base)
            longish = elongation(source_of(x[None]), network, base)
            row: dict[str, Any] = {"condition": condition, "photo": task.names[i], "elongation": longish,
                                   "presence": None if found is None else found.presence,
                                   "sigma": None if found is None else found.sigma,
                                   "input": score(x, clean)}
            for label, settings in variants.items():
                c = 0.0
                if settings is not None and found is not None:
                    c = shape_confidence(rain_confidence(found.presence, found.sigma, settings), longish, found.sigma,
                                         settings)
                row[label] = (c, score((mixed + c * (full - mixed))[0], clean))
            crops[condition].append(row)
            print(json.dumps(row), flush=True)
    if args.jsonl:
        args.jsonl.write_text("".join(json.dumps(r) + "\n" for rows in crops.values() for r in rows))
    clean_rows, rain_rows = crops["clean"], crops["ho_rain"]
    print(f"\n{args.weights} on {args.folder} (every {args.every}, {args.crop}-px crops, seed 0): {len(clean_rows)} clean, "
          f"{len(rain_rows)} rainy crops")
    print("| rain band | clean: median / worst dB, below 35 / 40 dB, band over 0.2 | rain: mean dB, gain mean / median / "
          "worst, harmed, >= +1.5 dB |")
    print("|---|---|---|")
    for label in variants:
        kept = [r[label][1] for r in clean_rows]
        worked = sum(r[label][0] > 0.2 for r in clean_rows)
        gains = [r[label][1] - r["input"] for r in rain_rows]
        print(f"| {label} | {statistics.median(kept):.2f} / {min(kept):.2f}, {sum(v < 35 for v in kept)} / "
              f"{sum(v < 40 for v in kept)}, {worked} | {np.mean([r[label][1] for r in rain_rows]):.2f}, "
              f"{np.mean(gains):+.2f} / {np.median(gains):+.2f} / {min(gains):+.2f}, {sum(g < -0.5 for g in gains)}, "
              f"{sum(g >= 1.5 for g in gains)} |")


if __name__ == "__main__":
    main()
