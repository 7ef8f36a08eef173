"""What fails, and where: pass rates by tag with intervals, and the failing examples with a diff.

QA engineers read failures by slice ("legalese fails 80% of the time") and then example by
example ("expected 1899-03-04, got 1899-04-03"), so both views come from one query.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from harness import store as st
from harness.checks import parse_json_output
from harness.intervals import Estimate, wilson


@dataclass
class Slice:
    suite: str
    key: str
    estimate: Estimate

    def as_dict(self) -> dict[str, Any]:
        return {"suite": self.suite, "slice": self.key, **self.estimate.as_dict()}


@dataclass
class Failure:
    suite: str
    example_id: str
    tags: list[str]
    input: Any
    expected: Any
    output: str | None
    reason: str | None
    error: str | None
    diff: dict[str, tuple[Any, Any]]
    source: str | None = None  # the example a behavioural test compared this answer with
    vs_source: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # field -> (answer on source, got)

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("suite", "example_id", "tags", "input", "expected", "output", "reason",
                                               "error", "source")} | {
            "diff": {k: list(v) for k, v in self.diff.items()},
            "vs_source": {k: list(v) for k, v in self.vs_source.items()}}


def field_diff(expected: Any, output: str | None) -> dict[str, tuple[Any, Any]]:
    """Fields of an expected JSON object that the answer got wrong: field -> (expected, got)."""
    if not isinstance(expected, dict):
        return {}
    obj, _ = parse_json_output(output or "")
    got = obj if isinstance(obj, dict) else {}
    return {k: (v, got.get(k)) for k, v in expected.items() if str(v).strip().casefold() !=
            str(got.get(k)).strip().casefold() and not (v is None and got.get(k) in (None, ""))}


def source_diff(details: dict[str, Any], output: str | None) -> dict[str, tuple[Any, Any]]:
    """For a behavioural test: the fields whose value moved from the answer on the source example."""
    beh = details.get("behaviour") or {}
    src, _ = parse_json_output(beh.get("source_output") or "")
    got, _ = parse_json_output(output or "")
    if not isinstance(src, dict) or not isinstance(got, dict):
        return {}
    from harness.behaviour import _same

    return {k: (src.get(k), got.get(k)) for k in sorted(set(src) | set(got)) if not _same(src.get(k), got.get(k))}


def _rows(con: Any, model: str, suites: list[str] | None) -> list[tuple]:
    runs = st.latest_runs(con, model=model, suites=suites)
    if not runs:
        return []
    return con.execute("""
        SELECT ru.suite, r.example_id, e.tags, e.input, e.expected, r.output, r.reason, r.error,
               CASE WHEN r.error IS NULL THEN r.passed ELSE FALSE END AS ok, r.details
        FROM results r JOIN runs ru USING (run_id)
        LEFT JOIN examples e ON e.suite_hash = ru.suite_hash AND e.example_id = r.example_id
        WHERE list_contains(?, r.run_id) ORDER BY ru.suite, r.example_id""", [[r["run_id"] for r in runs]]).fetchall()


def failure_report(con: Any, model: str, suites: list[str] | None = None, by: str = "tag",
                   limit: int = 20) -> tuple[list[Slice], list[Failure]]:
    """Slices worst first, and up to ``limit`` failing examples (errors first, then by suite)."""
    rows = _rows(con, model, suites)
    groups: dict[tuple[str, str], list[bool]] = {}
    failures: list[Failure] = []
    for suite, ex_id, tags, inp, exp, out, reason, err, ok, details in rows:
        tags = list(tags or [])
        keys = ["(all)"]
        if by == "tag":
            keys += tags or ["(untagged)"]
        elif by == "perturbation":
            keys += [t.split(":", 1)[1] for t in tags if t.startswith("perturbation:")] or ["(source)"]
        for k in keys:
            groups.setdefault((suite, k), []).append(bool(ok))
        if not ok:
            expected = json.loads(exp) if exp else None
            det = json.loads(details) if details else {}
            failures.append(Failure(suite, ex_id, tags, json.loads(inp) if inp else None, expected, out, reason, err,
                                    field_diff(expected, out), (det.get("behaviour") or {}).get("source"),
                                    source_diff(det, out)))
    slices = [Slice(s, k, wilson(sum(v), len(v))) for (s, k), v in groups.items()]
    slices.sort(key=lambda x: (x.suite, x.key != "(all)", x.estimate.value, x.key))
    failures.sort(key=lambda f: (f.error is None, f.suite, -len(f.diff), f.example_id))
    return slices, failures[:limit]


def behaviour_rates(con: Any, model: str, suite: str) -> dict[str, Estimate]:
    """Per perturbation: how often the model's answer held up against its answer on the source
    (the invariance or directional comparison alone, whatever the label says)."""
    runs = st.latest_runs(con, model=model, suites=[suite])
    if not runs:
        return {}
    rows = con.execute("""
        SELECT split_part(t, ':', 2) AS perturbation, count(*) FILTER (WHERE s.passed), count(*)
        FROM scores s JOIN runs ru USING (run_id)
        JOIN examples e ON e.suite_hash = ru.suite_hash AND e.example_id = s.example_id, unnest(e.tags) u(t)
        WHERE s.run_id = ? AND s.metric IN ('invariance', 'directional') AND t LIKE 'perturbation:%'
        GROUP BY 1 ORDER BY 1""", [runs[0]["run_id"]]).fetchall()
    return {name: wilson(k, n) for name, k, n in rows}
