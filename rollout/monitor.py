"""Production monitoring: after a promotion the model keeps being watched, period by period, against
its own level at promotion.

Per day or week: requests, errors, users' thumbs-up rate and ratings, agreement with a shadow
model where one ran, and the inputs themselves (length, fields, words). "Retrain recommended" is
raised only on evidence: the latest period's thumbs-up rate significantly below the first
periods after promotion (one-sided Fisher exact test), or inputs that drifted (two-sample
Kolmogorov-Smirnov on length, chi-square on the word distribution) together with a quality drop.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from harness.intervals import wilson

SPARK = "▁▂▃▄▅▆▇█"


@dataclass
class Period:
    start: str
    requests: int
    errors: int
    thumbs_up: int
    thumbs: int
    rating_mean: float | None
    ratings: int
    mean_input_chars: float | None


@dataclass
class MonitorReport:
    model: str | None
    since: str | None
    period: str
    periods: list[Period]
    baseline_periods: int
    drift: dict[str, Any] = field(default_factory=dict)
    quality: dict[str, Any] = field(default_factory=dict)
    retrain_recommended: bool = False
    reasons: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self), default=str))


def spark(values: list[float | None]) -> str:
    """A unicode sparkline: a chart in a table cell (gaps for periods with no data)."""
    real = [v for v in values if v is not None and not math.isnan(v)]
    if not real:
        return ""
    lo, hi = min(real), max(real)
    out = []
    for v in values:
        if v is None or math.isnan(v):
            out.append(" ")
        else:
            out.append(SPARK[0 if hi == lo else round((v - lo) / (hi - lo) * (len(SPARK) - 1))])
    return "".join(out)


def _promoted_at(con: Any, model: str) -> Any:
    from rollout.stages import period_start

    return period_start(con, model, "production", "production")


def monitor(con: Any, project: Any, *, model: str | None = None, period: str = "day", baseline_periods: int = 3,
            alpha: float = 0.05) -> MonitorReport:
    from rollout.promote import initial_production
    from rollout.stages import assignment

    model = model or assignment(con, initial_production(project)).production
    since = _promoted_at(con, model) if model else None
    unit = {"day": "day", "week": "week"}[period]
    params: list[Any] = [model]
    where = "t.model = ? AND t.arm IN ('production', 'beta')"
    if since is not None:
        where += " AND t.ts >= ?"
        params.append(since)
    rows = con.execute(f"""
        WITH fb AS (
            SELECT request_id, arg_max(value, ts) FILTER (WHERE kind = 'thumb') AS thumb,
                   CAST(arg_max(value, ts) FILTER (WHERE kind = 'rating') AS DOUBLE) AS rating
            FROM feedback WHERE kind IN ('thumb', 'rating') GROUP BY request_id)
        SELECT date_trunc('{unit}', t.ts) AS p, count(*), count(t.error), count(*) FILTER (WHERE fb.thumb = '1'),
               count(fb.thumb), avg(fb.rating), count(fb.rating), avg(length(t.input))
        FROM traffic t LEFT JOIN fb USING (request_id)
        WHERE {where} GROUP BY 1 ORDER BY 1""", params).fetchall()
    periods = [Period(str(r[0])[:10], r[1], r[2], r[3], r[4], r[5], r[6], r[7]) for r in rows]
    rep = MonitorReport(model, str(since) if since else None, period, periods, min(baseline_periods, len(periods)))
    if len(periods) < baseline_periods + 1:
        rep.reasons.append(f"{len(periods)} {period}(s) of traffic since promotion; monitoring compares the latest "
                           f"{period} with the first {baseline_periods}, so it needs {baseline_periods + 1}.")
        return rep
    base, last = periods[:baseline_periods], periods[-1]
    rep.quality = _quality(base, last, alpha)
    rep.drift = _drift(con, model, base[0].start, base[-1].start, last.start, unit, alpha)
    dropped = rep.quality.get("significant", False)
    drifted = any(d.get("significant") for d in rep.drift.values() if isinstance(d, dict))
    if dropped:
        rep.retrain_recommended = True
        q = rep.quality
        rep.reasons.append(f"thumbs-up rate fell from {q['baseline']:.3f} to {q['latest']:.3f} "
                           f"(Fisher exact, one-sided p={q['p_value']:.2g})"
                           + ("; the inputs drifted too" if drifted else "") + ".")
    elif drifted:
        rep.reasons.append("the inputs drifted, but quality has not dropped significantly: watch, do not retrain yet.")
    else:
        rep.reasons.append("no significant quality drop or input drift against the level at promotion.")
    return rep


def _quality(base: list[Period], last: Period, alpha: float) -> dict[str, Any]:
    from scipy.stats import fisher_exact

    k0, n0 = sum(p.thumbs_up for p in base), sum(p.thumbs for p in base)
    k1, n1 = last.thumbs_up, last.thumbs
    if n0 == 0 or n1 == 0:
        return {"note": "no thumbs feedback to compare"}
    p = float(fisher_exact([[k1, n1 - k1], [k0, n0 - k0]], alternative="less").pvalue)
    b, latest = wilson(k0, n0), wilson(k1, n1)
    return {"baseline": b.value, "baseline_ci": [b.low, b.high], "n_baseline": n0, "latest": latest.value,
            "latest_ci": [latest.low, latest.high], "n_latest": n1, "p_value": p, "significant": p < alpha}


def _words(texts: list[str]) -> Counter[str]:
    c: Counter[str] = Counter()
    for t in texts:
        c.update(w.lower() for w in t.split() if w.isalpha())
    return c


def _drift(con: Any, model: str, b0: str, b1: str, last: str, unit: str, alpha: float) -> dict[str, Any]:
    from scipy.stats import chi2_contingency, ks_2samp

    def inputs(lo: str, hi: str) -> list[str]:
        return [r[0] for r in con.execute(
            f"SELECT input FROM traffic WHERE model = ? AND arm IN ('production', 'beta') "
            f"AND date_trunc('{unit}', ts) BETWEEN CAST(? AS TIMESTAMP) AND CAST(? AS TIMESTAMP) LIMIT 20000",
            [model, lo, hi]).fetchall()]

    base, recent = inputs(b0, b1), inputs(last, last)
    if len(base) < 20 or len(recent) < 20:
        return {}
    out: dict[str, Any] = {}
    ks = ks_2samp([len(x) for x in base], [len(x) for x in recent])
    out["input_length"] = {"test": "ks-2samp", "statistic": float(ks.statistic), "p_value": float(ks.pvalue),
                           "significant": bool(ks.pvalue < alpha)}

    def keys(texts: list[str]) -> Counter[str]:
        c: Counter[str] = Counter()
        for t in texts:
            v = json.loads(t)
            if isinstance(v, dict):
                c.update(k for k, x in v.items() if x not in (None, ""))
        return c

    kb, kr = keys(base), keys(recent)
    if kb or kr:
        out["field_presence"] = {k: {"baseline": kb[k] / len(base), "latest": kr[k] / len(recent)}
                                 for k in sorted(set(kb) | set(kr))}
    wb, wr = _words(base), _words(recent)
    top = [w for w, _ in (wb + wr).most_common(200)]
    if len(top) >= 10:
        table = [[wb[w] + 0.5 for w in top], [wr[w] + 0.5 for w in top]]
        chi2, p, dof, _ = chi2_contingency(table)
        n = sum(map(sum, table))
        cramer = math.sqrt(chi2 / n)  # effect size: with 2 rows, Cramér's V = sqrt(chi2 / n)
        out["words"] = {"test": "chi-square on the 200 commonest words", "statistic": float(chi2), "dof": int(dof),
                        "p_value": float(p), "cramers_v": cramer, "significant": bool(p < alpha and cramer > 0.1)}
    return out


def print_monitor(rep: MonitorReport, console: Any) -> None:
    from rich.table import Table

    t = Table(title=f"Monitoring {rep.model} in production since {rep.since or 'the first logged request'} "
                    f"(per {rep.period}; the first {rep.baseline_periods} are the baseline)", title_justify="left")
    for col in ("measure", "trend", "first", "latest"):
        t.add_column(col, justify="left" if col in ("measure", "trend") else "right")
    ps = rep.periods

    def row(name: str, values: list[float | None], fmt: str) -> None:
        if not any(v is not None for v in values):
            return
        first = next((v for v in values if v is not None), None)
        t.add_row(name, spark(values), format(first, fmt) if first is not None else "—",
                  format(values[-1], fmt) if values[-1] is not None else "—")

    row("requests", [float(p.requests) for p in ps], ".0f")
    row("error rate", [p.errors / p.requests if p.requests else None for p in ps], ".3f")
    row("thumbs-up rate", [p.thumbs_up / p.thumbs if p.thumbs else None for p in ps], ".3f")
    row("mean rating", [p.rating_mean for p in ps], ".2f")
    row("input length (chars)", [p.mean_input_chars for p in ps], ".0f")
    console.print(t)
    for name, d in rep.drift.items():
        if name == "field_presence":
            continue
        console.print(f"  drift · {name}: {d['test']}, p={d['p_value']:.2g}" + (" [red]drifted[/]" if d["significant"]
                                                                                  else ""))
    for r in rep.reasons:
        console.print(f"  · {r}")
    console.print("Retrain recommended: [bold red]YES[/]" if rep.retrain_recommended else "Retrain recommended: no")
