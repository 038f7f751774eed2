"""What restoring in bf16 changes: the default restore at ``precision="bf16"`` against fp32 on the same photos.

    python benchmarks/bf16_quality.py [--photos data/pool/validation] [--crop 256] [--every 3] [--weights W]

The held-out protocol's conditions (clean and every ``ho_*`` degradation, ``evaluate.heldout_sets``) on
``--photos`` (the validation split by default: choices are made there; a held-out split is a look to record
in RUNS.md), 256-px centre crops, every ``--every``-th photo. Each image is restored as ``airnet restore``
does, in fp32 and in bf16 (autocast; the deformable convolutions sample in fp32 and, on a CPU, run their
matrix product in bf16). Printed per condition: the mean PSNR of each, the mean change, the worst photo's
change (bf16 - fp32, dB) and the PSNR of the bf16 output against the fp32 one. Issue 35 makes bf16 the
default only where the change is under 0.05 dB. On a CPU without bf16 instructions the bf16 run is
emulated (slow, same rounding): the numbers hold, its time does not.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import statistics

import numpy as np

from airnet_restore.constants import DEFAULT_VARIANT
from airnet_restore.evaluate import Task, build_tasks, evaluate, heldout_sets, model_method
from airnet_restore.loading import load_model
from airnet_restore.metrics import get_protocol


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR (dB) of one restored image against another, both in [0, 1]; inf where they are equal."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", default="data/pool/validation", help="a folder of clean photos")
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--every", type=int, default=3, help="every N-th photo (1: all)")
    parser.add_argument("--weights", default=DEFAULT_VARIANT)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    protocol = get_protocol("airnet")
    tasks = []
    for name, path in heldout_sets(args.photos):
        for task in build_tasks(name, path, protocol, crop=args.crop):
            keep = range(0, len(task.names), args.every)
            tasks.append(dataclasses.replace(task, names=[task.names[i] for i in keep],
                                             degraded=[task.degraded[i] for i in keep],
                                             clean=[task.clean[i] for i in keep]))
    model = load_model(args.weights, device=args.device)
    outputs: dict[str, list[np.ndarray]] = {"fp32": [], "bf16": []}

    def method(precision: str):  # keeps each output, in the order evaluate runs them, to compare image by image
        run = model_method(model, precision=precision)

        def record(degraded: np.ndarray, task: Task) -> np.ndarray:
            out = run(degraded, task)
            outputs[precision].append(out)
            return out

        return record

    rows = {p: (method(p), lambda _task: True) for p in ("fp32", "bf16")}
    report = evaluate(tasks, rows, protocol, progress=False)
    per = {(r["method"], r["task"], r["image"]): float(r["psnr"]) for r in report.per_image}
    fp32_out, bf16_out = outputs["fp32"], outputs["bf16"]
    print(f"{args.weights}, {args.photos}, {args.crop}-px crops, every {args.every}th photo, device {args.device}")
    print("| condition | photos | fp32 | bf16 | mean change | worst change | bf16 vs fp32 output (dB) |")
    print("|---|---|---|---|---|---|---|")
    index, changes = 0, []
    for task in tasks:
        a = [per[("fp32", task.label, n)] for n in task.names]
        b = [per[("bf16", task.label, n)] for n in task.names]
        delta = [y - x for x, y in zip(a, b)]
        changes += delta
        agree = [agreement(bf16_out[index + i], fp32_out[index + i]) for i in range(len(task.names))]
        index += len(task.names)
        print(f"| {task.label} | {len(a)} | {statistics.fmean(a):.2f} | {statistics.fmean(b):.2f} | "
              f"{statistics.fmean(delta):+.3f} | {max(delta, key=abs):+.3f} | "
              f"{statistics.median(agree):.1f} median, {min(agree):.1f} lowest |", flush=True)
    print(f"all: mean change {statistics.fmean(changes):+.4f} dB, largest {max(changes, key=abs):+.3f} dB "
          f"over {len(changes)} images")


if __name__ == "__main__":
    main()
