"""Time one CPU training step (forward, backward, Adam) of several training paths, in one run.

    python benchmarks/train_step.py [--variant airnet-lite] [--batch 8] [--patch 96] [--steps 3] [--rounds 2]

Paths (``--paths``, comma list):

- ``today``: the path before issue 11: ``grid_sample`` DCN, glibc's default malloc settings.
- ``alloc``: ``grid_sample`` DCN with the tuned allocator (``airnet_restore.memory``).
- ``numba``: the numba DCN with its backward, glibc's default malloc settings.
- ``new``: numba DCN and tuned allocator in the default layout (``train.channels_last: false``).
- ``new-cl``: the same in the channels-last layout: what ``airnet train`` does on a CPU.

malloc settings hold for a whole process and cannot be undone, so every path runs in its own
child process; the paths take turns, ``--rounds`` times, so a noisy machine slows all alike.
Each child times ``--steps`` steps after one warm-up step; the table gives the median over all
rounds and the peak resident set of the child.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

PATHS = {  # name: (dcn_impl, channels_last, tuned allocator)
    "today": ("grid_sample", False, False),
    "alloc": ("grid_sample", False, True),
    "numba": ("numba", False, False),
    "new": ("auto", False, True),
    "new-cl": ("auto", True, True),
}


def child(args: argparse.Namespace) -> None:
    """Time one path in this process and print its step times and peak RSS as JSON."""
    import torch
    import torch.nn.functional as F

    from airnet_restore.memory import tune_allocator
    from airnet_restore.models import AirNet
    from airnet_restore.variants import get_variant

    impl, channels_last, tuned = PATHS[args.child]
    if tuned:
        tune_allocator()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    g = torch.Generator().manual_seed(0)
    x1, x2, clean = (torch.rand(args.batch, 3, args.patch, args.patch, generator=g).contiguous(memory_format=fmt)
                     for _ in range(3))
    torch.manual_seed(0)
    model = AirNet(get_variant(args.variant).config, dcn_impl=impl).train().to(memory_format=fmt)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    times = []
    for _ in range(args.steps + 1):  # the first step warms up
        t0 = time.perf_counter()
        restored, logits, labels = model(x1, x2)
        loss = F.l1_loss(restored, clean) + 0.1 * F.cross_entropy(logits, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"times": times[1:], "rss_mb": rss_mb, "threads": torch.get_num_threads(),
                      "torch": torch.__version__}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="airnet-lite")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--patch", type=int, default=96)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--paths", default="today,alloc,numba,new,new-cl")
    parser.add_argument("--child", choices=sorted(PATHS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    names = args.paths.split(",")
    unknown = [n for n in names if n not in PATHS]
    if unknown:
        parser.error(f"unknown paths {unknown}; choose from {sorted(PATHS)}")
    common = ["--variant", args.variant, "--batch", str(args.batch), "--patch", str(args.patch),
              "--steps", str(args.steps)]
    results: dict[str, dict] = {n: {"times": [], "rss_mb": 0.0} for n in names}
    info: dict = {}
    for _ in range(args.rounds):
        for name in names:
            out = subprocess.run([sys.executable, __file__, "--child", name, *common], check=True,
                                 capture_output=True, text=True).stdout
            info = json.loads(out.strip().splitlines()[-1])
            results[name]["times"] += info["times"]
            results[name]["rss_mb"] = max(results[name]["rss_mb"], info["rss_mb"])
    print(f"{args.variant}, batch {args.batch} x {args.patch}^2, {info['threads']} threads, torch {info['torch']}, "
          f"{args.rounds} rounds x {args.steps} steps per path")
    base = statistics.median(results[names[0]]["times"])
    print(f"| path | s/step | steps/s | samples/s | speed-up vs {names[0]} | peak RSS MB |")
    print("|---|---|---|---|---|---|")
    for name in names:
        t = statistics.median(results[name]["times"])
        print(f"| {name} | {t:.3f} | {1 / t:.3f} | {args.batch / t:.2f} | {base / t:.2f}x | {results[name]['rss_mb']:.0f} |")


if __name__ == "__main__":
    main()
