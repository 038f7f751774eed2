"""Wall time of whole ``airnet restore`` processes with idle OpenMP threads sleeping (the command's default,
``threads.wait_passively``) and spinning (``AIRNET_PASSIVE_THREADS=0``: the runtime's default), interleaved.

    python benchmarks/thread_wait.py [--size 512] [--rounds 2]

The photo is scikit-image's astronaut at ``--size`` with seeded noise of sigma 25 (``profile_restore.noisy_photo``),
written as a PNG to a temporary folder; each round runs both settings, in alternating order; the outputs must be
identical. Prints each run's wall time and the load average, which is what decides the difference: on a quiet
machine spinning costs nothing, on a shared one it takes the cores from the threads that have work.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
from profile_restore import noisy_photo

SETTINGS = {"passive (default)": {}, "spinning (AIRNET_PASSIVE_THREADS=0)": {"AIRNET_PASSIVE_THREADS": "0"}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    times: dict[str, list[float]] = {name: [] for name in SETTINGS}
    with tempfile.TemporaryDirectory() as tmp:
        photo = Path(tmp) / "photo.png"
        cv2.imwrite(str(photo), noisy_photo(args.size)[:, :, ::-1])
        outputs = {}
        for r in range(args.rounds):
            order = list(SETTINGS) if r % 2 == 0 else list(SETTINGS)[::-1]
            for name in order:
                out = Path(tmp) / f"out{list(SETTINGS).index(name)}"
                t0 = time.perf_counter()
                subprocess.run([sys.executable, "-m", "airnet_restore", "restore", str(photo), "-o", str(out), "-q",
                                "--overwrite"], env={**env, **SETTINGS[name]}, check=True, capture_output=True)
                times[name].append(time.perf_counter() - t0)
                outputs[name] = (out / "photo.png").read_bytes()
                print(f"round {r + 1}, {name}: {times[name][-1]:.2f} s, load average {os.getloadavg()[0]:.2f}", flush=True)
    same = len(set(outputs.values())) == 1
    print(f"\n{args.size}x{args.size}, {args.rounds} rounds; outputs identical: {same}")
    print("| threads waiting | median s | runs (s) |")
    print("|---|---|---|")
    for name, runs in times.items():
        print(f"| {name} | {statistics.median(runs):.2f} | {', '.join(f'{t:.2f}' for t in runs)} |")
    passive, spinning = (statistics.median(v) for v in times.values())
    print(f"\nspinning / passive {spinning / passive:.3f}x")


if __name__ == "__main__":
    main()
