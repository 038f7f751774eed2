"""Time the noise model's Wiener filter by how many rows of patches it transforms at a time (``band_rows``).

    python benchmarks/wiener_speed.py [--size 1000] [--sigma 15] [--repeats 3] [--bands 8 16 24 32 48]

A size x size noisy image (a smooth gradient with fine stripes, noise of ``sigma`` on the 0-255
scale, seed 0) is filtered at the default settings (three passes, four scales), guided by itself;
``whole`` is one band over the whole plane (the filter as it was before bands). Runs interleaved,
medians printed in seconds and as a ratio to ``whole``, with the largest difference from ``whole``'s
estimate (the same up to rounding). Torch's threads as set (``--threads``); malloc tuned as a restore tunes it
(``memory.tune_allocator``: freed buffers stay in the process), unless ``--default-malloc``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from airnet_restore.memory import tune_allocator
from airnet_restore.postfilter.wiener import wiener


def striped_image(size: int, sigma: float) -> torch.Tensor:
    """A (1,3,size,size) image in [0, 1]: a gradient, stripes 3 px apart, and noise of ``sigma`` (0-255)."""
    g = torch.Generator().manual_seed(0)
    ramp = torch.linspace(0.1, 0.9, size)
    clean = (0.7 * ramp[None, :] + 0.3 * ramp[:, None] * (torch.arange(size) % 3 == 0)[None, :]).expand(3, -1, -1)
    return (clean + sigma / 255 * torch.randn(3, size, size, generator=g)).clamp(0, 1)[None]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--sigma", type=float, default=15.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bands", type=int, nargs="+", default=[8, 16, 24, 32, 48])
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: as set)")
    parser.add_argument("--default-malloc", action="store_true", help="glibc's malloc settings (each large buffer mapped anew)")
    args = parser.parse_args()
    if not args.default_malloc:
        tune_allocator()
    if args.threads:
        torch.set_num_threads(args.threads)
    x = striped_image(args.size, args.sigma)
    sigma = args.sigma / 255
    whole = args.size  # more rows of patches than the plane has: one band
    choices = [whole, *args.bands]
    reference = wiener(x, x, sigma, band_rows=whole)
    times: dict[int, list[float]] = {b: [] for b in choices}
    difference = {b: float((wiener(x, x, sigma, band_rows=b) - reference).abs().max()) for b in args.bands}
    for _ in range(args.repeats):
        for b in choices:
            start = time.perf_counter()
            wiener(x, x, sigma, band_rows=b)
            times[b].append(time.perf_counter() - start)
    base = statistics.median(times[whole])
    malloc = "glibc's default malloc" if args.default_malloc else "malloc tuned as a restore tunes it"
    print(f"{args.size}x{args.size}, sigma {args.sigma:g}, {torch.get_num_threads()} threads, {malloc}, "
          f"median of {args.repeats}")
    print("| band rows | seconds | / whole | largest difference |")
    print("|---|---|---|---|")
    for b in choices:
        median = statistics.median(times[b])
        name = "whole" if b == whole else str(b)
        diff = "-" if b == whole else f"{difference[b]:.1e}"
        print(f"| {name} | {median:.3f} | {median / base:.2f} | {diff} |")


if __name__ == "__main__":
    main()
