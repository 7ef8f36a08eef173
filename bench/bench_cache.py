"""Row 3: the same suite re-run with every answer cached, against its cold run.

Row 1's suite (1,000 four-way examples, the ~5M-parameter GPT-2): ``tollgate run`` on a fresh
store computes every example (cold), then the same command runs ``--repeat`` times, each serving
every example from the cache (cached). Whole processes. The cold run is row 1's Tollgate run, so
it is measured ``--cold`` times (default once, to keep ``run_all`` short; row 1 has its spread);
the ratio is the median cold run over each cached run.

    python bench/bench_cache.py [--smoke] [--repeat N] [--cold N]
"""

from __future__ import annotations

import json
import shutil
import statistics
import sys

import workloads
from common import Report, parse, parser, ratios, run, tool

MODEL = "m5"


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0], repeat=5)
    p.add_argument("--cold", type=int, default=1, metavar="N", help="cold runs (default 1)")
    args = parse(p, argv)
    n = 24 if args.smoke else 1000
    model_dir = workloads.gpt2(args.cache, smoke=args.smoke)
    root = args.cache / "cache"
    shutil.rmtree(root, ignore_errors=True)
    project = workloads.write_project(root, {MODEL: workloads.hf_model(model_dir)})
    suite = workloads.choice_suite(project, n).name
    argv_run = [*tool("tollgate"), "run", "--model", MODEL, "--suite", suite, "--no-progress", "--format", "json"]

    cold, cached, served = [], [], []
    for _ in range(max(1, args.cold)):
        workloads.fresh_store(project)
        cold.append(run(argv_run, cwd=project).wall_s)
    for _ in range(args.repeat):
        p = run(argv_run, cwd=project)
        cached.append(p.wall_s)
        row = json.loads(p.stdout)[0]
        served.append(row["cached"] / row["n_examples"])

    r = Report("bench_cache", args, params={"examples": n, "model": model_dir.name, "suite": suite})
    r.add("cold run, whole process", cold, "s")
    r.add("cached re-run, whole process", cached, "s", bar="< 2")
    r.add("cold / cached", ratios([statistics.median(cold)] * len(cached), cached), "x", bar=">= 50")
    r.add("share served from the cache", served, "", note="must be 1: every example cached")
    r.finish()
    return 0


if __name__ == "__main__":
    sys.exit(main())
