"""What fails, and where: pass rates by tag with intervals, and the failing examples with a diff.

QA engineers read failures by slice ("legalese fails 80% of the time") and then example by
example ("expected 1899-03-04, got 1899-04-03"), so both views come from one query. A repeated run
(``--repeats k``) counts each example once, by the share of its repeats that passed, and its
flaky examples (answers that flip between pass and fail) are listed with their differing answers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from harness import store as st
from harness.checks import parse_json_output
from harness.intervals import Estimate, estimate, wilson


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
    pass_rate: float | None = None  # a repeated run: the share of the example's repeats that passed

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("suite", "example_id", "tags", "input", "expected", "output", "reason",
                                               "error", "source", "pass_rate")} | {
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
               CASE WHEN r.error IS NULL THEN r.passed ELSE FALSE END AS ok, r.details,
               CASE WHEN r.error IS NULL THEN coalesce(r.pass_rate, r.passed::DOUBLE) ELSE 0.0 END AS rate,
               r.pass_rate
        FROM results r JOIN runs ru USING (run_id)
        LEFT JOIN examples e ON e.suite_hash = ru.suite_hash AND e.example_id = r.example_id
        WHERE list_contains(?, r.run_id) ORDER BY ru.suite, r.example_id""", [[r["run_id"] for r in runs]]).fetchall()


def failure_report(con: Any, model: str, suites: list[str] | None = None, by: str = "tag",
                   limit: int = 20) -> tuple[list[Slice], list[Failure]]:
    """Slices worst first, and up to ``limit`` failing examples (errors first, then by suite).

    A slice's pass rate is over examples; in a repeated run each example counts with the share of its
    repeats that passed (a bootstrap interval then, Wilson otherwise), and an example fails unless
    every repeat passed.
    """
    rows = _rows(con, model, suites)
    groups: dict[tuple[str, str], list[float]] = {}
    failures: list[Failure] = []
    for suite, ex_id, tags, inp, exp, out, reason, err, ok, details, rate, pass_rate in rows:
        tags = list(tags or [])
        keys = ["(all)"]
        if by == "tag":
            keys += tags or ["(untagged)"]
        elif by == "perturbation":
            keys += [t.split(":", 1)[1] for t in tags if t.startswith("perturbation:")] or ["(source)"]
        for k in keys:
            groups.setdefault((suite, k), []).append(float(rate))
        if not ok:
            expected = json.loads(exp) if exp else None
            det = json.loads(details) if details else {}
            failures.append(Failure(suite, ex_id, tags, json.loads(inp) if inp else None, expected, out, reason, err,
                                    field_diff(expected, out), (det.get("behaviour") or {}).get("source"),
                                    source_diff(det, out), pass_rate))
    slices = [Slice(s, k, estimate(v)) for (s, k), v in groups.items()]
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


@dataclass
class FlakyExample:
    """An example of a repeated run whose answers flip between pass and fail, with those answers."""

    suite: str
    example_id: str
    tags: list[str]
    expected: Any
    pass_rate: float
    repeats: int
    answers: list[dict[str, Any]]  # each distinct answer: output, passed, and the repeats and seeds that gave it

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("suite", "example_id", "tags", "expected", "pass_rate", "repeats",
                                               "answers")}


def flaky_examples(con: Any, model: str, suites: list[str] | None = None, limit: int | None = 20) -> list[FlakyExample]:
    """Flaky examples of the model's newest repeated runs, the closest to a coin flip first.

    Flaky: some repeats passed and some failed. Each comes with its distinct answers, most frequent
    first, so the reader sees what the model says when it passes and when it does not.
    """
    runs = [r["run_id"] for r in st.latest_runs(con, model=model, suites=suites)]
    if not runs:
        return []
    rows = con.execute("""
        SELECT ru.suite, r.run_id, r.example_id, e.tags, e.expected, r.pass_rate
        FROM results r JOIN runs ru USING (run_id)
        LEFT JOIN examples e ON e.suite_hash = ru.suite_hash AND e.example_id = r.example_id
        WHERE list_contains(?, r.run_id) AND r.error IS NULL AND r.pass_rate > 0 AND r.pass_rate < 1
        ORDER BY abs(r.pass_rate - 0.5), ru.suite, r.example_id""", [runs]).fetchall()
    rows = rows if limit is None else rows[:limit]
    samples: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for s in st.run_samples(con, sorted({r[1] for r in rows}), sorted({r[2] for r in rows})):
        samples.setdefault((s["run_id"], s["example_id"]), []).append(s)
    out = []
    for suite, run_id, ex_id, tags, exp, rate in rows:
        mine = samples.get((run_id, ex_id), [])
        answers: dict[tuple[str | None, bool], dict[str, Any]] = {}
        for s in mine:
            a = answers.setdefault((s["output"], bool(s["passed"])),
                                   {"output": s["output"], "passed": bool(s["passed"]), "repeats": [], "seeds": []})
            a["repeats"].append(s["repeat"])
            a["seeds"].append(s["seed"])
        ordered = sorted(answers.values(), key=lambda a: (-len(a["repeats"]), not a["passed"]))
        out.append(FlakyExample(suite, ex_id, list(tags or []), json.loads(exp) if exp else None, float(rate),
                                len(mine), ordered))
    return out
