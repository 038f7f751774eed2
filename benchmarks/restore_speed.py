"""Time ``restore_tensor`` for every registered variant on a 1-megapixel image (default 1000x1000).

    python benchmarks/restore_speed.py [--size 1000] [--repeats 3] [--device cpu] [--auto]

Random weights are as fast as trained ones, so variants without bundled weights are timed too
(they have no degradation prototypes, so the automatic blend costs them nothing). ``--auto``
also times the default variant's bundled weights as ``airnet restore`` runs them (strength and
anchor auto: one inspection pass first, then the blend and, where noise is found, the noise model)
against the network alone (``postfilter="none"``), interleaved, as a ratio; the blend it applied is
printed with it (the random test image is found noisy, so the noise model runs).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from airnet_restore.constants import DEFAULT_VARIANT
from airnet_restore.inference.pipeline import restore_image, restore_tensor
from airnet_restore.loading import load_model
from airnet_restore.models import AirNet
from airnet_restore.variants import list_variants


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--variants", help="comma list (default: all)")
    parser.add_argument("--auto", action="store_true", help="time the automatic blend (inspection, anchor) on the default weights")
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
    if args.auto:
        time_auto(x, device, args.repeats)


def time_auto(x: torch.Tensor, device: torch.device, repeats: int) -> None:
    """The default weights with the automatic blend (inspection, then the blended correction) against the network alone."""
    model = load_model(DEFAULT_VARIANT, device=str(device))
    restore_tensor(model, x[:, :64, :64])
    times: dict[str, list[float]] = {"network": [], "auto": []}
    for _ in range(repeats):
        for kind in times:
            t0 = time.perf_counter()
            restore_tensor(model, x, postfilter="none" if kind == "network" else "auto")
            times[kind].append(time.perf_counter() - t0)
    one, auto = (statistics.median(times[k]) for k in ("network", "auto"))
    detected = model.postfilter.plan(model.inspect(x))
    applied = restore_image(model, x.permute(1, 2, 0).numpy()).blend  # untimed: the anchor after the check
    print(f"{DEFAULT_VARIANT}: network alone {one:.2f} s, automatic blend {auto:.2f} s (median of {repeats}): {auto / one:.3f}x "
          f"({applied.describe()}; the detectors' anchor {detected.anchor:.2f}, noise sigma {detected.noise:.1f})")


if __name__ == "__main__":
    main()
