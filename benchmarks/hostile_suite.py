"""Run the hostile suite (tests/hostile) and print its counts: OK, BAD, DATA-LOSS, SECURITY per area.

    python benchmarks/hostile_suite.py            # every case; exit 1 if any is not OK
    python benchmarks/hostile_suite.py --area web # one area
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.hostile.harness import VERDICTS, all_cases, run_case


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--area", action="append", help="only these areas (files, images, web, config, ...)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every case, not only those not OK")
    args = parser.parse_args()
    cases = [c for c in all_cases() if not args.area or c.area in args.area]
    counts: dict[str, Counter] = {}
    start = time.perf_counter()
    for case in cases:
        with tempfile.TemporaryDirectory(prefix="airnet-hostile-") as root:
            verdict, message = run_case(case, Path(root))
        counts.setdefault(case.area, Counter())[verdict] += 1
        if verdict != "OK" or args.verbose:
            print(f"{verdict:9} {case.id}" + (f": {message.splitlines()[0]}" if message else ""))
    total = sum(counts.values(), Counter())
    print(f"\n| area | cases | {' | '.join(VERDICTS)} |\n|---|---|{'---|' * len(VERDICTS)}")
    for area, c in [*sorted(counts.items()), ("all", total)]:
        print(f"| {area} | {sum(c.values())} | {' | '.join(str(c[v]) for v in VERDICTS)} |")
    print(f"\n{len(cases)} cases in {time.perf_counter() - start:.0f} s")
    return 0 if total["OK"] == len(cases) else 1


if __name__ == "__main__":
    sys.exit(main())
