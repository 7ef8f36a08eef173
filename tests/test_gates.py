"""The gate: every exit code, decision records that recompute bit for bit, and error rates by simulation."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
from conftest import write_project, write_suite

from harness.cli import main
from harness.gates import RuleResult, _decide, _paired_rule
from harness.policy import GatePolicy, Rule

MODELS = """\
  good:
    adapter: python
    role: candidate
    options: {callable: "gmodels:good"}
  ref:
    adapter: python
    role: production
    options: {callable: "gmodels:ref"}
  bad:
    adapter: python
    options: {callable: "gmodels:bad"}
"""
# Each model answers example i right when i is in its set: good 95%, ref 80%, bad 50% of 200.
GMODELS = textwrap.dedent("""\
    def _i(prompt):
        return int(prompt.split("q")[-1])
    def good(prompt):
        return "a" if _i(prompt) % 20 != 0 else "b"
    def ref(prompt):
        return "a" if _i(prompt) % 5 != 0 else "b"
    def bad(prompt):
        return "a" if _i(prompt) % 2 == 0 else "b"
""")


def make(tmp_path, rules: str, n: int = 200, extra: str = "") -> None:
    (tmp_path / "gmodels.py").write_text(GMODELS)
    gate = "gate:\n  rules:\n" + textwrap.indent(textwrap.dedent(rules), "    ") + extra
    write_project(tmp_path, MODELS, suites="  - suites/*\n" + gate)
    write_suite(tmp_path, "heldout", [{"id": f"{i:04d}", "input": f"q{i}", "expected": "a"} for i in range(n)],
                extra="checks: [exact_match]\n")


def run_all(*models: str) -> None:
    for m in models:
        assert main(["run", "--model", m, "--no-progress", "--format", "json"]) == 0


def gate_json(capsys, *args: str) -> tuple[int, dict]:
    capsys.readouterr()
    code = main(["gate", *args, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_a_clearly_better_candidate_passes_with_exit_0(tmp_path, monkeypatch, capsys):
    make(tmp_path, "- {suite: heldout, non_inferior: 0.02}\n- {suite: heldout, min: 0.85}\n")
    monkeypatch.chdir(tmp_path)
    run_all("good", "ref")
    code, d = gate_json(capsys, "good", "--against", "ref")
    assert code == 0 and d["verdict"] == "pass"
    ni = d["rules"][0]
    assert ni["comparison"]["test"] == "mcnemar-exact" and ni["comparison"]["discordant"] == [30, 0]
    assert ni["comparison"]["difference"] == pytest.approx(0.15)


def test_a_clearly_worse_candidate_fails_with_exit_1(tmp_path, monkeypatch, capsys):
    make(tmp_path, "- {suite: heldout, non_inferior: 0.02}\n")
    monkeypatch.chdir(tmp_path)
    run_all("bad", "ref")
    code, d = gate_json(capsys, "bad", "--against", "ref")
    assert code == 1 and d["rules"][0]["verdict"] == "fail"


def test_too_few_examples_is_inconclusive_with_exit_3_and_says_how_many_would_decide(tmp_path, monkeypatch, capsys):
    make(tmp_path, "- {suite: heldout, min: 0.93}\n", n=40)
    monkeypatch.chdir(tmp_path)
    run_all("good")
    code, d = gate_json(capsys, "good")
    rule = d["rules"][0]
    assert code == 3 and rule["verdict"] == "inconclusive"
    assert rule["n_needed"] > 40 and f"About {rule['n_needed']} examples" in rule["reason"]


def test_a_reference_without_results_is_inconclusive_never_a_silent_pass(tmp_path, monkeypatch, capsys):
    make(tmp_path, "- {suite: heldout, non_inferior: 0.02}\n")
    monkeypatch.chdir(tmp_path)
    run_all("good")
    code, d = gate_json(capsys, "good", "--against", "ref")
    assert code == 3 and "ref has no completed run on heldout" in d["rules"][0]["reason"]


def test_fewer_paired_examples_than_the_policy_minimum_is_inconclusive(tmp_path, monkeypatch, capsys):
    make(tmp_path, "- {suite: heldout, non_inferior: 0.02}\n", n=20)
    monkeypatch.chdir(tmp_path)
    run_all("good", "ref")
    code, d = gate_json(capsys, "good", "--against", "ref")
    assert code == 3 and "only 20 examples" in d["rules"][0]["reason"]


def test_a_critical_failure_fails_the_gate_whatever_else(tmp_path, monkeypatch, capsys):
    make(tmp_path, "- {suite: heldout, non_inferior: 0.5}\n- {suite: heldout, min: 0.99, critical: true}\n")
    monkeypatch.chdir(tmp_path)
    run_all("good", "ref")
    code, d = gate_json(capsys, "good", "--against", "ref")
    assert code == 1
    assert [r["verdict"] for r in d["rules"]] == ["pass", "fail"]


@pytest.mark.parametrize(("rules", "fragment"), [
    ("- {suite: nope, min: 0.5}\n", "unknown suite 'nope'"),
    ("- {suite: heldout, metric: f1, min: 0.5}\n", "metric 'f1' is not produced"),
    ("- {suite: heldout, min: 0.5, superior: true}\n", "exactly one of"),
    ("- {kind: edge, min: 0.5}\n", "no suite of kind 'edge'"),
])
def test_a_bad_policy_is_bad_input_with_exit_2(tmp_path, monkeypatch, capsys, rules, fragment):
    make(tmp_path, rules)
    monkeypatch.chdir(tmp_path)
    run_all("good") if "exactly" not in fragment else None
    capsys.readouterr()
    assert main(["gate", "good"]) == 2
    assert fragment in capsys.readouterr().err


def test_no_rules_and_a_missing_against_are_usage_errors(tmp_path, monkeypatch, capsys):
    make(tmp_path, "- {suite: heldout, superior: true}\n")
    monkeypatch.chdir(tmp_path)
    run_all("good")
    assert main(["gate", "good"]) == 2
    assert "--against" in capsys.readouterr().err


def test_every_gate_writes_a_decision_that_recomputes_identically(tmp_path, monkeypatch, capsys):
    make(tmp_path, "- {suite: heldout, non_inferior: 0.02}\n- {suite: heldout, min: 0.85}\n")
    monkeypatch.chdir(tmp_path)
    run_all("good", "ref")
    gate_json(capsys, "good", "--against", "ref", "--actor", "alice")
    gate_json(capsys, "good", "--against", "ref", "--actor", "bob")
    assert main(["decisions", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["actor"] for r in rows] == ["bob", "alice"] and {r["verdict"] for r in rows} == {"pass"}
    assert rows[0]["evidence"]["rules"] == rows[1]["evidence"]["rules"]  # same data, same seed: same numbers
    assert rows[0]["seed"] == GatePolicy().seed and len(rows[0]["policy_hash"]) == 64
    # new results do not change what an old decision recomputes to: its runs are pinned
    run_all("ref")
    assert main(["decisions", "--id", rows[1]["decision_id"][:10], "--verify"]) == 0
    assert "evidence identical" in capsys.readouterr().out


def test_power_command_gives_the_sample_size(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_project(tmp_path, MODELS)
    assert main(["power", "--baseline-rate", "0.9", "--margin", "0.02", "--discordance", "0.1", "--n", "500"]) == 0
    out = capsys.readouterr().out
    assert "examples" in out and "smallest difference" in out
    assert main(["power", "--baseline-rate", "1.5", "--margin", "0.02"]) == 2


# -- the decision rule itself ----------------------------------------------------------------------
def _one_rule(rule: Rule, cand: np.ndarray, ref: np.ndarray, policy: GatePolicy, seed: int) -> str:
    res = RuleResult(rule="r", suite="s", metric=rule.metric, condition=rule.condition, threshold=None,
                     critical=rule.critical)
    ids = [str(i) for i in range(len(cand))]
    _paired_rule(res, rule, dict(zip(ids, cand, strict=True)), dict(zip(ids, ref, strict=True)), policy, seed)
    _decide([res], policy)
    return res.verdict


def _paired_draws(rng, n: int, p_ref: float, p_cand: float, agree: float = 0.8):
    """Correlated pass/fail: with probability ``agree`` the candidate copies the reference."""
    ref = rng.random(n) < p_ref
    own = rng.random(n) < p_cand
    copy = rng.random(n) < agree
    cand = np.where(copy, ref, own)
    # keep the candidate's marginal rate at p_cand: own draws are adjusted for the copied share
    return cand.astype(float), ref.astype(float)


def test_non_inferiority_passes_a_model_at_the_margin_at_most_about_alpha_of_the_time():
    policy = GatePolicy(resamples=500, min_paired=10)
    rule = Rule(suite="s", non_inferior=0.05)
    rng = np.random.default_rng(1)
    passes = 0
    reps = 300
    for k in range(reps):
        ref = (rng.random(200) < 0.8).astype(float)
        cand = ref.copy()
        # exactly at the margin: flip 5% of the examples from pass to fail, on average
        cand[(ref == 1) & (rng.random(200) < 0.0625)] = 0.0
        passes += _one_rule(rule, cand, ref, policy, seed=k) == "pass"
    assert passes / reps <= 0.08  # alpha 0.05 plus simulation noise (sd ~0.013)


def test_non_inferiority_passes_an_equal_model_most_of_the_time():
    policy = GatePolicy(resamples=500, min_paired=10)
    rule = Rule(suite="s", non_inferior=0.05)
    rng = np.random.default_rng(2)
    verdicts = [_one_rule(rule, *_paired_draws(rng, 300, 0.8, 0.8), policy, seed=k) for k in range(100)]
    assert verdicts.count("pass") >= 80 and verdicts.count("fail") == 0


def test_superiority_under_no_difference_rarely_passes_and_never_fails_more_than_alpha():
    policy = GatePolicy(resamples=200, min_paired=10)
    rule = Rule(suite="s", superior=True)
    rng = np.random.default_rng(3)
    verdicts = [_one_rule(rule, *_paired_draws(rng, 150, 0.8, 0.8, agree=0.5), policy, seed=k) for k in range(400)]
    assert verdicts.count("pass") / 400 <= 0.07
    assert verdicts.count("fail") / 400 <= 0.07


def test_holm_keeps_two_borderline_rules_from_both_passing():
    policy = GatePolicy()
    rules = [RuleResult(rule=f"r{i}", suite="s", metric="pass", condition="min", threshold=0.5, critical=False,
                        p_pass=p, p_fail=0.9) for i, p in enumerate((0.03, 0.04))]
    _decide(rules, policy)
    # unadjusted both would pass at 0.05; Holm: 2 * 0.03 = 0.06 and max(0.06, 0.04) = 0.06
    assert [r.p_pass_adjusted for r in rules] == [pytest.approx(0.06), pytest.approx(0.06)]
    assert [r.verdict for r in rules] == ["inconclusive", "inconclusive"]
    critical = RuleResult(rule="c", suite="s", metric="pass", condition="min", threshold=0.5, critical=True,
                          p_pass=0.04, p_fail=0.9)
    _decide([critical], policy)
    assert critical.verdict == "pass"  # a critical rule stands alone at alpha


def test_compare_prints_the_paired_table(tmp_path, monkeypatch, capsys):
    make(tmp_path, "- {suite: heldout, min: 0.5}\n")
    monkeypatch.chdir(tmp_path)
    run_all("good", "ref")
    capsys.readouterr()
    assert main(["compare", "good", "ref", "--format", "json"]) == 0
    rows = {r["metric"]: r for r in json.loads(capsys.readouterr().out)}
    em = rows["exact_match"]
    assert (em["n"], em["candidate"], em["reference"], em["paired"]) == (200, 0.95, 0.8, True)
    assert em["test"] == "mcnemar-exact" and em["discordant"] == [30, 0] and em["p_value"] < 1e-8
    assert em["ci_low"] <= 0.15 <= em["ci_high"]
    assert main(["compare", "good", "bad"]) == 2  # bad never ran: nothing in common


def test_errors_count_against_a_rule_so_a_model_cannot_pass_by_not_answering(tmp_path, monkeypatch, capsys):
    make(tmp_path, "- {suite: heldout, metric: exact_match, min: 0.9}\n")
    (tmp_path / "gmodels.py").write_text(GMODELS + textwrap.dedent("""\
        def good(prompt):
            if _i(prompt) % 4 == 0:
                raise TimeoutError("endpoint timed out")
            return "a"
    """))
    monkeypatch.chdir(tmp_path)
    run_all("good")
    code, d = gate_json(capsys, "good")
    rule = d["rules"][0]
    assert code == 1 and rule["candidate"]["n"] == 200 and rule["candidate"]["value"] == pytest.approx(0.75)


def test_results_of_older_weights_never_decide_a_gate(tmp_path, monkeypatch, capsys):
    make(tmp_path, "- {suite: heldout, min: 0.5}\n")
    monkeypatch.chdir(tmp_path)
    run_all("good")
    (tmp_path / "gmodels.py").write_text(GMODELS + "\n# retrained\n")  # the model's code is its weights
    code, d = gate_json(capsys, "good")
    assert code == 3 and "other weights" in d["rules"][0]["reason"]


def test_an_overfit_metric_no_suite_produces_is_unknown_not_a_pass(tmp_path, monkeypatch, capsys):
    make(tmp_path, "- no_overfitting: [gap]\n", extra="  overfit: {metric: json_feilds}\n")
    write_suite(tmp_path, "train_sample", [{"id": f"t{i}", "input": f"q{i}", "expected": "a"} for i in range(40)],
                kind="train_sample")
    monkeypatch.chdir(tmp_path)
    run_all("good")
    code, d = gate_json(capsys, "good")
    assert code == 3 and d["rules"][0]["verdict"] == "inconclusive" and "json_feilds" in d["rules"][0]["reason"]
