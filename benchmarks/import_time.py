"""Start-up time of `airnet --help` and `import airnet_restore`, as a ratio to `python -c pass`.

Each command runs --repeats times in a fresh interpreter, interleaved so machine load hits
all of them alike; the medians and their ratios to the bare interpreter are printed. It then
checks, in one more subprocess, that `--help` imported none of the heavy libraries.

    python benchmarks/import_time.py
    python benchmarks/import_time.py --repeats 21
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

HEAVY = ("torch", "torchvision", "numba", "cv2", "numpy")
# The console script installed beside this interpreter (not a shell shim found on PATH).
SCRIPT = Path(sys.executable).with_name("airnet")
COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "import airnet_restore": [sys.executable, "-c", "import airnet_restore"],
    "airnet --help": [str(SCRIPT), "--help"],
    "python -m airnet_restore --help": [sys.executable, "-m", "airnet_restore", "--help"],
}
# Parses --help as `python -m airnet_restore` does, then prints which heavy modules got imported.
HELP_PROBE = f"""
import json, runpy, sys
sys.argv = ["airnet", "--help"]
try:
    runpy.run_module("airnet_restore", run_name="__main__", alter_sys=True)
except SystemExit:
    pass
print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))
"""


def time_once(cmd: list[str]) -> float:
    """Wall seconds of one run of ``cmd``, which must exit 0."""
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def heavy_imported_by_help() -> list[str]:
    """The heavy libraries in ``sys.modules`` after `python -m airnet_restore --help`."""
    out = subprocess.run([sys.executable, "-c", HELP_PROBE], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=11, help="runs of each command (default 11)")
    args = parser.parse_args()

    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.repeats):
        for name, cmd in COMMANDS.items():
            times[name].append(time_once(cmd))
    base = statistics.median(times["python -c pass"])
    print(f"median of {args.repeats} runs, {sys.executable}")
    print("| command | median s | ratio to python -c pass |")
    print("|---|---|---|")
    for name, samples in times.items():
        med = statistics.median(samples)
        print(f"| {name} | {med:.3f} | {med / base:.1f}x |")

    heavy = heavy_imported_by_help()
    assert not heavy, f"--help imported {', '.join(heavy)}"
    print(f"--help imported none of {', '.join(HEAVY)}")


if __name__ == "__main__":
    main()
