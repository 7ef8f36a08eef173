"""Read-only queries for the dashboard's evaluation pages: runs, pass rates by slice, failing examples,
the overfitting gap. Aggregation happens in DuckDB (counts, means, Wilson intervals), so a page gets a
few hundred rows however many results the store holds; every value is a parameter.

Each function takes an open connection (``Store.read()``) and returns plain dicts. The newest
completed run of each (model, suite) is what counts, as in ``store.latest_runs``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from harness.intervals import z_value

KIND_ORDER = ("train_sample", "validation", "heldout", "edge", "general", "baseline")
HIDDEN_KINDS = ("probe",)  # memorisation probes: read through the memorisation flag, not as a suite


def wilson_sql(k: str, n: str, z: float | None = None) -> tuple[str, str]:
    """SQL expressions for the Wilson interval's (low, high) of ``k`` successes in ``n`` (column names)."""
    z = z_value(0.95) if z is None else z
    z2 = z * z
    p = f"(({k})::DOUBLE / nullif({n}, 0))"
    centre = f"(({p} + {z2!r} / (2.0 * ({n}))) / (1 + {z2!r} / ({n})))"
    half = f"({z!r} * sqrt({p} * (1 - {p}) / ({n}) + {z2!r} / (4.0 * ({n}) * ({n}))) / (1 + {z2!r} / ({n})))"
    return f"greatest(0.0, {centre} - {half})", f"least(1.0, {centre} + {half})"


def _kind_rank(col: str) -> str:
    """SQL ordering QA reads failures in: held-out and edge cases first, general benchmarks last."""
    order = ("heldout", "edge", "validation", "train_sample", "general", "baseline")
    return "CASE " + " ".join(f"WHEN {col} = '{k}' THEN {i}" for i, k in enumerate(order)) + f" ELSE {len(order)} END"


def _dicts(cur: Any) -> list[dict[str, Any]]:
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]


def _latest_cte(models: list[str] | None, suites: list[str] | None, stage: str | None) -> tuple[str, list[Any]]:
    """``latest``: the newest completed run per (model, suite), optionally of one stage, without probes."""
    sql = ("latest AS (SELECT DISTINCT ON (model, suite) run_id, model, suite, suite_hash, suite_kind, stage "
           "FROM runs WHERE status = 'completed' AND NOT list_contains(?, suite_kind)")
    params: list[Any] = [list(HIDDEN_KINDS)]
    if models:
        sql += " AND list_contains(?, model)"
        params.append(list(models))
    if suites:
        sql += " AND list_contains(?, suite)"
        params.append(list(suites))
    if stage:
        sql += " AND stage = ?"
        params.append(stage)
    return sql + " ORDER BY model, suite, started_at DESC)", params


# -- the store as a whole -------------------------------------------------------------------------------
@dataclass
class StoreStatus:
    """What the store holds, read without upgrading or writing anything."""

    path: str
    exists: bool
    schema_version: int = 0
    expected_version: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    problem: str | None = None

    @property
    def usable(self) -> bool:
        return self.exists and self.problem is None and self.schema_version == self.expected_version

    @property
    def empty(self) -> bool:
        return not self.counts.get("runs") and not self.counts.get("traffic")


def store_status(store: Any) -> StoreStatus:
    """Schema version and row counts, on a read-only connection (with the store's lock retry)."""
    from harness.store import SCHEMA_VERSION

    status = StoreStatus(str(store.path), store.path.exists(), expected_version=SCHEMA_VERSION)
    if not status.exists:
        return status
    import duckdb

    with store.connection(read_only=True) as con:
        try:
            tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables "
                                                "WHERE table_schema = 'main'").fetchall()}
            if "schema_version" in tables:
                status.schema_version = con.execute(
                    "SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0]
            if getattr(store, "traffic_parquet", None) and "traffic" in tables:  # traffic kept as Parquet: count it too
                from harness import store as st
                from harness import traffic_parquet as tp
                from harness.errors import TollgateInputError

                try:
                    tp.create_view(con, store.traffic_parquet, st.traffic_table(con))
                except TollgateInputError as exc:  # an s3:// root without DuckDB's httpfs extension
                    status.problem = str(exc)
            for name in ("runs", "decisions", "traffic", "feedback", "stage_events"):
                if name in tables:
                    status.counts[name] = con.execute(f"SELECT count(*) FROM {name}").fetchone()[0]
        except duckdb.Error as exc:
            status.problem = str(exc).splitlines()[0]
    if status.schema_version > status.expected_version:
        status.problem = (f"the store has schema version {status.schema_version}, newer than this Tollgate reads "
                          f"({status.expected_version}); upgrade Tollgate.")
    return status


# -- runs -----------------------------------------------------------------------------------------------
def runs_list(con: Any, *, model: str | None = None, suite: str | None = None, status: str | None = None,
              limit: int = 1000) -> list[dict[str, Any]]:
    """Every run, newest first: model, suite and its version, stage, status, counts, duration."""
    sql = """SELECT run_id, model, suite, left(suite_hash, 12) AS suite_version, suite_kind, stage, status,
                    n_examples, n_done, n_cached, n_errors, started_at, finished_at, duration_s,
                    code_version, left(model_fingerprint, 12) AS model_version
             FROM runs WHERE 1 = 1"""
    params: list[Any] = []
    for col, value in (("model", model), ("suite", suite), ("status", status)):
        if value is not None:
            sql += f" AND {col} = ?"
            params.append(value)
    sql += " ORDER BY started_at DESC, run_id LIMIT ?"
    params.append(int(limit))
    return _dicts(con.execute(sql, params))


def run_totals(con: Any) -> dict[str, Any]:
    """Counts over all runs: how many, by status, and the examples computed vs served from the cache."""
    row = con.execute("""SELECT count(*), count(*) FILTER (WHERE status = 'completed'),
                                count(*) FILTER (WHERE status = 'running'),
                                count(*) FILTER (WHERE status NOT IN ('completed', 'running')),
                                coalesce(sum(n_done), 0), coalesce(sum(n_cached), 0), coalesce(sum(n_errors), 0),
                                max(started_at)
                         FROM runs""").fetchone()
    keys = ("runs", "completed", "running", "other", "examples", "cached", "errors", "last_started")
    return dict(zip(keys, row, strict=True))


def models_with_results(con: Any) -> list[str]:
    return [r[0] for r in con.execute("SELECT DISTINCT model FROM runs WHERE status = 'completed' "
                                      "ORDER BY model").fetchall()]


def stages(con: Any) -> list[str]:
    return [r[0] for r in con.execute("SELECT DISTINCT stage FROM runs WHERE stage IS NOT NULL "
                                      "ORDER BY stage").fetchall()]


def suite_catalog(con: Any) -> list[dict[str, Any]]:
    """Each suite's newest stored version: name, kind, examples, and the suite its examples were made from."""
    rows = con.execute("""SELECT DISTINCT ON (name) name, kind, n_examples, content_hash,
                                 json_extract_string(spec, '$.source_suite') AS source_suite
                          FROM suites WHERE NOT list_contains(?, kind)
                          ORDER BY name, first_seen DESC""", [list(HIDDEN_KINDS)])
    out = _dicts(rows)
    rank = {k: i for i, k in enumerate(KIND_ORDER)}
    return sorted(out, key=lambda r: (rank.get(r["kind"], len(rank)), r["name"]))


def slice_options(con: Any, models: list[str] | None = None, suites: list[str] | None = None) -> dict[str, list[str]]:
    """The tags and perturbations found on the examples of these models' latest runs (for filters)."""
    cte, params = _latest_cte(models, suites, None)
    rows = con.execute(f"""WITH {cte}
        SELECT DISTINCT t FROM latest l JOIN examples e ON e.suite_hash = l.suite_hash, unnest(e.tags) u(t)
        WHERE NOT starts_with(t, 'source:') ORDER BY t""", params).fetchall()
    tags = [r[0] for r in rows if not r[0].startswith("perturbation:")]
    perturbations = [r[0].split(":", 1)[1] for r in rows if r[0].startswith("perturbation:")]
    return {"tags": tags, "perturbations": perturbations}


# -- pass rates -----------------------------------------------------------------------------------------
def pass_rates(con: Any, models: list[str] | None = None, *, by: str = "suite", suites: list[str] | None = None,
               stage: str | None = None) -> list[dict[str, Any]]:
    """Pass rate (every check passed; an error counts as a failure) per model and suite, and per slice:
    ``by`` is ``suite`` (one row per suite), ``tag`` (one per example tag, ``source:``/``perturbation:``
    tags left out) or ``perturbation`` (one per rewrite; ``(source)`` for untouched examples).
    Rows: model, suite, kind, slice, passed, n, rate, low, high (95% Wilson). An example of a repeated run
    counts by the share of its repeats that passed (so ``passed`` may be fractional; Wilson on it is
    conservative, as a mean of repeats varies less than one answer)."""
    if by not in ("suite", "tag", "perturbation"):
        raise ValueError(f"by must be suite, tag or perturbation, not {by!r}")
    cte, params = _latest_cte(models, suites, stage)
    ok = "(CASE WHEN r.error IS NULL THEN coalesce(r.pass_rate, r.passed::DOUBLE, 0.0) ELSE 0.0 END)"
    if by == "suite":
        body = f"""SELECT l.model, l.suite, l.suite_kind AS kind, '(all)' AS slice, sum({ok}) AS passed,
                          count(*) AS n
                   FROM results r JOIN latest l USING (run_id) GROUP BY ALL"""
    else:
        # every example once per slice: its tags (or its rewrite), else a catch-all slice; no lambdas, so
        # this runs on DuckDB 1.1 as on 2.x
        none = "(untagged)" if by == "tag" else "(source)"
        keep = ("NOT starts_with(t, 'source:') AND NOT starts_with(t, 'perturbation:')" if by == "tag"
                else "starts_with(t, 'perturbation:')")
        label = "t" if by == "tag" else "split_part(t, ':', 2)"
        body = f"""
            WITH ex AS (
                SELECT l.model, l.suite, l.suite_kind AS kind, r.example_id, {ok} AS ok, u.t
                FROM results r JOIN latest l USING (run_id)
                JOIN examples e ON e.suite_hash = l.suite_hash AND e.example_id = r.example_id,
                unnest(list_append(list_distinct(coalesce(e.tags, []::VARCHAR[])), '{none}')) u(t)),
            kept AS (
                SELECT *, count(*) OVER (PARTITION BY model, suite, example_id) AS k FROM ex
                WHERE t = '{none}' OR ({keep}))
            SELECT model, suite, kind, CASE WHEN t = '{none}' THEN t ELSE {label} END AS slice,
                   sum(ok) AS passed, count(*) AS n
            FROM kept WHERE t <> '{none}' OR k = 1 GROUP BY ALL"""
    low, high = wilson_sql("passed", "n")
    sql = f"""WITH {cte}, agg AS ({body})
              SELECT model, suite, kind, slice, passed, n, passed::DOUBLE / n AS rate, {low} AS low, {high} AS high
              FROM agg ORDER BY model, suite, slice"""
    return _dicts(con.execute(sql, params))


# -- failing examples ------------------------------------------------------------------------------------
def failing_examples(con: Any, model: str, *, suites: list[str] | None = None, tag: str | None = None,
                     perturbation: str | None = None, stage: str | None = None, limit: int = 25,
                     offset: int = 0) -> tuple[int, list[dict[str, Any]]]:
    """(how many fail, one page of them): errors first, then held-out and edge suites before the others,
    lowest scores first. Each with its input,
    expected and actual output, the check's reason, the field-by-field diff, and for a behavioural
    test the example it was compared with (``source``, in ``source_suite``) and what moved."""
    from harness.failures import field_diff, source_diff

    cte, params = _latest_cte([model], suites, stage)
    where = "NOT (r.error IS NULL AND coalesce(r.passed, FALSE))"
    if tag:
        where += " AND list_contains(e.tags, ?)"
        params.append(tag)
    if perturbation:
        where += " AND list_contains(e.tags, ?)"
        params.append(f"perturbation:{perturbation}")
    rows = con.execute(f"""WITH {cte}
        SELECT l.suite, l.stage, r.example_id, e.tags, e.input, e.expected, r.output, r.reason, r.error, r.details,
               r.score, json_extract_string(su.spec, '$.source_suite') AS source_suite, count(*) OVER () AS total
        FROM results r JOIN latest l USING (run_id)
        LEFT JOIN examples e ON e.suite_hash = l.suite_hash AND e.example_id = r.example_id
        LEFT JOIN suites su ON su.name = l.suite AND su.content_hash = l.suite_hash
        WHERE {where}
        ORDER BY r.error IS NULL, {_kind_rank('l.suite_kind')}, l.suite, r.score NULLS FIRST, r.example_id
        LIMIT ? OFFSET ?""", [*params, int(limit), int(offset)]).fetchall()
    out = []
    total = rows[0][-1] if rows else 0
    for suite, stage_, ex_id, tags, inp, exp, output, reason, error, details, score, src_suite, _ in rows:
        expected = json.loads(exp) if exp else None
        det = json.loads(details) if details else {}
        tags = list(tags or [])
        source = (det.get("behaviour") or {}).get("source") or next(
            (t.split(":", 1)[1] for t in tags if t.startswith("source:")), None)
        out.append({"suite": suite, "stage": stage_, "example_id": ex_id, "tags": tags,
                    "input": json.loads(inp) if inp else None, "expected": expected, "output": output,
                    "reason": reason, "error": error, "score": score, "diff": field_diff(expected, output),
                    "source": source, "source_suite": (src_suite or suite) if source else None,
                    "vs_source": source_diff(det, output)})
    if not rows and offset:
        total = con.execute(f"""WITH {cte} SELECT count(*) FROM results r JOIN latest l USING (run_id)
            LEFT JOIN examples e ON e.suite_hash = l.suite_hash AND e.example_id = r.example_id
            WHERE {where}""", params).fetchone()[0]
    return total, out


def example_detail(con: Any, suite: str, example_id: str, models: list[str] | None = None) -> dict[str, Any] | None:
    """One example as stored with its suite's newest run, and each model's answer on it."""
    cte, params = _latest_cte(models, [suite], None)
    rows = con.execute(f"""WITH {cte}
        SELECT l.model, e.input, e.expected, e.tags, r.output, r.passed, r.reason, r.error
        FROM latest l JOIN results r USING (run_id)
        LEFT JOIN examples e ON e.suite_hash = l.suite_hash AND e.example_id = r.example_id
        WHERE r.example_id = ? ORDER BY l.model""", [*params, example_id]).fetchall()
    if not rows:
        return None
    first = rows[0]
    return {"suite": suite, "example_id": example_id, "input": json.loads(first[1]) if first[1] else None,
            "expected": json.loads(first[2]) if first[2] else None, "tags": list(first[3] or []),
            "answers": [{"model": m, "output": out, "passed": bool(p) and err is None, "reason": reason,
                         "error": err} for m, _, _, _, out, p, reason, err in rows]}


# -- overfitting: one metric across the kinds of suites ----------------------------------------------------
def gap_chart(con: Any, models: list[str] | None = None, metric: str = "pass") -> list[dict[str, Any]]:
    """Per model and suite: the mean of ``metric`` with a 95% interval and n, ordered train_sample,
    validation, heldout, edge, general, baseline — the overfitting "gap" as chart data.

    A suite whose runs lack ``metric`` (an lm-eval general suite) shows ``pass`` instead, as the
    forgetting flag does; the row's ``metric`` says which. Proportions get Wilson intervals, other
    means a normal-approximation interval (the CLI's bootstrap may differ in the third decimal).
    """
    cte, params = _latest_cte(models, None, None)
    sql = f"""WITH {cte},
        vals AS (
            SELECT l.run_id, ? AS metric, s.value FROM scores s JOIN latest l USING (run_id)
            WHERE s.metric = ? AND ? <> 'pass' AND s.value IS NOT NULL
            UNION ALL
            SELECT l.run_id, 'pass',
                   CASE WHEN r.error IS NULL THEN coalesce(r.pass_rate, r.passed::DOUBLE, 0.0) ELSE 0.0 END
            FROM results r JOIN latest l USING (run_id)),
        agg AS (
            SELECT run_id, metric, avg(value) AS value, coalesce(stddev_samp(value), 0) AS sd, count(*) AS n,
                   bool_and(value IN (0, 1)) AS binary, sum(value) AS k, min(value) AS lo, max(value) AS hi
            FROM vals GROUP BY ALL),
        pick AS (
            SELECT DISTINCT ON (run_id) * FROM agg ORDER BY run_id, (metric = ?) DESC)
        SELECT l.model, l.suite, l.suite_kind AS kind, p.metric, p.value, p.n, p.sd, p.binary, p.k, p.lo, p.hi
        FROM pick p JOIN latest l USING (run_id)"""
    rows = _dicts(con.execute(sql, [*params, metric, metric, metric, metric]))
    rank = {k: i for i, k in enumerate(KIND_ORDER)}
    out = []
    for r in rows:
        n, v = r["n"], r["value"]
        if r["binary"]:
            from harness.intervals import wilson

            e = wilson(round(r["k"]), n)
            low, high, method = e.low, e.high, "wilson"
        else:
            half = 1.959963984540054 * r["sd"] / math.sqrt(n) if n else math.nan
            low, high, method = v - half, v + half, "normal"
            if r["lo"] >= 0 and r["hi"] <= 1:
                low, high = max(0.0, low), min(1.0, high)
        out.append({"model": r["model"], "suite": r["suite"], "kind": r["kind"], "metric": r["metric"],
                    "value": v, "low": low, "high": high, "n": n, "ci_method": method})
    return sorted(out, key=lambda r: (r["model"], rank.get(r["kind"], len(rank)), r["suite"]))


# -- decisions --------------------------------------------------------------------------------------------
def latest_decision(con: Any, candidate: str, reference: str | None = None, gate: str = "offline"
                    ) -> dict[str, Any] | None:
    """The newest stored decision of one gate (``offline`` = the suites' gate, ``shadow``, ``beta``) for a
    candidate (and reference, if given), with its evidence; None if it was never judged."""
    sql = ("SELECT decision_id, candidate, reference, policy_hash, verdict, evidence, seed, code_version, actor, "
           "created_at FROM decisions WHERE candidate = ? AND coalesce(json_extract_string(suite_hashes, '$.gate'), "
           "'offline') = ?")
    params: list[Any] = [candidate, gate]
    if reference is not None:
        sql += " AND reference = ?"
        params.append(reference)
    rows = _dicts(con.execute(sql + " ORDER BY created_at DESC LIMIT 1", params))
    if not rows:
        return None
    row = rows[0]
    row["evidence"] = json.loads(row["evidence"])
    return row


def decision_summaries(con: Any, limit: int = 50) -> list[dict[str, Any]]:
    """The newest decisions, without their evidence: id, gate, candidate, reference, verdict, actor, time."""
    return _dicts(con.execute("""
        SELECT left(decision_id, 12) AS decision, coalesce(json_extract_string(suite_hashes, '$.gate'), 'offline')
               AS gate, candidate, reference, verdict, actor, created_at
        FROM decisions ORDER BY created_at DESC LIMIT ?""", [int(limit)]))
