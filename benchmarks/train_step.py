"""Time one training step (forward, backward, Adam) in the default and the channels-last layout.

    python benchmarks/train_step.py [--variant airnet-lite] [--batch 5] [--patch 64] [--repeats 5]

Both layouts are timed alternately in one process on the same inputs.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from airnet_restore.models import AirNet
from airnet_restore.variants import get_variant


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="airnet-lite")
    parser.add_argument("--batch", type=int, default=5)
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    config = get_variant(args.variant).config
    g = torch.Generator().manual_seed(0)
    x1, x2, clean = (torch.rand(args.batch, 3, args.patch, args.patch, generator=g) for _ in range(3))
    runs = {}
    for layout in (torch.contiguous_format, torch.channels_last):
        torch.manual_seed(0)
        model = AirNet(config).train().to(memory_format=layout)
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        inputs = [t.contiguous(memory_format=layout) for t in (x1, x2, clean)]

        def step(model=model, opt=opt, inputs=inputs) -> None:
            restored, logits, labels = model(inputs[0], inputs[1])
            loss = F.l1_loss(restored, inputs[2]) + 0.1 * F.cross_entropy(logits, labels)
            opt.zero_grad()
            loss.backward()
            opt.step()

        runs[layout] = step
    times: dict = {k: [] for k in runs}
    for _ in range(args.repeats + 1):  # the first round warms up
        for layout, step in runs.items():
            t0 = time.perf_counter()
            step()
            times[layout].append(time.perf_counter() - t0)
    base = statistics.median(times[torch.contiguous_format][1:])
    cl = statistics.median(times[torch.channels_last][1:])
    print(f"{args.variant}, batch {args.batch} x {args.patch}^2, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"default layout: {base:.3f} s/step; channels_last: {cl:.3f} s/step; ratio {base / cl:.2f}x")


if __name__ == "__main__":
    main()
