"""Row 8: the dashboard's first render of each page on a store of 1 million traffic rows and 200 runs.

Written while the dashboard was being built (another issue): it looks for ``dashboard/app.py``
and the pages listed in ``dashboard.shell.PAGES`` (each opened as the start page with
``dashboard.shell.main(start=KEY)``; only the app's default page if there is no such list) and
times Streamlit's ``AppTest`` first run of each, in this process, against a project whose store
holds 1,000,000 traffic rows (row 5's file, ingested; the candidate in beta), thumbs on a tenth of
them, and 200 runs x 1,000 results (bar: under 2 s a page). "First" means a new session with
Streamlit's caches cleared; modules are already imported (one untimed render first), as on a
running server. Without the app it prints "dashboard not built yet" and records nothing.

    python bench/bench_dashboard.py [--smoke] [--repeat N]
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import workloads
from common import REPO, Report, parse, parser, timed

APP = REPO / "dashboard" / "app.py"
PROJECT_ENV = "TOLLGATE_PROJECT"  # how `tollgate dashboard` tells the app its project (dashboard/cli.py)


def main(argv: list[str] | None = None) -> int:
    args = parse(parser(__doc__.splitlines()[0], repeat=3), argv)
    if not APP.exists():
        print("dashboard not built yet: no dashboard/app.py, nothing measured")
        return 0
    rows, models, suites, examples = (2_000, 2, 2, 50) if args.smoke else (1_000_000, 20, 10, 1000)
    project = _project(args.cache, rows, models, suites, examples)
    os.environ[PROJECT_ENV] = str(project / "tollgate.yaml")
    sys.argv = [str(APP), "--project", str(project / "tollgate.yaml")]  # as `tollgate dashboard` passes it
    pages = _pages()

    r = Report("bench_dashboard", args, params={"traffic_rows": rows, "runs": models * suites,
                                                "results_per_run": examples, "pages": len(pages)})
    _first_render(pages[0])  # imports, as a running server has done them
    for page in pages:
        times, shown = [], []
        for _ in range(args.repeat):
            seconds, errors = _first_render(page)
            times.append(seconds)
            shown += errors
        r.add(f"first render: {page or 'app.py'}", times, "s", bar="< 2",
              note=f"the page showed an error: {shown[0][:120]}" if shown else "")
    r.finish()
    return 0


def _pages() -> list[str | None]:
    """The page keys of ``dashboard.shell.PAGES``, or [None]: the app's default page."""
    try:
        from dashboard import shell
    except ImportError:
        return [None]
    return [p[0] for p in getattr(shell, "PAGES", [])] or [None]


def _page_script(key: str) -> None:  # run by AppTest as a script: imports inside
    from dashboard.shell import main

    main(start=key)


def _first_render(page: str | None) -> tuple[float, list[str]]:
    """A new AppTest session on ``page`` with Streamlit's caches cleared, run once: (seconds, errors shown)."""
    import streamlit as st
    from streamlit.logger import set_log_level
    from streamlit.testing.v1 import AppTest

    set_log_level("error")  # "no runtime found" warnings of a bare AppTest
    st.cache_data.clear()
    st.cache_resource.clear()
    at = (AppTest.from_file(str(APP), default_timeout=300) if page is None
          else AppTest.from_function(_page_script, args=(page,), default_timeout=300))
    seconds, _ = timed(at.run)
    if at.exception:
        raise RuntimeError(f"page {page or 'app.py'} raised: {[e.message for e in at.exception]}")
    return seconds, [e.value for e in at.error]


def _project(cache: Path, rows: int, models: int, suites: int, examples: int) -> Path:
    """A project whose store holds the traffic of row 5 (ingested) and the runs of row 4; built once."""
    root = cache / "dashboard"
    marker = root / ".filled"
    size = json.dumps([rows, models, suites, examples])
    if marker.exists() and marker.read_text() == size:
        return root
    from harness.store import Store
    from rollout.ingest import ingest
    from rollout.stages import Stage, record

    names = ["prod", "cand", *(f"model{i:02d}" for i in range(models - 2))]
    workloads.write_project(root, {"prod": workloads.python_model("production"),
                                   "cand": workloads.python_model("candidate"),
                                   **{m: workloads.python_model() for m in names[2:]}})
    store = Store(root / ".tollgate" / "tollgate.duckdb")
    workloads.fill_runs(store, models=names, suites=suites, examples=examples)
    traffic = workloads.traffic_jsonl(cache / f"traffic-{rows}.jsonl", rows)
    ingest(traffic, store, kind="traffic", models={"prod", "cand"})
    ingest(workloads.feedback_jsonl(root / "feedback.jsonl", rows), store, kind="feedback")
    with store.write() as con:
        record(con, "cand", Stage("candidate"), Stage("shadow"), "bench", "dashboard benchmark", None, True)
        record(con, "cand", Stage("shadow"), Stage("beta", 0.1), "bench", "dashboard benchmark", None, True)
    marker.write_text(size)
    return root


if __name__ == "__main__":
    sys.exit(main())
