"""Repeated sampling: k answers per example with recorded seeds, each cached on its own, folded into one
value per example that every interval, paired test and gate uses."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import numpy as np
import pytest
from conftest import write_project, write_suite

from harness.cli import main
from harness.errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED

STORE = Path(".tollgate/tollgate.duckdb")

# A sampling model whose per-seed answers are known: example n is answered wrongly for the seeds in WRONG[n].
MODELS = """\
import os

WRONG = {0: set(), 1: {1}, 2: {0, 1, 2, 3, 4}, 3: {0, 1, 3}}
OTHER = {0: {2}, 1: set(), 2: {0, 1, 2}, 3: {0}}


def _log(prompt, seed):
    path = os.environ.get("SAMPLER_CALLS")
    if path:
        with open(path, "a") as f:
            f.write(f"{prompt}|{seed}\\n")
        stop = int(os.environ.get("SAMPLER_STOP_AFTER", "0"))
        if stop and sum(1 for _ in open(path)) > stop:
            raise KeyboardInterrupt  # the run is stopped here, like Ctrl-C, after some batches


def sampler(prompt, seed, temperature):
    _log(prompt, seed)
    if os.environ.get("SAMPLER_ERROR") == f"{prompt}|{seed}":
        raise RuntimeError("endpoint timed out")
    n = int(prompt.split()[-1][1:])
    return "wrong" if seed in WRONG[n] else f"w{n}"


def other(prompt, seed):
    n = int(prompt.split()[-1][1:])
    return "wrong" if seed in OTHER[n] else f"w{n}"


def choose(context, continuation):
    return -len(continuation)
"""


def _project(root: Path, extra_models: str = "", suite_extra: str = "checks: [exact_match]\n") -> Path:
    (root / "mymodels.py").write_text(MODELS)
    write_project(root, '  sampler:\n    adapter: python\n    options: {callable: "mymodels:sampler"}\n'
                        '    generation: {temperature: 0.7}\n' + extra_models)
    write_suite(root, "words", [{"id": f"e{i}", "input": f"say w{i}", "expected": f"w{i}"} for i in range(4)],
                extra=suite_extra)
    return root


def _q(root: Path, sql: str, params: list | None = None):
    con = duckdb.connect(str(root / STORE), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def _run(capsys, *args: str) -> list[dict]:
    capsys.readouterr()
    assert main(["run", "--no-progress", "--format", "json", *args]) == 0
    return json.loads(capsys.readouterr().out)


def _calls(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


@pytest.fixture
def sampling_project(tmp_path, monkeypatch):
    _project(tmp_path)
    monkeypatch.chdir(tmp_path)
    calls = tmp_path / "calls.log"
    monkeypatch.setenv("SAMPLER_CALLS", str(calls))
    return tmp_path, calls


def test_each_example_is_answered_k_times_with_distinct_recorded_seeds_and_known_metrics(sampling_project, capsys):
    root, calls = sampling_project
    rows = _run(capsys, "--model", "sampler", "--repeats", "3")
    assert len(_calls(calls)) == 12
    samples = _q(root, "SELECT example_id, list(seed ORDER BY repeat), count(DISTINCT output_key), "
                       "list(passed ORDER BY repeat) FROM samples GROUP BY 1 ORDER BY 1")
    assert samples == [("e0", [0, 1, 2], 3, [True, True, True]), ("e1", [0, 1, 2], 3, [True, False, True]),
                       ("e2", [0, 1, 2], 3, [False, False, False]), ("e3", [0, 1, 2], 3, [False, False, True])]
    assert _q(root, "SELECT count(DISTINCT output_key) FROM samples") == [(12,)]
    # one result per example: pass_rate the share of repeats passed, passed = all passed (pass^k)
    assert _q(root, "SELECT example_id, pass_rate, passed, output FROM results ORDER BY 1") == [
        ("e0", 1.0, True, "w0"), ("e1", 2 / 3, False, "w1"), ("e2", 0.0, False, "wrong"), ("e3", 1 / 3, False, "wrong")]
    scores = {(e, m): v for e, m, v in _q(root, "SELECT example_id, metric, value FROM scores")}
    expected = {"e0": (1, 1, 1, 0), "e1": (2 / 3, 1, 0, 1), "e2": (0, 0, 0, 0), "e3": (1 / 3, 1, 0, 1)}
    for ex, (mean, any_, all_, flaky) in expected.items():
        assert scores[ex, "exact_match"] == pytest.approx(mean)
        assert (scores[ex, "pass@3"], scores[ex, "pass^3"], scores[ex, "flaky"]) == (any_, all_, flaky)
    config = json.loads(_q(root, "SELECT config FROM runs")[0][0])
    assert config["repeats"] == 3 and config["seeds"] == [0, 1, 2] and config["generation"]["temperature"] == 0.7
    by = {r["metric"]: r for r in rows}
    assert by["pass"]["n"] == 4 and by["pass"]["value"] == pytest.approx(0.5)  # 4 examples, not 12 answers
    assert (by["pass@3"]["value"], by["pass^3"]["value"], by["flaky"]["value"]) == (0.75, 0.25, 0.5)
    # the dashboard's pass-rate chart counts each example by the share of its repeats that passed
    from harness import queries
    from harness.store import Store

    with Store(root / STORE).read() as con:
        (rate,) = queries.pass_rates(con, ["sampler"])
    assert rate["n"] == 4 and rate["rate"] == pytest.approx(0.5) and rate["low"] < 0.5 < rate["high"]


def test_every_answer_is_cached_on_its_own_and_more_repeats_compute_only_the_new_ones(sampling_project, capsys):
    root, calls = sampling_project
    _run(capsys, "--model", "sampler", "--repeats", "3")
    assert len(_calls(calls)) == 12
    rows = _run(capsys, "--model", "sampler", "--repeats", "3")
    assert len(_calls(calls)) == 12  # the model was not called: every example served whole from the cache
    assert rows[0]["cached"] == 4
    second = _q(root, "SELECT run_id FROM runs ORDER BY started_at")[1][0]
    assert _q(root, "SELECT count(*), bool_and(cached) FROM samples WHERE run_id = ?", [second]) == [(12, True)]
    _run(capsys, "--model", "sampler", "--repeats", "5")
    new = _calls(calls)[12:]
    assert sorted(c.split("|")[1] for c in new) == ["3"] * 4 + ["4"] * 4  # only repeats 3 and 4
    third = _q(root, "SELECT run_id FROM runs ORDER BY started_at")[2][0]
    assert _q(root, "SELECT repeat, bool_and(cached) FROM samples WHERE run_id = ? GROUP BY 1 ORDER BY 1",
              [third]) == [(0, True), (1, True), (2, True), (3, False), (4, False)]
    assert _q(root, "SELECT pass_rate FROM results WHERE run_id = ? ORDER BY example_id", [third]) == [
        (1.0,), (0.8,), (0.0,), (0.4,)]
    # and a run without repeats reuses repeat 0's answer (the model's own seed): no call at all
    _run(capsys, "--model", "sampler")
    assert len(_calls(calls)) == 20


def test_a_run_stopped_after_some_batches_resumes_with_the_answers_it_stored(sampling_project, monkeypatch, capsys):
    root, calls = sampling_project
    monkeypatch.setenv("SAMPLER_STOP_AFTER", "6")
    args = ["run", "--model", "sampler", "--repeats", "3", "--commit-every", "2", "--no-progress"]
    assert main(args) == EXIT_INTERRUPTED
    # chunks of 2 answers, one repeat each: e0/e1 got all three repeats (3 chunks) before the 7th call stopped it
    assert _q(root, "SELECT status FROM runs") == [("interrupted",)]
    assert _q(root, "SELECT count(*) FROM samples") == [(6,)]
    assert _q(root, "SELECT example_id FROM results ORDER BY 1") == [("e0",), ("e1",)]
    monkeypatch.delenv("SAMPLER_STOP_AFTER")
    assert main(args) == 0
    assert len(_calls(calls)) == 7 + 6  # the interrupted call, then only the six answers never stored
    last = _q(root, "SELECT run_id FROM runs WHERE status = 'completed'")[0][0]
    assert _q(root, "SELECT count(*), count(*) FILTER (WHERE cached) FROM samples WHERE run_id = ?", [last]) == [
        (12, 6)]


def test_an_errored_repeat_makes_the_example_an_error_and_only_that_repeat_is_retried(sampling_project, monkeypatch,
                                                                                      capsys):
    root, calls = sampling_project
    monkeypatch.setenv("SAMPLER_ERROR", "say w1|2")
    rows = _run(capsys, "--model", "sampler", "--repeats", "3")
    err = _q(root, "SELECT error, pass_rate FROM results WHERE example_id = 'e1'")[0]
    assert err[0].startswith("1 of 3 repeats errored (first: repeat 2, seed 2): RuntimeError: endpoint timed out")
    assert err[1] is None
    assert _q(root, "SELECT count(*) FROM scores WHERE example_id = 'e1'") == [(0,)]
    assert {r["metric"]: r["value"] for r in rows}["pass"] == pytest.approx((1 + 0 + 0 + 1 / 3) / 4)  # error = 0
    monkeypatch.delenv("SAMPLER_ERROR")
    _run(capsys, "--model", "sampler", "--repeats", "3")
    assert _calls(calls)[12:] == ["say w1|2"]
    assert _q(root, "SELECT pass_rate FROM results WHERE example_id = 'e1' AND error IS NULL") == [(2 / 3,)]


def test_precedence_is_command_line_then_suite_then_model(tmp_path, monkeypatch, capsys):
    _project(tmp_path, suite_extra="checks: [exact_match]\nrepeats: 2\n")
    proj = tmp_path / "tollgate.yaml"
    proj.write_text(proj.read_text().replace("    generation:", "    repeats: 4\n    generation:"))
    monkeypatch.chdir(tmp_path)

    def last_k() -> int:
        return json.loads(_q(tmp_path, "SELECT config FROM runs ORDER BY started_at DESC LIMIT 1")[0][0])["repeats"]

    _run(capsys, "--model", "sampler")
    assert last_k() == 2
    _run(capsys, "--model", "sampler", "--repeats", "3")
    assert last_k() == 3
    suite = tmp_path / "suites" / "words" / "suite.yaml"
    suite.write_text(suite.read_text().replace("repeats: 2\n", ""))
    _run(capsys, "--model", "sampler")
    assert last_k() == 4


def test_temperature_is_passed_to_the_model_and_is_part_of_the_cache_key(sampling_project, capsys):
    root, calls = sampling_project
    _run(capsys, "--model", "sampler", "--repeats", "2")
    _run(capsys, "--model", "sampler", "--repeats", "2", "--temperature", "0.9")
    assert len(_calls(calls)) == 16  # other settings, other answers
    configs = _q(root, "SELECT config FROM runs ORDER BY started_at")
    gens = [json.loads(c)["generation"]["temperature"] for (c,) in configs]
    assert gens == [0.7, 0.9]
    capsys.readouterr()
    assert main(["run", "--model", "sampler", "--repeats", "2", "--temperature", "0", "--no-progress"]) == 0
    assert "temperature 0" in capsys.readouterr().err  # allowed, with a warning that greedy answers do not vary


def test_the_failures_view_lists_flaky_examples_with_their_differing_answers(sampling_project, capsys):
    _run(capsys, "--model", "sampler", "--repeats", "3")
    capsys.readouterr()
    assert main(["failures", "sampler", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    flaky = {f["example_id"]: f for f in report["flaky"]}
    assert set(flaky) == {"e1", "e3"}
    assert flaky["e1"]["pass_rate"] == pytest.approx(2 / 3) and flaky["e1"]["repeats"] == 3
    assert flaky["e1"]["answers"] == [{"output": "w1", "passed": True, "repeats": [0, 2], "seeds": [0, 2]},
                                      {"output": "wrong", "passed": False, "repeats": [1], "seeds": [1]}]
    assert report["slices"][0]["n"] == 4 and report["slices"][0]["value"] == pytest.approx(0.5)
    assert main(["failures", "sampler"]) == 0
    out = capsys.readouterr().out
    assert "Flaky examples" in out and "fail ×1 (repeats 1): 'wrong'" in out


def test_compare_of_two_repeated_runs_pairs_one_value_per_example(tmp_path, monkeypatch, capsys):
    _project(tmp_path, '  other:\n    adapter: python\n    options: {callable: "mymodels:other"}\n')
    monkeypatch.chdir(tmp_path)
    _run(capsys, "--model", "sampler", "--repeats", "5")
    _run(capsys, "--model", "other", "--repeats", "5", "--temperature", "0.7")
    capsys.readouterr()
    assert main(["compare", "sampler", "other", "--format", "json"]) == 0
    rows = {r["metric"]: r for r in json.loads(capsys.readouterr().out)}
    assert {"pass", "exact_match", "pass@5", "pass^5", "flaky"} <= set(rows)
    assert all(r["n"] == 4 for r in rows.values())  # 4 examples, never 4 x 5 answers
    assert rows["pass"]["candidate"] == pytest.approx((1 + 0.8 + 0 + 0.4) / 4)
    assert rows["pass"]["reference"] == pytest.approx((0.8 + 1 + 0.4 + 0.8) / 4)
    assert rows["pass"]["test"] == "wilcoxon-signed-rank"


def test_paired_tests_on_per_example_means_keep_their_false_positive_rate_and_n():
    """Simulation: two models with the same per-example pass probability (no true difference),
    k answers per example. Judged on per-example means, n is the number of examples and the paired
    test rejects at about alpha; pooling the k answers as if independent makes the interval of a
    pass rate far too narrow."""
    from harness.intervals import bootstrap_mean, wilson
    from harness.stats import paired_compare

    rng = np.random.default_rng(13)
    n, k, sims, alpha = 40, 5, 300, 0.05
    rejections, covered_means, covered_pooled = 0, 0, 0
    for s in range(sims):
        p = rng.beta(0.6, 0.6, size=n)  # examples differ a lot in difficulty
        cand = rng.binomial(k, p) / k
        ref = rng.binomial(k, p) / k
        comp, _ = paired_compare("pass", cand, ref, seed=s, resamples=200)
        assert comp.n == n
        rejections += comp.p_value < alpha
        true = 0.5  # the mean of Beta(0.6, 0.6): the population pass rate
        est = bootstrap_mean(cand, seed=s)
        covered_means += est.low <= true <= est.high
        pooled = wilson(round(cand.sum() * k), n * k)
        covered_pooled += pooled.low <= true <= pooled.high
    assert rejections / sims <= alpha + 3 * np.sqrt(alpha * (1 - alpha) / sims)
    assert covered_means / sims >= 0.90  # per-example means: about the stated 95%
    assert covered_pooled / sims < covered_means / sims - 0.1  # n x k "independent" answers: overconfident


def test_bad_repeats_are_refused_with_exit_2(tmp_path, monkeypatch, capsys):
    _project(tmp_path)
    write_suite(tmp_path, "pick", [{"id": "c0", "input": "which?", "expected": "a"}], task="choice",
                extra="choices: [a, bb]\n")
    proj = tmp_path / "tollgate.yaml"
    proj.write_text(proj.read_text().replace('"mymodels:sampler"}', '"mymodels:sampler", '
                                                                     'loglikelihood: "mymodels:choose"}'))
    monkeypatch.chdir(tmp_path)
    for bad in ("0", "-2"):
        capsys.readouterr()
        assert main(["run", "--model", "sampler", "--repeats", bad, "--no-progress"]) == EXIT_BAD_INPUT
        assert "--repeats" in capsys.readouterr().err
    assert not (tmp_path / STORE).exists()  # nothing written
    assert main(["run", "--model", "sampler", "--temperature", "-1", "--no-progress"]) == EXIT_BAD_INPUT
    assert "--temperature" in capsys.readouterr().err
    # a choice suite named with --repeats: refused, it is deterministic
    assert main(["run", "--model", "sampler", "--suite", "pick", "--repeats", "3", "--no-progress"]) == EXIT_BAD_INPUT
    assert "deterministic" in capsys.readouterr().err
    # all suites: the choice suite runs once, and says why
    assert main(["run", "--model", "sampler", "--repeats", "3", "--no-progress", "--format", "json"]) == 0
    assert "suite 'pick' is a choice task" in capsys.readouterr().err
    ks = dict((s, json.loads(c).get("repeats", 1)) for s, c in _q(tmp_path, "SELECT suite, config FROM runs"))
    assert ks == {"pick": 1, "words": 3}
    # repeats: 0 in suite.yaml, and repeats on a choice suite: errors naming the file and field
    words = tmp_path / "suites" / "words" / "suite.yaml"
    words.write_text(words.read_text() + "repeats: 0\n")
    assert main(["validate"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "words/suite.yaml" in err and "repeats" in err
    words.write_text(words.read_text().replace("repeats: 0\n", ""))
    pick = tmp_path / "suites" / "pick" / "suite.yaml"
    pick.write_text(pick.read_text() + "repeats: 3\n")
    assert main(["validate"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "pick/suite.yaml" in err and "repeats" in err and "deterministic" in err


def test_a_python_callable_may_take_the_settings_and_old_ones_keep_working():
    from harness.adapters.base import GenerationSettings
    from harness.adapters.python_callable import setting_kwargs, setting_parameters

    def plain(prompt):
        return prompt

    def sampling(prompt, seed, *, temperature=0.0, settings=None):
        return prompt

    assert setting_parameters(plain) == ()
    assert setting_parameters(sampling) == ("seed", "temperature", "settings")
    s = GenerationSettings(temperature=0.5, seed=7)
    assert setting_kwargs(setting_parameters(sampling), s) == {"seed": 7, "temperature": 0.5, "settings": s}


def test_the_repeats_maths_by_hand():
    from harness.repeats import aggregate, seeds_for

    assert seeds_for(10, 3) == [10, 11, 12]

    def answer(passed: bool, counts: dict) -> tuple[dict, list[dict]]:
        row = {"example_id": "x", "output_key": "k", "result_key": "r", "output": "o", "details": "{}",
               "latency_ms": 10.0, "prompt_tokens": 5, "completion_tokens": 3, "error": None, "cached": False,
               "created_at": None, "score": float(passed), "passed": passed, "reason": None if passed else "no"}
        return row, [{"example_id": "x", "metric": "json_fields", "value": float(passed), "passed": passed,
                      "reason": None, "counts": json.dumps(counts)}]

    res, scores = aggregate([answer(True, {"tp": 2, "fp": 0, "fn": 0}), answer(False, {"tp": 1, "fp": 1, "fn": 1})],
                            [0, 1], output_key="K", result_key="R")
    assert (res["score"], res["passed"], res["pass_rate"], res["reason"]) == (0.5, False, 0.5, "repeat 1 (seed 1): no")
    by = {s["metric"]: s for s in scores}
    assert by["json_fields"]["value"] == 0.5 and json.loads(by["json_fields"]["counts"]) == {"tp": 3, "fp": 1, "fn": 1}
    assert (by["pass@2"]["value"], by["pass^2"]["value"], by["flaky"]["value"]) == (1.0, 0.0, 1.0)
    assert json.loads(res["details"])["repeats"]["seeds"] == [0, 1]


def test_suite_repeats_does_not_change_the_suite_hash(tmp_path):
    from harness.suites import load_suite

    d = write_suite(tmp_path, "s", [{"id": "a", "input": "x", "expected": "x"}])
    before = load_suite(d).content_hash
    (d / "suite.yaml").write_text((d / "suite.yaml").read_text() + "repeats: 5\n")
    assert load_suite(d).content_hash == before



def _dashboard(start: str) -> None:
    from dashboard.shell import main

    main(start)


def test_the_dashboard_failures_page_lists_the_flaky_examples(sampling_project, monkeypatch, capsys):
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    root, _ = sampling_project
    _run(capsys, "--model", "sampler", "--repeats", "3")
    monkeypatch.setenv("TOLLGATE_PROJECT", str(root / "tollgate.yaml"))
    st.cache_data.clear()
    at = AppTest.from_function(_dashboard, args=("failures",), default_timeout=120)
    at.query_params.update({"model": "sampler"})
    at = at.run()
    assert not at.exception
    assert any(s.value == "Flaky examples" for s in at.subheader)
    labels = [e.label for e in at.expander]
    assert "words · e1 — 67% of 3 repeats passed" in labels and "words · e3 — 33% of 3 repeats passed" in labels
    table = next(d.value for d in at.dataframe if "verdict" in d.value.columns and "w1" in set(d.value["answer"]))
    assert list(table["verdict"]) == ["pass", "fail"] and list(table["repeats"]) == ["0, 2", "1"]
