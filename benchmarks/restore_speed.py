"""Seconds per megapixel of restoring a noisy photo: the default, the network alone, its plain forward, and the
classical denoisers, side by side in one run (issue 35).

    python benchmarks/restore_speed.py [--size 1000] [--repeats 3] [--device cpu] [--bf16] [--variants all]

The photo is scikit-image's astronaut resized to ``--size`` square with seeded Gaussian noise of sigma 25
(``profile_restore.noisy_photo``). Rows, interleaved in every round, medians of ``--repeats``:

- default: ``restore_tensor(model, x)`` with the default weights, as ``airnet restore`` runs them
  (tile auto, the post-filter auto: the detectors, the check, the noise model);
- network alone: ``restore_tensor(model, x, postfilter="none")`` (tile auto);
- plain forward: one ``model.network(x)`` call on the whole image under ``torch.no_grad()``;
- plain-conv stand-in: the same call of a copy of the network whose deformable convolutions are plain 3x3
  convolutions (``dcn_speed.PlainConvStandIn``), the bound the network's own forward approaches;
- non-local means: ``baselines.nlm`` (OpenCV, blind) on the whole image;
- CBM3D: ``baselines.cbm3d`` with the true sigma on the central ``--cbm3d-crop`` square only (it takes about a
  minute per megapixel), its time scaled to a megapixel;
- with ``--bf16``: the network alone at ``precision="bf16"`` as well.

``--variants`` (a comma list or ``all``) adds the network alone of registered variants with random weights
(as fast as trained ones), one row each.

Ratios are printed two ways: of the medians, and the median of each round's own ratio (the two rows of a round
ran close together, so a drift of the machine's speed between rounds cancels in it).
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from dcn_speed import stand_in
from profile_restore import noisy_photo

from airnet_restore.baselines.denoise import cbm3d, nlm
from airnet_restore.constants import DEFAULT_VARIANT
from airnet_restore.inference.pipeline import restore_tensor
from airnet_restore.loading import load_model
from airnet_restore.models import AirNet
from airnet_restore.variants import list_variants

SIGMA = 25.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cbm3d-crop", type=int, default=256, help="CBM3D runs on this central square (0: not at all)")
    parser.add_argument("--bf16", action="store_true", help="also the network alone in bf16")
    parser.add_argument("--variants", help="also these registered variants (comma list or all), random weights")
    args = parser.parse_args()
    device = torch.device(args.device)
    photo = noisy_photo(args.size)
    x = (torch.from_numpy(photo).permute(2, 0, 1).float() / 255).to(device)
    image = photo.astype(np.float64) / 255
    c0 = max(0, (args.size - args.cbm3d_crop) // 2)
    crop = image[c0 : c0 + args.cbm3d_crop, c0 : c0 + args.cbm3d_crop]
    model = load_model(DEFAULT_VARIANT, device=str(device))
    restore_tensor(model, x[:, :64, :64])  # compiles the numba kernel
    if args.bf16:
        restore_tensor(model, x[:, :64, :64], precision="bf16")

    plain_convs = stand_in(copy.deepcopy(model.network))

    def forward(network: torch.nn.Module = model.network) -> None:
        with torch.no_grad():
            network(x[None])

    forward(plain_convs)  # warms the stand-in's convolutions

    cases: dict[str, tuple[Callable[[], object], float]] = {
        "default (postfilter auto)": (lambda: restore_tensor(model, x), 1.0),
        "network alone (postfilter none)": (lambda: restore_tensor(model, x, postfilter="none"), 1.0),
        "plain forward model.network(x)": (forward, 1.0),
        "plain-conv stand-in of the network": (lambda: forward(plain_convs), 1.0),
        "non-local means (OpenCV)": (lambda: nlm(image), 1.0),
    }
    if args.bf16:
        cases["network alone, bf16"] = (lambda: restore_tensor(model, x, postfilter="none", precision="bf16"), 1.0)
    if args.cbm3d_crop:
        cases[f"CBM3D (sigma given; {crop.shape[0]}x{crop.shape[1]} crop, scaled)"] = (
            lambda: cbm3d(crop, SIGMA), args.size**2 / crop.shape[0] / crop.shape[1])
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.repeats):
        for name, (run, _) in cases.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            run()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - t0)
    megapixels = args.size**2 / 1e6
    per_mp = {name: statistics.median(times[name]) * scale / megapixels for name, (_, scale) in cases.items()}
    print(f"{args.size}x{args.size} astronaut, sigma {SIGMA:g}; {DEFAULT_VARIANT}; device {device}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}; median of {args.repeats} interleaved rounds; "
          f"load average {os.getloadavg()[0]:.2f} at the end")
    print("| what | s per megapixel | runs (s) |")
    print("|---|---|---|")
    for name, seconds in per_mp.items():
        print(f"| {name} | {seconds:.2f} | {', '.join(f'{t:.2f}' for t in times[name])} |")
    default, alone, plain, stand = (list(cases)[i] for i in range(4))
    pairs = [("default / plain forward", default, plain), ("default / network alone", default, alone),
             ("network alone / plain forward", alone, plain), ("plain forward / plain-conv stand-in", plain, stand)]
    if args.bf16:
        pairs.append(("bf16 / fp32 network alone", "network alone, bf16", alone))
    print("\n| ratio | of the medians | median of the rounds' own | each round |")
    print("|---|---|---|---|")
    for label, a, b in pairs:
        rounds = [ta / tb for ta, tb in zip(times[a], times[b])]  # one round's two rows ran minutes apart at most
        print(f"| {label} | {per_mp[a] / per_mp[b]:.3f}x | {statistics.median(rounds):.3f}x | "
              f"{', '.join(f'{r:.3f}' for r in rounds)} |")
    if args.variants:
        time_variants(args.variants, x, device, args.repeats)


def time_variants(names: str, x: torch.Tensor, device: torch.device, repeats: int) -> None:
    """The network alone of registered variants with random weights: one row each."""
    wanted = None if names == "all" else set(names.split(","))
    print("\n| variant (random weights) | restorer parameters | median s | s per megapixel |")
    print("|---|---|---|---|")
    for v in list_variants():
        if wanted is not None and v.name not in wanted:
            continue
        model = AirNet(v.config).eval().to(device)
        restore_tensor(model, x[:, :64, :64], postfilter="none")
        times = []
        for _ in range(repeats):
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            restore_tensor(model, x, postfilter="none")
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        n = sum(p.numel() for p in model.R.parameters())
        print(f"| {v.name} | {n:,} | {med:.2f} | {med / (x.shape[-1] * x.shape[-2] / 1e6):.2f} |")


if __name__ == "__main__":
    main()
