"""Time ``restore_tensor`` for every registered variant on a 1-megapixel image (default 1000x1000).

    python benchmarks/restore_speed.py [--size 1000] [--repeats 3] [--device cpu]

Random weights are as fast as trained ones, so variants without bundled weights are timed too.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from airnet_restore.models import AirNet
from airnet_restore.inference.pipeline import restore_tensor
from airnet_restore.variants import list_variants


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--variants", help="comma list (default: all)")
    args = parser.parse_args()
    device = torch.device(args.device)
    x = torch.rand(3, args.size, args.size, generator=torch.Generator().manual_seed(0))
    wanted = set(args.variants.split(",")) if args.variants else None
    print(f"device {device}, {torch.get_num_threads()} threads, torch {torch.__version__}, image {args.size}x{args.size}")
    print("| variant | restorer parameters | median s | s per megapixel |")
    print("|---|---|---|---|")
    for v in list_variants():
        if wanted and v.name not in wanted:
            continue
        model = AirNet(v.config).eval().to(device)
        restore_tensor(model, x[:, :64, :64])  # compile the numba kernel
        times = []
        for _ in range(args.repeats):
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            restore_tensor(model, x)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        n = sum(p.numel() for p in model.R.parameters())
        print(f"| {v.name} | {n:,} | {med:.2f} | {med / (args.size**2 / 1e6):.2f} |")


if __name__ == "__main__":
    main()
