"""Time ``restore_tensor`` for every registered variant on a 1-megapixel image (default 1000x1000).

    python benchmarks/restore_speed.py [--size 1000] [--repeats 3] [--device cpu] [--strength]

Random weights are as fast as trained ones, so variants without bundled weights are timed too
(they have no degradation prototypes, so ``strength="auto"`` costs them nothing). ``--strength``
also times the default variant's bundled weights with ``strength="auto"`` (one inspection pass
first) against ``strength=1``, interleaved, as a ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from airnet_restore.constants import DEFAULT_VARIANT
from airnet_restore.inference.pipeline import restore_tensor
from airnet_restore.models import AirNet
from airnet_restore.variants import list_variants, load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--variants", help="comma list (default: all)")
    parser.add_argument("--strength", action="store_true", help="time the inspection of strength='auto' on the default weights")
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
    if args.strength:
        time_strength(x, device, args.repeats)


def time_strength(x: torch.Tensor, device: torch.device, repeats: int) -> None:
    """The default weights with strength auto (inspection, then the scaled correction) against strength 1."""
    model = load_model(DEFAULT_VARIANT, device=str(device))
    restore_tensor(model, x[:, :64, :64])
    times: dict[str, list[float]] = {"1": [], "auto": []}
    for _ in range(repeats):
        for strength in times:
            t0 = time.perf_counter()
            restore_tensor(model, x, strength=1.0 if strength == "1" else "auto")
            times[strength].append(time.perf_counter() - t0)
    one, auto = (statistics.median(times[k]) for k in ("1", "auto"))
    print(f"{DEFAULT_VARIANT}: strength 1 {one:.2f} s, strength auto {auto:.2f} s (median of {repeats}): {auto / one:.3f}x")


if __name__ == "__main__":
    main()
