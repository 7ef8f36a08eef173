"""Repeated sampling: how many answers per example, their seeds, and how k answers become one result.

A sampling model gives a different answer each time, so one answer per example measures luck as
much as skill. With ``--repeats k`` every example is answered k times, each with its own seed (and
so its own cache key), and the k verdicts are folded into ONE value per example: the mean score,
the share of repeats that passed, pass@k (any passed), pass^k (all passed) and whether the answers
flip between pass and fail (``flaky``). Every paired test and gate sees that one value per example:
k answers to the same question are not k independent examples, and counting them as such would
shrink every interval by a factor of about sqrt(k) and inflate false alarms.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from harness.errors import TollgateInputError

MAX_REPEATS = 1000
FLAKY = "flaky"


def pass_at(k: int) -> str:
    """The metric "at least one of the k answers passed" (pass@k), named with its k so runs with
    different k never look comparable."""
    return f"pass@{k}"


def pass_all(k: int) -> str:
    """The metric "every one of the k answers passed" (pass^k)."""
    return f"pass^{k}"


def seeds_for(base_seed: int, k: int) -> list[int]:
    """Repeat r uses seed ``base_seed + r``: distinct, reproducible, and repeat 0 is the model's own
    seed, so a run without repeats and repeat 0 share their cached answer, and raising k from 3 to 5
    keeps the first three answers."""
    return [base_seed + r for r in range(k)]


def check_repeats(k: int, field: str = "--repeats") -> int:
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_REPEATS:
        raise TollgateInputError(f"must be a whole number from 1 to {MAX_REPEATS}, got {k!r}.", field=field)
    return k


def choose_repeats(suites: Sequence[Any], *, cli: int | None, model: int | None, named: bool = False,
                   temperature: float = 0.0) -> tuple[dict[str, int], list[str]]:
    """Answers per example for each suite, and notes for the user.

    Precedence: ``--repeats`` > the suite's ``repeats:`` > the model's ``repeats:`` > 1. A choice
    (log-likelihood) or lm-eval suite is deterministic, so repeating it would only store k equal
    answers: a suite named on the command line with ``--repeats`` is refused (exit 2), one that
    merely came along (all suites, or a model-wide setting) runs once with a note saying why.
    """
    if cli is not None:
        check_repeats(cli)
    out: dict[str, int] = {}
    notes: list[str] = []
    for s in suites:
        k = cli or s.spec.repeats or model or 1
        if k > 1 and s.task in ("choice", "lm-eval"):
            what = ("a choice task, scored by log-likelihood" if s.task == "choice" else "an lm-eval suite")
            if cli is not None and named:
                raise TollgateInputError(
                    f"suite '{s.name}' is {what}: its answer is deterministic, so {k} repeats would store "
                    f"{k} identical answers and prove nothing.", field="--repeats",
                    hint="Drop --repeats for this suite, or run it in a separate command.")
            notes.append(f"suite '{s.name}' is {what}, which is deterministic: it runs once, not {k} times.")
            k = 1
        out[s.name] = k
    if temperature == 0 and any(k > 1 for k in out.values()):
        notes.append("repeats at temperature 0: a model that decodes greedily gives the same answer every time, "
                     "so the repeats will not vary (set --temperature, or the model's generation.temperature).")
    return out, notes


def sample_row(row: dict[str, Any], scores: list[dict[str, Any]], repeat: int, seed: int) -> dict[str, Any]:
    """One answer of a repeated example as a ``samples`` row: the scored answer and its checks."""
    metrics = [{k: s[k] for k in ("metric", "value", "passed", "reason", "counts")} for s in scores]
    return {"example_id": row["example_id"], "repeat": repeat, "seed": seed, "output_key": row["output_key"],
            "output": row["output"], "details": row["details"], "score": row["score"], "passed": row["passed"],
            "metrics": json.dumps(metrics, ensure_ascii=False), "latency_ms": row["latency_ms"],
            "prompt_tokens": row["prompt_tokens"], "completion_tokens": row["completion_tokens"],
            "error": row["error"], "cached": row["cached"], "created_at": row["created_at"]}


def _mean(xs: Sequence[float | None]) -> float | None:
    vals = [x for x in xs if x is not None]
    return sum(vals) / len(vals) if vals else None


def aggregate(scored: Sequence[tuple[dict[str, Any], list[dict[str, Any]]]], seeds: Sequence[int], *,
              output_key: str, result_key: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Fold an example's k scored answers (in repeat order) into its one result row and score rows.

    The result's score is the mean score, ``passed`` is pass^k, ``pass_rate`` the share that passed,
    ``output`` the first repeat's answer. Every check metric becomes its mean over the repeats
    (``passed`` only if every repeat passed it; field counts are summed), and pass@k, pass^k and
    ``flaky`` are added. If any repeat errored the example is an error (no scores, counted as not
    passed like any errored example): the next run regenerates only the errored repeats, the
    others come from the cache.
    """
    rows = [r for r, _ in scored]
    k = len(rows)
    first = rows[0]
    latency = _mean([r["latency_ms"] for r in rows])
    tokens = {c: _mean([r[c] for r in rows]) for c in ("prompt_tokens", "completion_tokens")}
    details = json.loads(first["details"]) if first["details"] else {}
    errored = [(i, r["error"]) for i, r in enumerate(rows) if r["error"] is not None]
    details["repeats"] = {"k": k, "seeds": list(seeds), "passed": [r["passed"] for r in rows],
                          "scores": [r["score"] for r in rows], "errors": len(errored)}
    result = {**first, "output_key": output_key, "result_key": result_key, "latency_ms": latency,
              "prompt_tokens": None if tokens["prompt_tokens"] is None else round(tokens["prompt_tokens"]),
              "completion_tokens": None if tokens["completion_tokens"] is None else round(tokens["completion_tokens"]),
              "details": json.dumps(details, ensure_ascii=False), "cached": all(r["cached"] for r in rows),
              "score": None, "passed": None, "pass_rate": None, "reason": None}
    if errored:
        i, err = errored[0]
        result["error"] = f"{len(errored)} of {k} repeats errored (first: repeat {i}, seed {seeds[i]}): {err}"
        return result, []
    verdicts = [bool(r["passed"]) for r in rows]
    result["score"] = _mean([r["score"] for r in rows])
    result["passed"] = all(verdicts)
    result["pass_rate"] = sum(verdicts) / k
    result["reason"] = next((f"repeat {i} (seed {seeds[i]}): {r['reason']}" for i, r in enumerate(rows)
                             if not r["passed"] and r["reason"]), None)
    ex_id = first["example_id"]
    by_metric: dict[str, list[dict[str, Any]]] = {}
    for _, scores in scored:
        for s in scores:
            by_metric.setdefault(s["metric"], []).append(s)
    out = []
    for metric, ss in by_metric.items():
        counts = [json.loads(s["counts"]) for s in ss if s["counts"]]
        summed = None
        if counts and len(counts) == len(ss):
            summed = json.dumps({c: sum(x.get(c, 0) for x in counts) for c in counts[0]})
        out.append({"example_id": ex_id, "metric": metric, "value": _mean([s["value"] for s in ss]),
                    "passed": all(s["passed"] for s in ss), "counts": summed,
                    "reason": next((s["reason"] for s in ss if not s["passed"] and s["reason"]), None)})
    flaky = len(set(verdicts)) > 1
    for metric, value in ((pass_at(k), any(verdicts)), (pass_all(k), all(verdicts)), (FLAKY, flaky)):
        out.append({"example_id": ex_id, "metric": metric, "value": float(value),
                    "passed": (not value) if metric == FLAKY else value, "reason": None, "counts": None})
    return result, out
