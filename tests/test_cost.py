"""Cost and size: parameters from safetensors headers, latency and throughput from the store, a price
per 1,000 requests from tollgate.yaml, the accuracy/cost frontier, and gate rules bounding cost and
latency."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
from conftest import write_project, write_suite

from harness.cli import main
from harness.cost import model_size, pareto_frontier, request_costs, safetensors_parameters
from harness.project import CostEntry

MODELS = """\
  good:
    adapter: python
    options: {callable: "cmodels:good"}
    cost: {per_hour: 100}
  cheap:
    adapter: python
    options: {callable: "cmodels:cheap"}
    cost: {per_hour: 0.01, currency: USD}
  bad:
    adapter: python
    options: {callable: "cmodels:bad"}
    cost: {per_hour: 1000}
  free:
    adapter: python
    options: {callable: "cmodels:free"}
"""
# good 95% right and ~1 ms an answer, cheap 80% and instant, bad 50% and ~2 ms, free 100% with no price
CMODELS = textwrap.dedent("""\
    import time
    def _i(prompt):
        return int(prompt.split("q")[-1])
    def good(prompt):
        time.sleep(0.001)
        return "a" if _i(prompt) % 20 != 0 else "b"
    def cheap(prompt):
        return "a" if _i(prompt) % 5 != 0 else "b"
    def bad(prompt):
        time.sleep(0.002)
        return "a" if _i(prompt) % 2 == 0 else "b"
    def free(prompt):
        return "a"
""")


def make(root, rules: str = "") -> None:
    (root / "cmodels.py").write_text(CMODELS)
    gate = "gate:\n  rules:\n" + textwrap.indent(textwrap.dedent(rules), "    ") if rules else ""
    write_project(root, MODELS, suites="  - suites/*\n" + gate)
    write_suite(root, "heldout", [{"id": f"{i:04d}", "input": f"q{i}", "expected": "a"} for i in range(200)],
                extra="checks: [exact_match]\n")


def run(*models: str) -> None:
    for m in models:
        assert main(["run", "--model", m, "--no-progress", "--format", "json"]) == 0


def latencies(root, model: str) -> np.ndarray:
    """The stored latencies of a model's error-free results, read straight from the store."""
    import duckdb

    con = duckdb.connect(str(root / ".tollgate" / "tollgate.duckdb"), read_only=True)
    try:
        rows = con.execute("SELECT r.latency_ms FROM results r JOIN runs USING (run_id) WHERE runs.model = ? "
                           "AND r.error IS NULL", [model]).fetchall()
    finally:
        con.close()
    return np.array([r[0] for r in rows], dtype=float)


# -- size ----------------------------------------------------------------------------------------------------
def test_parameters_from_safetensors_headers_equal_torchs_count_and_size_is_the_folders(tiny_causal_dir):
    from transformers import AutoModelForCausalLM

    from harness.adapters.base import GenerationSettings, ModelConfig

    torch_count = AutoModelForCausalLM.from_pretrained(tiny_causal_dir).num_parameters()
    [weights] = list(tiny_causal_dir.glob("*.safetensors"))
    assert safetensors_parameters(weights) == torch_count
    cfg = ModelConfig(name="tiny", adapter="hf-causal", options=None, generation=GenerationSettings(),
                      path=tiny_causal_dir)
    params, size = model_size(cfg)
    assert params == torch_count
    assert size == sum(p.stat().st_size for p in tiny_causal_dir.rglob("*") if p.is_file())
    assert model_size(ModelConfig(name="fn", adapter="python", options=None, generation=GenerationSettings())) \
        == (None, None)


def test_a_file_that_is_not_safetensors_is_bad_input(tmp_path):
    from harness.errors import TollgateInputError

    bad = tmp_path / "model.safetensors"
    bad.write_bytes((10**12).to_bytes(8, "little") + b"{}")
    with pytest.raises(TollgateInputError, match="not a valid safetensors file"):
        safetensors_parameters(bad)


# -- arithmetic ----------------------------------------------------------------------------------------------
def test_cost_per_1k_by_the_hour_and_by_the_token_against_hand_computed_values():
    m = {"latency_ms": np.array([100.0, 300.0]), "prompt_tokens": np.array([100.0, 200.0]),
         "completion_tokens": np.array([10.0, 30.0])}
    # 1.20 an hour, 200 ms a request on average: 5 requests a second, 18,000 an hour: 1.20 / 18 per 1,000
    x, _ = request_costs(CostEntry(per_hour=1.2), m)
    assert float(x.mean()) == pytest.approx(1.2 / (5 * 3600) * 1000) == pytest.approx(1.2 / 18)
    # 150 prompt and 20 completion tokens a request: 1,000 requests are 150k and 20k tokens
    x, _ = request_costs(CostEntry(per_1k_prompt_tokens=0.5, per_1k_completion_tokens=1.5), m)
    assert list(x) == [pytest.approx(65.0), pytest.approx(145.0)]
    assert float(x.mean()) == pytest.approx(150 * 0.5 + 20 * 1.5)
    # a token price left out is free; results without token counts cannot be priced by the token
    x, _ = request_costs(CostEntry(per_1k_completion_tokens=2.0), m)
    assert float(x.mean()) == pytest.approx(20 * 2.0)
    x, how = request_costs(CostEntry(per_1k_prompt_tokens=0.5),
                           {**m, "prompt_tokens": np.array([np.nan, np.nan])})
    assert len(x) == 0 and "no token counts" in how


def test_the_frontier_keeps_every_model_no_other_beats_on_both_accuracy_and_cost():
    points = [(0.95, 0.03), (0.80, 0.0001), (0.50, 0.55), (1.0, None), (0.95, 0.05), (0.80, 0.0001)]
    assert pareto_frontier(points) == [True, True, False, None, False, True]


# -- compare --cost --------------------------------------------------------------------------------------------
def test_compare_cost_measures_each_model_and_marks_the_frontier(tmp_path, monkeypatch, capsys):
    make(tmp_path)
    monkeypatch.chdir(tmp_path)
    run("good", "cheap", "bad", "free")
    capsys.readouterr()
    assert main(["compare", "good", "cheap", "bad", "free", "--cost", "--format", "json"]) == 0
    rows = {r["model"]: r for r in json.loads(capsys.readouterr().out)}
    assert {m: r["frontier"] for m, r in rows.items()} == {"good": True, "cheap": True, "bad": False, "free": None}
    assert (rows["good"]["accuracy"], rows["good"]["accuracy_n"]) == (0.95, 200)
    assert rows["good"]["accuracy_low"] < 0.95 < rows["good"]["accuracy_high"]
    lat = latencies(tmp_path, "good")
    g = rows["good"]
    assert g["latency_p50_ms"] == pytest.approx(np.quantile(lat, 0.5))
    assert g["latency_p95_ms"] == pytest.approx(np.quantile(lat, 0.95))
    assert g["throughput_per_s"] == pytest.approx(1000 / lat.mean())
    assert g["cost_per_1k"] == pytest.approx(100 / (g["throughput_per_s"] * 3600) * 1000)
    assert (g["pricing"], g["currency"], g["parameters"], g["size_bytes"]) == ("per hour", "USD", None, None)
    free = rows["free"]
    assert (free["pricing"], free["cost_per_1k"], free["accuracy"]) == ("no price", None, 1.0)

    capsys.readouterr()
    assert main(["compare", "good", "cheap", "bad", "free", "--cost"]) == 0
    out = capsys.readouterr().out
    assert "no price" in out and "frontier" in out and "dominated" in out and "n/a" in out


def test_compare_cost_bad_input_is_exit_2(tmp_path, monkeypatch, capsys):
    make(tmp_path)
    monkeypatch.chdir(tmp_path)
    run("good", "cheap")
    capsys.readouterr()
    assert main(["compare", "good", "nosuch", "--cost"]) == 2
    assert "unknown model 'nosuch'" in capsys.readouterr().err
    assert main(["compare", "good", "--cost"]) == 2
    assert main(["compare", "good", "cheap", "bad"]) == 2  # without --cost: two models
    assert "compare takes two models" in capsys.readouterr().err
    assert main(["compare", "good", "cheap", "--cost", "--suite", "nosuch"]) == 2
    assert main(["compare", "good", "cheap", "--cost", "--metric", "f1"]) == 2
    assert main(["compare", "bad", "free", "--cost"]) == 2  # neither ran
    assert "has a completed run" in capsys.readouterr().err


# -- gate rules ------------------------------------------------------------------------------------------------
def gate(capsys, *args: str) -> tuple[int, dict]:
    capsys.readouterr()
    code = main(["gate", *args, "--json"])
    out = capsys.readouterr()
    return code, (json.loads(out.out) if out.out.strip() else {"err": out.err})


def test_a_cost_rule_passes_a_cheap_enough_model_and_fails_a_dear_one(tmp_path, monkeypatch, capsys):
    make(tmp_path, "- {suite: heldout, max_cost_per_1k: 0.25}\n")
    monkeypatch.chdir(tmp_path)
    run("good", "bad")
    code, d = gate(capsys, "good")  # ~1 ms at 100 an hour: ~0.03 per 1,000
    [rule] = d["rules"]
    assert code == 0 and rule["verdict"] == "pass" and rule["metric"] == "cost_per_1k"
    assert rule["candidate"]["value"] == pytest.approx(100 * latencies(tmp_path, "good").mean() / 3600)
    assert rule["candidate"]["currency"] == "USD" and d["prices"] == {"good": CostEntry(per_hour=100).model_dump()}
    code, d = gate(capsys, "bad")  # ~2 ms at 1000 an hour: ~0.6 per 1,000
    assert code == 1 and d["rules"][0]["verdict"] == "fail" and "needs a mean cost per 1,000" in d["rules"][0]["reason"]
    # the decision recomputes from its own evidence, price included
    assert main(["decisions", "--id", d["decision_id"][:12], "--verify"]) == 0
    assert "evidence identical" in capsys.readouterr().out


def test_a_median_latency_rule_is_judged_like_the_p95_one(tmp_path, monkeypatch, capsys):
    make(tmp_path, "- {suite: heldout, max_latency_p50_ms: 1000}\n- {suite: heldout, max_latency_p95_ms: 1000}\n")
    monkeypatch.chdir(tmp_path)
    run("cheap", "bad")
    code, d = gate(capsys, "cheap")
    assert code == 0 and [r["verdict"] for r in d["rules"]] == ["pass", "pass"]
    assert d["rules"][0]["candidate"]["method"] == "empirical p50" and "needs < 50%" in d["rules"][0]["reason"]
    make(tmp_path, "- {suite: heldout, max_latency_p50_ms: 0.5}\n")
    code, d = gate(capsys, "bad")  # every answer takes at least 2 ms
    assert code == 1 and d["rules"][0]["verdict"] == "fail"
    assert d["rules"][0]["candidate"]["value"] >= 2.0


def test_a_cost_rule_on_a_model_without_a_price_is_a_clear_usage_error(tmp_path, monkeypatch, capsys):
    make(tmp_path, "- {suite: heldout, max_cost_per_1k: 1}\n")
    monkeypatch.chdir(tmp_path)
    run("free")
    code, d = gate(capsys, "free")
    assert code == 2
    assert "bounds the cost of free, which has no price" in d["err"] and "models.free" in d["err"]


def test_a_cost_rule_is_a_rule_like_any_other_in_the_policy_file(tmp_path, monkeypatch, capsys):
    make(tmp_path, "- {suite: heldout, max_cost_per_1k: 0.5, min: 0.5}\n")
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert main(["validate"]) == 2
    assert "exactly one of" in capsys.readouterr().err
    make(tmp_path, "- {suite: heldout, max_cost_per_1k: -1}\n")
    assert main(["validate"]) == 2


# -- the dashboard ---------------------------------------------------------------------------------------------
def _release_page(project, monkeypatch):
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("TOLLGATE_PROJECT", str(project))
    st.cache_data.clear()
    return AppTest.from_function(_app, default_timeout=120).run()


def _app() -> None:
    from dashboard.shell import main

    main("release")


def test_the_release_page_shows_the_heldout_count_its_warning_and_the_cost_frontier(tmp_path, monkeypatch):
    make(tmp_path)
    monkeypatch.chdir(tmp_path)
    run("good", "cheap", "bad", "free")
    at = _release_page(tmp_path / "tollgate.yaml", monkeypatch)
    assert not at.exception, at.exception
    text = "\n".join(str(e.value) for kind in ("markdown", "warning", "caption", "subheader")
                     for e in getattr(at, kind))
    assert "has judged 4 models since it last changed" in "\n".join(str(w.value) for w in at.warning)
    assert "Accuracy against cost" in text and "Not on the chart, no price: free" in text
    tables = [t.value for t in at.table]
    counts = next(t for t in tables if "models judged" in t.columns)
    assert counts.loc["heldout", "models judged"] == 4
    frontier = next(t for t in tables if "cost / 1k" in t.columns)
    assert list(frontier["frontier"]) == ["frontier", "frontier", "dominated", "—"]
    assert frontier.loc["free", "cost / 1k"] == "no price"
