"""Row 4: start-up of the CLI, and ``tollgate results`` on a large store.

- ``tollgate --help``, whole process (bar: 0.3 s);
- ``tollgate results`` (the table, as a user types it) on a store of 200 completed runs x 1,000
  scored examples (20 models x 10 suites, two metrics each), filled through the store API
  (bar: 1 s);
- which heavy modules (torch, transformers, lm_eval, pandas, scipy, streamlit) each path imports:
  none should be.

    python bench/bench_cli.py [--smoke] [--repeat N]
"""

from __future__ import annotations

import json
import sys

import workloads
from common import Report, parse, parser, run, timed, tool

HEAVY = ("torch", "transformers", "lm_eval", "pandas", "pandera", "scipy", "streamlit")
# The CLI as the console script runs it, reporting at exit which heavy modules it imported.
PROBE = ("import atexit, json, sys\n"
         f"atexit.register(lambda: print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)), "
         "file=sys.stderr))\n"
         "from harness.cli import main\n"
         "sys.exit(main(sys.argv[1:]))")


def main(argv: list[str] | None = None) -> int:
    args = parse(parser(__doc__.splitlines()[0], repeat=5), argv)
    models, suites, examples = (2, 2, 50) if args.smoke else (20, 10, 1000)
    project = args.cache / "cli"
    names = [f"model{i:02d}" for i in range(models)]
    marker = project / ".filled"
    if not marker.exists() or marker.read_text() != json.dumps([models, suites, examples]):
        workloads.write_project(project, {m: workloads.python_model() for m in names})
        from harness.store import Store

        fill_s, n_runs = timed(lambda: workloads.fill_runs(Store(project / ".tollgate" / "tollgate.duckdb"),
                                                           models=names, suites=suites, examples=examples))
        print(f"filled the store with {n_runs} runs x {examples} results in {fill_s:.1f} s", file=sys.stderr)
        marker.write_text(json.dumps([models, suites, examples]))

    help_s, results_s = [], []
    for _ in range(args.repeat):
        help_s.append(run([*tool("tollgate"), "--help"], cwd=project).wall_s)
        results_s.append(run([*tool("tollgate"), "results"], cwd=project).wall_s)
    imported = {cmd: json.loads(run([sys.executable, "-c", PROBE, *cmd.split()], cwd=project).stderr.splitlines()[-1])
                for cmd in ("--help", "results")}

    r = Report("bench_cli", args, params={"runs": models * suites, "results_per_run": examples,
                                          "metrics_per_result": 2})
    r.add("tollgate --help", help_s, "s", bar="< 0.3")
    r.add("tollgate results (large store)", results_s, "s", bar="< 1")
    for cmd, mods in imported.items():
        r.add(f"heavy modules imported by 'tollgate {cmd}'", [len(mods)], "modules", bar="== 0",
              note=", ".join(mods) or "none")
    r.finish()
    return 0


if __name__ == "__main__":
    sys.exit(main())
