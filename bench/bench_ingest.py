"""Row 5: traffic ingest of 1,000,000 JSONL rows with full validation, against pandas + pandera.

The file (about 360 MB: production answers, shadow copies and beta answers over 30 days) is
generated once into the cache folder. In each repetition, on a fresh store, whole processes:
- ``tollgate traffic ingest FILE``;
- ``python bench/ingest_pandas.py``: ``pandas.read_json(lines=True)`` + a pandera schema with the
  same checks + one insert into the same DuckDB table, as a user would write it.
Wall time and peak RSS (``wait4``) of each, and their ratios (bars: under 2 s and 600 MB, at
least 6x faster than the baseline).

    python bench/bench_ingest.py [--smoke] [--repeat N]
"""

from __future__ import annotations

import sys

import workloads
from common import BENCH, Report, parse, parser, ratios, run, timed, tool


def main(argv: list[str] | None = None) -> int:
    args = parse(parser(__doc__.splitlines()[0], repeat=3), argv)
    rows = 2_000 if args.smoke else 1_000_000
    gen_s, path = timed(lambda: workloads.traffic_jsonl(args.cache / f"traffic-{rows}.jsonl", rows))
    size_mb = path.stat().st_size / 1e6
    project = workloads.write_project(args.cache / "ingest", {"prod": workloads.python_model("production"),
                                                              "cand": workloads.python_model("candidate")})
    store = project / ".tollgate" / "tollgate.duckdb"
    baseline_store = project / "baseline.duckdb"

    tg_s, tg_mb, pd_s, pd_mb = [], [], [], []

    def tollgate_once() -> None:
        workloads.fresh_store(project)
        p = run([*tool("tollgate"), "traffic", "ingest", str(path)], cwd=project)
        tg_s.append(p.wall_s)
        tg_mb.append(p.peak_rss_mib)

    def baseline_once() -> None:
        baseline_store.unlink(missing_ok=True)
        p = run([sys.executable, str(BENCH / "ingest_pandas.py"), str(path), str(baseline_store), "prod,cand"])
        pd_s.append(p.wall_s)
        pd_mb.append(p.peak_rss_mib)

    for i in range(args.repeat):  # the order alternates, so neither always runs on a warmer cache
        for once in (tollgate_once, baseline_once) if i % 2 == 0 else (baseline_once, tollgate_once):
            once()
    stored = _count(store), _count(baseline_store)

    r = Report("bench_ingest", args, params={"rows": rows, "file_mb": round(size_mb, 1)})
    r.add("tollgate traffic ingest, wall", tg_s, "s", bar="< 2")
    r.add("tollgate traffic ingest, peak RSS", tg_mb, "MiB", bar="< 600")
    r.add("pandas + pandera + insert, wall", pd_s, "s")
    r.add("pandas + pandera + insert, peak RSS", pd_mb, "MiB")
    r.add("baseline / tollgate, wall", ratios(pd_s, tg_s), "x", bar=">= 6")
    r.add("baseline / tollgate, peak RSS", ratios(pd_mb, tg_mb), "x")
    r.note(f"rows stored: tollgate {stored[0]:,}, baseline {stored[1]:,} of {rows:,}"
           + ("" if stored[0] == stored[1] == rows else " (they differ: not like for like)")
           + (f"; the file was generated in {gen_s:.1f} s" if gen_s > 1 else ""))
    r.finish()
    return 0


def _count(store_path) -> int:
    import duckdb

    con = duckdb.connect(str(store_path), read_only=True)
    try:
        return con.execute("SELECT count(*) FROM traffic").fetchone()[0]
    finally:
        con.close()


if __name__ == "__main__":
    sys.exit(main())
