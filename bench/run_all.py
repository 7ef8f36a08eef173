"""Run every benchmark, rows 1 to 8, and say how long each took.

    python bench/run_all.py [--smoke] [--repeat N] [--results PATH] [--cache DIR] [--only NAME ...]

Options other than ``--only`` are passed to every script. Full mode takes under 20 minutes on the
2-core machine (the data is generated into the cache folder the first time, which adds a few
minutes once); ``--smoke`` runs each on a tiny input in seconds. Exits non-zero if any failed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from common import BENCH

ORDER = ["bench_choice", "bench_generate", "bench_cache", "bench_cli", "bench_ingest", "bench_gate", "bench_router",
         "bench_dashboard"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="+", choices=ORDER, metavar="NAME", help=f"some of: {', '.join(ORDER)}")
    args, passed = p.parse_known_args()
    missing = sorted({f.stem for f in BENCH.glob("bench_*.py")} - set(ORDER))
    if missing:
        print(f"run_all: {', '.join(missing)} not in ORDER; add them", file=sys.stderr)
        return 2
    outcomes = []
    for name in args.only or ORDER:
        print(f"\n=== {name} {' '.join(passed)}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call([sys.executable, str(BENCH / f"{name}.py"), *passed])
        outcomes.append((name, rc, time.perf_counter() - t0))
    print("\nrun_all:")
    for name, rc, seconds in outcomes:
        print(f"  {name:<16} {'ok' if rc == 0 else f'FAILED (exit {rc})':<16} {seconds:7.1f} s")
    print(f"  {'total':<16} {'':<16} {sum(s for _, _, s in outcomes):7.1f} s")
    return 0 if all(rc == 0 for _, rc, _ in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
