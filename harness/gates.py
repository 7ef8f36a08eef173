"""The gate: the policy's rules applied to stored results, each giving pass, fail or inconclusive.

A rule passes only when the evidence says so at the policy's alpha (one-sided; Holm-corrected
across the non-critical rules): exact binomial for a proportion against a threshold, the
Nam-Tango score test for paired non-inferiority of pass rates, exact McNemar for their
superiority, t-tests for mean scores and Wilcoxon for their superiority. It fails when the
evidence says the opposite, and is inconclusive otherwise, with the number of examples that
would decide it. Latency quantiles are judged by an exact binomial test on the share of
examples slower than the bound, a cost bound by a t-test of the mean cost per request
(``harness.cost``). ``max_selections_per_heldout`` adds one counted rule per held-out suite version
the gate read (``harness.selection``). The gate passes when every rule
passes, fails when any rule fails, and is inconclusive otherwise. Every input (run ids, suite
hashes, policy, seed) goes into the decision, so it can be recomputed bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from harness import store as st
from harness.errors import TollgateInputError
from harness.intervals import estimate
from harness.overfit import overfitting_flags
from harness.policy import GatePolicy, OverfitRule, Rule
from harness.selection import HeldoutUse, selection_rule, uses_of
from harness.stats import (
    holm,
    mcnemar_exact,
    mean_sample_size,
    mean_shift_test,
    paired_compare,
    paired_noninferiority_test,
    paired_sample_size,
)

LATENCY_QUANTILES = {"max_latency_p95_ms": 0.95, "max_latency_p50_ms": 0.5}


@dataclass
class RuleResult:
    rule: str
    suite: str | None
    metric: str | None
    condition: str
    threshold: float | None
    critical: bool
    verdict: str = "inconclusive"
    reason: str = ""
    candidate: dict[str, Any] | None = None
    reference: dict[str, Any] | None = None
    comparison: dict[str, Any] | None = None
    p_pass: float | None = None
    p_pass_adjusted: float | None = None
    p_fail: float | None = None
    n_needed: int | None = None
    seed: int | None = None
    runs: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return _clean(asdict(self))


@dataclass
class GateDecision:
    candidate: str
    reference: str | None
    verdict: str
    rules: list[RuleResult]
    policy: dict[str, Any]
    policy_hash: str
    seed: int
    suite_hashes: dict[str, str]
    fingerprints: dict[str, str]
    heldout_use: list[dict[str, Any]] = field(default_factory=list)  # models each held-out version has judged
    prices: dict[str, dict[str, Any]] = field(default_factory=dict)  # the prices cost rules used

    def as_dict(self) -> dict[str, Any]:
        out = {"candidate": self.candidate, "reference": self.reference, "verdict": self.verdict,
               "policy_hash": self.policy_hash, "seed": self.seed, "policy": self.policy,
               "suite_hashes": self.suite_hashes, "fingerprints": self.fingerprints,
               "rules": [r.as_dict() for r in self.rules], "heldout_use": self.heldout_use}
        if self.prices:
            out["prices"] = self.prices
        return _clean(out)


def _clean(obj: Any) -> Any:
    if isinstance(obj, float):
        return None if math.isnan(obj) else (None if math.isinf(obj) else obj)
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def describe(rule: Rule, suite: str) -> str:
    c = rule.condition
    if c == "min":
        return rule.name or f"{suite} · {rule.metric} ≥ {rule.min:g}"
    if c == "non_inferior":
        return rule.name or f"{suite} · {rule.metric} not worse than reference by more than {rule.non_inferior:g}"
    if c == "superior":
        return rule.name or f"{suite} · {rule.metric} better than reference"
    if c == "max_latency_p95_ms":
        return rule.name or f"{suite} · latency p95 ≤ {rule.max_latency_p95_ms:g} ms"
    if c == "max_latency_p50_ms":
        return rule.name or f"{suite} · latency p50 ≤ {rule.max_latency_p50_ms:g} ms"
    if c == "max_cost_per_1k":
        return rule.name or f"{suite} · cost per 1,000 requests ≤ {rule.max_cost_per_1k:g}"
    return rule.name or f"{suite} · error rate ≤ {rule.max_error_rate:g}"


def _expand(policy: GatePolicy, suite_kinds: dict[str, str]) -> list[tuple[int, Rule | OverfitRule, str | None]]:
    out: list[tuple[int, Rule | OverfitRule, str | None]] = []
    for i, rule in enumerate(policy.rules):
        if isinstance(rule, OverfitRule):
            out.append((i, rule, None))
            continue
        if rule.suite is not None:
            if rule.suite not in suite_kinds:
                raise TollgateInputError(f"unknown suite '{rule.suite}'; the project has: "
                                         f"{', '.join(sorted(suite_kinds)) or 'none'}.", field=f"gate.rules[{i}].suite")
            out.append((i, rule, rule.suite))
        else:
            names = sorted(s for s, k in suite_kinds.items() if k == rule.kind)
            if not names:
                raise TollgateInputError(f"no suite of kind '{rule.kind}' in the project.",
                                         field=f"gate.rules[{i}].kind")
            out.extend((i, rule, s) for s in names)
    return out


def evaluate_gate(con: Any, *, candidate: str, reference: str | None, policy: GatePolicy,
                  suite_kinds: dict[str, str], base: str | None = None, training_data: Any = None,
                  pinned_runs: list[dict[str, str]] | None = None,
                  probes: list[Any] | None = None, current: dict[str, dict[str, str]] | None = None,
                  costs: dict[str, Any] | None = None, as_of: datetime | None = None) -> GateDecision:
    """Judge ``candidate`` against ``reference`` with the policy; ``pinned_runs`` replays a decision.

    ``current`` holds today's model fingerprints and suite hashes ({"models": ..., "suites": ...}):
    a rule whose newest run was made by other weights or on another version of the suite is
    inconclusive, never judged on stale results. ``costs`` are the models' prices (``project.costs``)
    for ``max_cost_per_1k`` rules. ``as_of`` (the decision's time) bounds the runs that count as uses
    of a held-out suite, so a replay counts the same models however many were run since.
    """
    if not policy.rules:
        raise TollgateInputError("the project has no gate rules.", field="gate.rules",
                                 hint="Add a 'gate:' section with 'rules:' to tollgate.yaml (README: Gating in CI).")
    latest = {(r["model"], r["suite"]): r for r in st.latest_runs(con)}
    if pinned_runs is not None:
        ids = [rid for per in pinned_runs for rid in per.values()]
        latest = {(r["model"], r["suite"]): r for r in st.runs_by_id(con, ids)}
    results: list[RuleResult] = []
    suite_hashes: dict[str, str] = {}
    fingerprints: dict[str, str] = {}
    fetched: dict[tuple[str, str], dict[str, float]] = {}  # rules on one metric read its values once
    prices: dict[str, dict[str, Any]] = {}

    def values_of(run_id: str, metric: str) -> dict[str, float]:
        if (run_id, metric) not in fetched:
            fetched[run_id, metric] = st.example_values(con, run_id, metric, errors_count=True)
        return fetched[run_id, metric]

    for k, (i, rule, suite) in enumerate(_expand(policy, suite_kinds)):
        seed = policy.seed + k
        if isinstance(rule, OverfitRule):
            results.extend(_overfit_rule(con, rule, candidate, base, training_data, policy, seed, probes))
            continue
        metric_shown = {"max_cost_per_1k": "cost_per_1k"}.get(rule.condition, rule.metric)
        res = RuleResult(rule=describe(rule, suite), suite=suite, metric=metric_shown, condition=rule.condition,
                         threshold=_threshold(rule), critical=rule.critical, seed=seed)
        results.append(res)
        if rule.condition == "max_cost_per_1k":
            price = (costs or {}).get(candidate)
            if price is None:
                raise TollgateInputError(
                    f"rule '{res.rule}' bounds the cost of {candidate}, which has no price: add "
                    f"'cost: {{per_hour: ...}}' (or per_1k_prompt_tokens/per_1k_completion_tokens) to "
                    f"models.{candidate} in tollgate.yaml.", field=f"gate.rules[{i}].max_cost_per_1k")
            prices[candidate] = price.model_dump()
        cand_run = latest.get((candidate, suite))
        if cand_run is None:
            res.reason = (f"{candidate} has no completed run on {suite}: "
                          f"run 'tollgate run --model {candidate} --suite {suite}'.")
            continue
        res.runs["candidate"] = cand_run["run_id"]
        suite_hashes[suite] = cand_run["suite_hash"]
        fingerprints[candidate] = cand_run["model_fingerprint"]
        metric = "error" if rule.condition == "max_error_rate" else (
            "latency_ms" if rule.condition in LATENCY_QUANTILES else rule.metric)
        if current and not _current(res, cand_run, candidate, current):
            continue
        if rule.condition == "max_cost_per_1k":
            _cost_rule(res, rule, con, cand_run["run_id"], price, policy)
            continue
        values = values_of(cand_run["run_id"], metric)
        if not values and metric not in st.run_metric_names(con, cand_run["run_id"]):
            raise TollgateInputError(
                f"metric '{rule.metric}' is not produced by suite '{suite}' (it has: "
                f"{', '.join(st.run_metric_names(con, cand_run['run_id']))}).", field=f"gate.rules[{i}].metric")
        if rule.condition in ("non_inferior", "superior"):
            if reference is None:
                raise TollgateInputError(f"rule '{res.rule}' compares with a reference: pass --against MODEL.",
                                         field="--against")
            ref_run = latest.get((reference, suite))
            if ref_run is None:
                res.reason = f"the reference {reference} has no completed run on {suite}."
                continue
            if ref_run["suite_hash"] != cand_run["suite_hash"]:
                res.reason = (f"{candidate} and {reference} were run on different versions of {suite}; "
                              f"run both on the current one.")
                continue
            res.runs["reference"] = ref_run["run_id"]
            fingerprints[reference] = ref_run["model_fingerprint"]
            if current and not _current(res, ref_run, reference, current):
                continue
            ref_values = values_of(ref_run["run_id"], metric)
            _paired_rule(res, rule, values, ref_values, policy, seed)
        else:
            _single_rule(res, rule, list(values.values()), policy, seed)

    heldout = {s: h for s, h in suite_hashes.items() if suite_kinds.get(s) == "heldout"}
    uses = uses_of(con, heldout, as_of=as_of)
    if policy.max_selections_per_heldout is not None:
        results.extend(_selection_rule(u, policy.max_selections_per_heldout) for u in uses)
    _decide(results, policy)
    verdicts = {r.verdict for r in results}
    verdict = "fail" if "fail" in verdicts else ("pass" if verdicts == {"pass"} else "inconclusive")
    return GateDecision(candidate=candidate, reference=reference, verdict=verdict, rules=results,
                        policy=policy.model_dump(), policy_hash=policy.digest(), seed=policy.seed,
                        suite_hashes=suite_hashes, fingerprints=fingerprints,
                        heldout_use=[u.as_dict() for u in uses], prices=prices)


def _selection_rule(use: HeldoutUse, limit: int) -> RuleResult:
    """``max_selections_per_heldout`` on one held-out suite version: counted, so pass or fail, never a p-value."""
    res = RuleResult(rule=f"{use.suite} · a fresh held-out suite (at most {limit} models judged on it)",
                     suite=use.suite, metric=None, condition="max_selections_per_heldout", threshold=float(limit),
                     critical=False)
    for k, v in selection_rule(use, limit).items():
        setattr(res, k, v)
    return res


def _current(res: RuleResult, run: dict[str, Any], model: str, current: dict[str, dict[str, str]]) -> bool:
    fp = current.get("models", {}).get(model)
    sh = current.get("suites", {}).get(run["suite"])
    if fp is not None and run["model_fingerprint"] != fp:
        res.reason = (f"the newest completed run of {model} on {run['suite']} was made by other weights than the "
                      f"model's current files; run 'tollgate run --model {model} --suite {run['suite']}'.")
        return False
    if sh is not None and run["suite_hash"] != sh:
        res.reason = (f"the newest completed run of {model} on {run['suite']} used an older version of the suite; "
                      f"run it again.")
        return False
    return True


def _threshold(rule: Rule) -> float | None:
    c = rule.condition
    return {"min": rule.min, "non_inferior": rule.non_inferior, "superior": 0.0,
            "max_latency_p95_ms": rule.max_latency_p95_ms, "max_latency_p50_ms": rule.max_latency_p50_ms,
            "max_error_rate": rule.max_error_rate, "max_cost_per_1k": rule.max_cost_per_1k}[c]


def _cost_rule(res: RuleResult, rule: Rule, con: Any, run_id: str, price: Any, policy: GatePolicy) -> None:
    """The mean cost of a request, per 1,000, below the bound: each error-free request's cost (its
    latency times the hourly price, or its tokens times the token prices) and a one-sided t-test of
    their mean, as for any mean score. Errors are left to ``max_error_rate``."""
    from harness.cost import request_costs, request_measures

    res.runs["candidate"] = run_id
    x, how = request_costs(price, request_measures(con, [run_id]))
    limit = rule.max_cost_per_1k
    n = len(x)
    if n < policy.min_paired:
        res.reason = (f"only {n} requests with a measured cost ({how}); the policy asks for at least "
                      f"{policy.min_paired}.")
        res.n_needed = policy.min_paired
        return
    res.candidate = {**estimate(x).as_dict(), "currency": price.currency}
    p_more, p_less = mean_shift_test(x, limit)
    res.p_pass, res.p_fail = p_less, p_more
    res.n_needed = _n_for_mean(x, limit, policy)
    res.reason = (f"needs a mean cost per 1,000 requests ≤ {limit:g} {price.currency}; {n} requests, "
                  f"{float(x.mean()):.4g} {price.currency} ({how}).")


def _single_rule(res: RuleResult, rule: Rule, values: list[float], policy: GatePolicy, seed: int) -> None:
    from scipy.stats import binomtest

    x = np.asarray(values, dtype=float)
    n = len(x)
    if n < policy.min_paired:
        res.reason = f"only {n} examples; the policy asks for at least {policy.min_paired}."
        res.n_needed = policy.min_paired
        return
    c = rule.condition
    if c in LATENCY_QUANTILES:
        # The p95 is under the limit when fewer than 5% of examples take longer (the median: fewer than
        # half): an exact binomial test on that count (a bootstrap of the p95 cannot exceed the sample
        # maximum: too liberal).
        q = LATENCY_QUANTILES[c]
        share = round(1 - q, 6)
        limit = getattr(rule, c)
        over = int(np.sum(x > limit))
        value = float(np.quantile(x, q)) if np.all(np.isfinite(x)) else math.inf
        res.candidate = {"value": value, "low": None, "high": None, "n": n, "method": f"empirical p{round(q * 100)}"}
        res.p_pass = float(binomtest(over, n, share, alternative="less").pvalue)
        res.p_fail = float(binomtest(over, n, share, alternative="greater").pvalue)
        res.n_needed = _n_for_proportion(over / n, share, policy)
        res.reason = (f"{over} of {n} examples took longer than {limit:g} ms (errors count as longer); "
                      f"needs < {share:.0%}.")
        return
    binary = bool(np.all(np.isin(x, (0.0, 1.0))))
    est = estimate(x)
    res.candidate = est.as_dict()
    if c == "max_error_rate":
        k, limit = int(x.sum()), rule.max_error_rate
        res.p_pass = float(binomtest(k, n, limit, alternative="less").pvalue) if limit > 0 else float(k > 0)
        res.p_fail = float(binomtest(k, n, limit, alternative="greater").pvalue)
        res.reason = f"{k} of {n} examples errored; needs an error rate ≤ {limit:g}."
        res.n_needed = _n_for_proportion(k / n, limit, policy)
        return
    t = rule.min
    if binary:
        k = int(x.sum())
        res.p_pass = float(binomtest(k, n, t, alternative="greater").pvalue)
        res.p_fail = float(binomtest(k, n, t, alternative="less").pvalue)
    else:
        res.p_pass, res.p_fail = mean_shift_test(x, t)
    res.n_needed = _n_for_proportion(float(x.mean()), t, policy) if binary else _n_for_mean(x, t, policy)
    res.reason = f"needs {rule.metric} ≥ {t:g} on {n} examples."


def _n_for_proportion(p: float, threshold: float, policy: GatePolicy) -> int | None:
    """Examples needed to tell a proportion from a threshold, with the spread under H0 (never zero)."""
    effect = abs(p - threshold)
    sd = math.sqrt(max(threshold * (1 - threshold), 1e-6))
    n = mean_sample_size(sd, effect, policy.alpha, policy.power)
    return None if math.isinf(n) else n


def _n_for_mean(x: np.ndarray, threshold: float, policy: GatePolicy) -> int | None:
    effect = abs(float(x.mean()) - threshold)
    sd = float(x.std(ddof=1)) if len(x) > 1 else 0.5
    n = mean_sample_size(max(sd, 1e-9), effect, policy.alpha, policy.power)
    return None if math.isinf(n) else n


def _paired_rule(res: RuleResult, rule: Rule, cand: dict[str, float], ref: dict[str, float], policy: GatePolicy,
                 seed: int) -> None:
    ids = sorted(set(cand) & set(ref))
    if len(ids) < policy.min_paired:
        res.reason = (f"only {len(ids)} examples answered by both models; the policy asks for at least "
                      f"{policy.min_paired}.")
        res.n_needed = policy.min_paired
        return
    a = np.array([cand[i] for i in ids])
    b = np.array([ref[i] for i in ids])
    comp, _ = paired_compare(rule.metric, a, b, seed=seed, resamples=policy.resamples)
    res.comparison = comp.as_dict()
    res.candidate, res.reference = estimate(a).as_dict(), estimate(b).as_dict()
    margin = rule.non_inferior if rule.condition == "non_inferior" else 0.0
    binary = comp.test == "mcnemar-exact"
    if rule.condition == "superior" and binary:
        bc, cc = comp.discordant
        res.p_pass, res.p_fail = mcnemar_exact(bc, cc, "greater"), mcnemar_exact(bc, cc, "less")
    elif rule.condition == "superior":
        from scipy.stats import wilcoxon

        if np.all(a == b):
            res.p_pass = res.p_fail = 1.0
        else:
            res.p_pass = float(wilcoxon(a, b, alternative="greater").pvalue)
            res.p_fail = float(wilcoxon(a, b, alternative="less").pvalue)
    elif binary:
        res.p_pass, res.p_fail = paired_noninferiority_test(*comp.discordant, comp.n, margin)
    else:
        res.p_pass, res.p_fail = mean_shift_test(a - b, -margin)
    effect = abs(comp.difference + margin)
    if binary:
        disc = sum(comp.discordant) / comp.n
        n = paired_sample_size(max(disc, effect), effect, policy.alpha, policy.power) if effect > 0 else math.inf
    else:
        sd = float(np.std(a - b, ddof=1)) or 1e-9
        n = mean_sample_size(sd, effect, policy.alpha, policy.power) if effect > 0 else math.inf
    res.n_needed = None if math.isinf(n) else int(n)
    need = f"a difference above −{margin:g}" if margin else "a difference above 0"
    res.reason = f"needs {need}; {comp.n} paired examples, {comp.test} p={comp.p_value:.2g}."


def _overfit_rule(con: Any, rule: OverfitRule, candidate: str, base: str | None, training_data: Any,
                  policy: GatePolicy, seed: int, probes: list[Any] | None) -> list[RuleResult]:
    flags = overfitting_flags(con, candidate, base=base, training_data=training_data, settings=policy.overfit,
                              seed=seed, resamples=min(policy.resamples, 5000), only=tuple(rule.no_overfitting),
                              probes=probes)
    out = []
    for f in flags:
        verdict = "inconclusive" if f.raised is None else ("fail" if f.raised else "pass")
        out.append(RuleResult(rule=f"no overfitting: {f.name}", suite=None, metric=policy.overfit.metric,
                              condition="no_overfitting", threshold=None, critical=rule.critical, verdict=verdict,
                              reason=f.explanation, comparison=f.evidence or None, seed=seed))
    return out


def _decide(results: list[RuleResult], policy: GatePolicy) -> None:
    """Holm across the non-critical rules, for passing and for failing; critical rules stand alone."""
    tested = [r for r in results if r.p_pass is not None and not r.critical]
    fail_adjusted = holm([r.p_fail if r.p_fail is not None else 1.0 for r in tested])
    for r, adj, fadj in zip(tested, holm([r.p_pass for r in tested]), fail_adjusted, strict=True):
        r.p_pass_adjusted = adj
        r.p_fail = fadj if r.p_fail is not None else None
    for r in results:
        if r.condition == "no_overfitting" or r.p_pass is None:
            continue
        p = r.p_pass if r.critical else r.p_pass_adjusted
        if p is not None and p <= policy.alpha:
            r.verdict = "pass"
        elif r.p_fail is not None and r.p_fail <= policy.alpha:
            r.verdict = "fail"
        else:
            r.verdict = "inconclusive"
            if r.n_needed is not None:
                r.reason += f" About {r.n_needed} examples would decide it."
