"""Time the noise model's Wiener filter by implementation and by how many rows of patches it transforms at a time.

    python benchmarks/wiener_speed.py [--size 1000] [--sigma 15] [--repeats 3] [--bands 8 16 24 32 48] [--impls torch numba]

A size x size noisy image (a smooth gradient with fine stripes, noise of ``sigma`` on the 0-255
scale, seed 0) is filtered at the default settings (three passes, four scales), guided by itself, by each
implementation (``wiener(impl=)``: ``torch``, strided convolutions; ``numba``, the CPU loop with separable
transforms) with each band size (``band_rows``); ``torch whole``, one band over the whole plane (the filter as it
was before bands), is the reference. Runs interleaved, medians printed in seconds and as a ratio to the
reference, with the largest difference from its estimate (the same up to rounding). Torch's threads as set
(``--threads``); malloc tuned as a restore tunes it (``memory.tune_allocator``: freed buffers stay in the
process), unless ``--default-malloc``.
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
    parser.add_argument("--impls", nargs="+", choices=["torch", "numba"], default=["torch", "numba"])
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
    choices = [("torch", whole)] + [(impl, b) for impl in args.impls for b in args.bands]

    def run(choice: tuple[str, int]) -> torch.Tensor:
        impl, rows = choice
        return wiener(x, x, sigma, band_rows=rows, impl=impl)  # type: ignore[arg-type]

    reference = run(choices[0])
    difference = {c: float((run(c) - reference).abs().max()) for c in choices[1:]}
    times: dict[tuple[str, int], list[float]] = {c: [] for c in choices}
    for _ in range(args.repeats):
        for c in choices:
            start = time.perf_counter()
            run(c)
            times[c].append(time.perf_counter() - start)
    base = statistics.median(times[choices[0]])
    malloc = "glibc's default malloc" if args.default_malloc else "malloc tuned as a restore tunes it"
    print(f"{args.size}x{args.size}, sigma {args.sigma:g}, {torch.get_num_threads()} threads, {malloc}, "
          f"median of {args.repeats}")
    print("| implementation | band rows | seconds | / torch whole | largest difference |")
    print("|---|---|---|---|---|")
    for c in choices:
        median = statistics.median(times[c])
        name = "whole" if c[1] == whole else str(c[1])
        diff = "-" if c == choices[0] else f"{difference[c]:.1e}"
        print(f"| {c[0]} | {name} | {median:.3f} | {median / base:.2f} | {diff} |")

if __name__ == "__main__":
    main()
