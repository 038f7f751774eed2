"""Seconds to restore thin strips against a square of the same area, in one process (issue 34).

    python benchmarks/strip_speed.py --length 100000 --thickness 3 --thickness 12

Each strip (T x L and L x T) and the square of the same area are random noise images restored by the
default weights, with the default ``--strength auto`` and with ``--strength 1 --anchor 0`` (the network
alone, which a strip too small for the detectors gets only when asked).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from airnet_restore.inference import restore
from airnet_restore.loading import default_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--length", type=int, default=100_000)
    parser.add_argument("--thickness", type=int, action="append", help="strip thickness in px (default 3)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = default_model("cpu")
    rng = np.random.default_rng(0)

    def seconds(shape: tuple[int, int], **options: object) -> float:
        x = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
        start = time.perf_counter()
        restore(x, model, **options)
        return time.perf_counter() - start

    seconds((64, 64))  # warm-up
    print("| image | default (s) | network alone (s) | network alone / square |\n|---|---|---|---|")
    for t in args.thickness or [3]:
        side = round((t * args.length) ** 0.5)
        square = seconds((side, side), strength=1, anchor=0)
        print(f"| {side}x{side} | {seconds((side, side)):.1f} | {square:.1f} | 1.00 |", flush=True)
        for shape in ((t, args.length), (args.length, t)):
            alone = seconds(shape, strength=1, anchor=0)
            print(f"| {shape[0]}x{shape[1]} | {seconds(shape):.1f} | {alone:.1f} | {alone / square:.2f} |", flush=True)


if __name__ == "__main__":
    main()
