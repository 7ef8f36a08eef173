"""Shadow traffic: the candidate answers the requests production answered, and the pairs are compared.

Every comparison here is paired (same request, two models): agreement with production, field
by field for JSON answers; accuracy against users' corrections where they gave one (exact
McNemar); latency (Wilcoxon signed-rank on the per-request difference, and the probability that
the candidate is slower); errors. A mirror that throws the candidate's answers away teaches
nothing, so every shadow answer is stored beside the production answer it shadows.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from harness import store as st
from harness.errors import TollgateInputError
from harness.intervals import Estimate, wilson

BATCH = 32


# -- replay ----------------------------------------------------------------------------------------------
def prompt_of(raw_input: str, suite: Any | None) -> str:
    """A logged request as the model sees it: text verbatim, or fields through the suite's template."""
    value = json.loads(raw_input)
    if isinstance(value, str):
        return value
    if suite is None:
        raise TollgateInputError("traffic logged as fields needs a prompt template: set 'rollout: {suite: NAME}' "
                                 "in tollgate.yaml to the suite whose prompt renders them.", field="rollout.suite")
    from harness.examples import Example

    return suite.render(Example("traffic", value, None, (), 0, ""))


@dataclass
class ReplayOutcome:
    model: str
    requests: int
    answered: int
    errors: int
    already: int
    duration_s: float


def replay(project: Any, store: st.Store, model: str, *, limit: int | None = None, show_progress: bool = True,
           batch: int = BATCH, executor: Any = None) -> ReplayOutcome:
    """Run ``model`` on logged production requests it has not answered yet, committing per batch,
    so a killed replay resumes where it stopped. ``executor`` answers the batches (default: here;
    ``harness.executors``), and this process alone writes them."""
    from tqdm import tqdm

    from harness.executors import LocalExecutor, Work
    from harness.runner import ModelHandle, settings_for

    cfg = project.model(model)
    if limit is not None and limit < 1:
        raise TollgateInputError(f"must be at least 1, got {limit}.", field="--limit")
    suite = rollout_suite(project)
    t0 = time.perf_counter()
    with store.read() as con:
        already = con.execute("SELECT count(*) FROM traffic WHERE model = ? AND arm = 'shadow'",
                              [model]).fetchall()[0][0]
        sql = """SELECT p.request_id, p.input, p.user_id FROM traffic p
                 WHERE p.arm = 'production' AND p.model <> ? AND NOT EXISTS (
                     SELECT 1 FROM traffic s WHERE s.request_id = p.request_id AND s.model = ?)
                 ORDER BY p.ts, p.request_id"""
        params: list[Any] = [model, model]
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        todo = con.execute(sql, params).fetchall()
    prompts = [prompt_of(raw, suite) for _, raw, _ in todo]  # a bad template fails before the model loads
    handle = ModelHandle(cfg)
    settings = settings_for(cfg, suite) if suite is not None else cfg.generation
    from rollout.records import insert_traffic, traffic_row

    answered = errors = 0
    bar = tqdm(total=len(todo), unit="req", desc=f"shadow · {model}", file=sys.stderr, disable=not show_progress,
               dynamic_ncols=True)
    waves = [[(todo[i:i + batch], Work("generate", tuple(prompts[i:i + batch]), settings))
              for i in range(0, len(todo), batch)]]
    try:
        for chunk, gens in (executor or LocalExecutor()).answer(handle, waves, lambda n: None):
            rows = [traffic_row(rid, model, "shadow", json.loads(raw), g.text, user_id=user, latency_ms=g.latency_ms,
                                prompt_tokens=g.prompt_tokens, completion_tokens=g.completion_tokens,
                                error=g.error, source="replay")
                    for (rid, raw, user), g in zip(chunk, gens, strict=True)]
            with store.write() as con:
                insert_traffic(con, rows)
            answered += len(rows)
            errors += sum(g.error is not None for g in gens)
            bar.update(len(rows))
    finally:
        bar.close()
        handle.close()
    return ReplayOutcome(model, len(todo), answered, errors, already, time.perf_counter() - t0)


def rollout_suite(project: Any) -> Any | None:
    name = project.rollout.suite
    if name is None:
        return None
    from harness.suites import load_suite, suite_headers

    headers = suite_headers(project.suite_dirs)
    if name not in headers:
        raise TollgateInputError(f"rollout.suite names '{name}', which the project does not have "
                                 f"(it has: {', '.join(sorted(headers))}).", file=project.path, field="rollout.suite")
    return load_suite(headers[name])


# -- report -----------------------------------------------------------------------------------------------
@dataclass
class ShadowReport:
    candidate: str
    production: str | None
    pairs: int
    agreement: Estimate | None
    field_agreement: dict[str, Estimate]
    candidate_errors: Estimate | None
    production_errors: Estimate | None
    latency: dict[str, Any] | None
    corrections: dict[str, Any] | None
    verdict: str
    reasons: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return json.loads(json.dumps(d, default=str))


def _fields(text: str | None) -> dict[str, Any] | None:
    from harness.checks import parse_json_output

    obj, _ = parse_json_output(text or "")
    return obj if isinstance(obj, dict) else None


def pairs(con: Any, candidate: str) -> list[tuple]:
    """(request id, production model, production output, candidate output, production ms, candidate ms,
    production error, candidate error, correction) for every request both answered."""
    return con.execute("""
        SELECT s.request_id, p.model, p.output, s.output, p.latency_ms, s.latency_ms, p.error, s.error,
               (SELECT f.value FROM feedback f WHERE f.request_id = s.request_id AND f.kind = 'correction'
                ORDER BY f.ts DESC LIMIT 1)
        FROM traffic s JOIN traffic p ON p.request_id = s.request_id AND p.arm = 'production'
        WHERE s.model = ? AND s.arm = 'shadow' ORDER BY s.request_id""", [candidate]).fetchall()


def shadow_report(con: Any, candidate: str, policy: Any, suite: Any | None = None) -> ShadowReport:
    """The paired comparison and the shadow gate's verdict (``policy``: RolloutPolicy.shadow)."""
    import numpy as np

    from harness.behaviour import _same
    from harness.checks import normalize_text

    rows = pairs(con, candidate)
    prod_model = rows[0][1] if rows else None
    n = len(rows)
    ok = [r for r in rows if r[6] is None and r[7] is None]
    agree, per_field = 0, {}
    for r in ok:
        pf, cf = _fields(r[2]), _fields(r[3])
        if pf is not None and cf is not None:
            names = sorted(set(pf) | set(cf))
            same = {k: _same(pf.get(k), cf.get(k)) for k in names}
            for k, v in same.items():
                per_field.setdefault(k, []).append(v)
            agree += all(same.values())
        else:
            agree += normalize_text(r[2] or "") == normalize_text(r[3] or "")
    common = {k: v for k, v in per_field.items() if len(v) >= max(1, len(ok) // 2)}
    field_agreement = {k: wilson(sum(v), len(v)) for k, v in sorted(common.items())}
    agreement = wilson(agree, len(ok)) if ok else None
    cand_err = wilson(sum(r[7] is not None for r in rows), n) if n else None
    prod_err = wilson(sum(r[6] is not None for r in rows), n) if n else None
    latency = None
    lat = [(r[5], r[4]) for r in ok if r[4] is not None and r[5] is not None]
    if len(lat) >= 10:
        from rollout.sequential import paired_latency_comparison

        c, p = np.array([x[0] for x in lat]), np.array([x[1] for x in lat])
        latency = _plain(paired_latency_comparison(c, p))
    corrections = _corrections(ok, suite, policy.non_inferior)
    verdict, reasons = _verdict(policy, n, agreement, cand_err, latency, corrections)
    return ShadowReport(candidate, prod_model, n, agreement, field_agreement, cand_err, prod_err, latency,
                        corrections, verdict, reasons)


def _plain(obj: Any) -> dict[str, Any]:
    d = asdict(obj) if hasattr(obj, "__dataclass_fields__") else dict(obj)
    return {k: (float(v) if hasattr(v, "item") else v) for k, v in d.items()}


def _corrections(rows: list[tuple], suite: Any | None, margin: float) -> dict[str, Any] | None:
    """Where a reviewer gave the right answer: both models scored against it by the suite's checks,
    paired (exact McNemar on all-checks-pass, and the Nam-Tango score test for non-inferiority)."""
    corrected = [r for r in rows if r[8] is not None]
    if not corrected or suite is None:
        return None
    from harness.checks import Sample
    from harness.stats import paired_compare

    def passes(output: str | None, expected: Any) -> float:
        s = Sample(output=output or "", expected=expected)
        return float(all(fn(s).passed for fn in suite.checks))

    cand, prod = [], []
    for r in corrected:
        try:
            expected = json.loads(r[8])
        except json.JSONDecodeError:
            expected = r[8]
        cand.append(passes(r[3], expected))
        prod.append(passes(r[2], expected))
    comp, _ = paired_compare("pass vs correction", cand, prod, binary=True, resamples=2000)
    from harness.stats import paired_noninferiority_test

    b, c = comp.discordant or (0, 0)
    p_ni, p_inf = paired_noninferiority_test(b, c, comp.n, margin)
    return {**comp.as_dict(), "p_noninferior": p_ni, "p_inferior": p_inf}


def _verdict(policy: Any, n: int, agreement: Estimate | None, cand_err: Estimate | None,
             latency: dict[str, Any] | None, corrections: dict[str, Any] | None) -> tuple[str, list[str]]:
    """pass / fail / inconclusive of the shadow gate, with one sentence per criterion."""
    if n < policy.min_pairs or agreement is None:
        return "inconclusive", [f"{n} paired requests; the shadow gate needs {policy.min_pairs} "
                                f"({policy.min_pairs - n} more)."]
    reasons, failed, unsure = [], False, False
    c = corrections
    if policy.min_corrections > 0:
        if c is None or c["n"] < policy.min_corrections:
            unsure = True
            reasons.append(f"{0 if c is None else c['n']} requests carry a reviewer's correction; accuracy is judged "
                           f"from {policy.min_corrections}.")
        elif c["p_noninferior"] < 0.05:
            reasons.append(f"right on {c['candidate']:.3f} of corrected requests vs production's "
                           f"{c['reference']:.3f}: non-inferior within {policy.non_inferior} "
                           f"(paired score test p={c['p_noninferior']:.2g}).")
        elif c["p_inferior"] < 0.05:
            failed = True
            reasons.append(f"right on {c['candidate']:.3f} of corrected requests vs production's "
                           f"{c['reference']:.3f}: worse by more than {policy.non_inferior} "
                           f"(p={c['p_inferior']:.2g}).")
        else:
            unsure = True
            reasons.append(f"right on {c['candidate']:.3f} of corrected requests vs production's "
                           f"{c['reference']:.3f}: not yet shown non-inferior within {policy.non_inferior}.")
    if policy.min_agreement is not None:
        if agreement.low >= policy.min_agreement:
            reasons.append(f"agreement with production {agreement.value:.3f} [{agreement.low:.3f}, "
                           f"{agreement.high:.3f}] clears {policy.min_agreement}.")
        elif agreement.high < policy.min_agreement:
            failed = True
            reasons.append(f"agreement with production {agreement.value:.3f} [{agreement.low:.3f}, "
                           f"{agreement.high:.3f}] is below {policy.min_agreement}.")
        else:
            unsure = True
            reasons.append(f"agreement {agreement.value:.3f} [{agreement.low:.3f}, {agreement.high:.3f}] straddles "
                           f"{policy.min_agreement}; more traffic will decide.")
    if cand_err is not None:
        if cand_err.low > policy.max_error_rate:
            failed = True
            reasons.append(f"candidate error rate {cand_err.value:.3f} [{cand_err.low:.3f}, {cand_err.high:.3f}] "
                           f"exceeds {policy.max_error_rate}.")
        elif cand_err.value > policy.max_error_rate:
            unsure = True
            reasons.append(f"candidate error rate {cand_err.value:.3f} is above {policy.max_error_rate}.")
    if policy.max_latency_ratio is not None and latency is not None:
        ratio = latency["median_ratio"]
        if ratio > policy.max_latency_ratio and latency["p_value"] < 0.05:
            failed = True
            reasons.append(f"candidate median latency is {ratio:.2f}x production's (limit {policy.max_latency_ratio}x, "
                           f"Wilcoxon p={latency['p_value']:.2g}).")
        else:
            reasons.append(f"latency: candidate/production median {ratio:.2f}x (limit {policy.max_latency_ratio}x).")
    return ("fail" if failed else "inconclusive" if unsure else "pass"), reasons
