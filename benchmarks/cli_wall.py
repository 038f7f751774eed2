"""Wall time of whole ``airnet restore`` processes: the console script against ``main()`` with the former PNG level.

    python benchmarks/cli_wall.py IMAGE [IMAGE ...] [--rounds 3]

Each round runs, for each image, two fresh processes one after the other (outputs to a temporary folder,
``--overwrite``, ``-q``):

- now: ``python -m airnet_restore restore ...``, the console script (``cli.run``: the process ends once the command
  is done, without tearing the interpreter down; PNGs at ``PNG_COMPRESS_LEVEL``);
- before: ``main()`` called and returned from as a plain script, the interpreter torn down at exit, with the PNG
  level set back to 6 (Pillow's default; what 8-bit PNGs were written with before ``PNG_COMPRESS_LEVEL``).

Prints every run and the medians with their ratio. Start-up, reading, the restore, writing and exit all count.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time

BEFORE = ("import sys; import airnet_restore.image_io as m; m.PNG_COMPRESS_LEVEL = 6; "
          "from airnet_restore.cli import main; sys.exit(main(sys.argv[1:]))")


def wall(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("images", nargs="+")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as out:
        for image in args.images:
            tail = ["restore", image, "-o", out, "-q", "--overwrite"]
            runs: dict[str, list[float]] = {"now": [], "before": []}
            for _ in range(args.rounds):
                runs["now"].append(wall([sys.executable, "-m", "airnet_restore", *tail]))
                runs["before"].append(wall([sys.executable, "-c", BEFORE, *tail]))
            medians = {k: statistics.median(v) for k, v in runs.items()}
            for k, v in runs.items():
                print(f"{image} {k}: median {medians[k]:.2f} s ({', '.join(f'{t:.2f}' for t in v)})")
            print(f"{image} now / before: {medians['now'] / medians['before']:.3f}x")


if __name__ == "__main__":
    main()
