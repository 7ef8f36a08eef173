"""The demo: a deterministic generator, suites that validate, and models whose numbers are measured."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import pytest
from conftest import run_cli

from demo.data import FIELDS, generate
from demo.stages import MODELS, SUITES, WEIGHTS, write_data, write_project
from demo.train import Recipe, SmallRecipe

# the session's full demo (tests/conftest.py: full_demo) runs inside the first test that asks for it
pytestmark = pytest.mark.timeout(1800)


def _digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_writes_identical_files_and_another_seed_does_not(tmp_path):
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        write_data(tmp_path / name, generate(seed=seed, n_train=300))
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


def test_documents_hold_the_values_they_are_labelled_with():
    data = generate(n_train=400)
    for row in data.train + data.heldout:
        doc, exp = row["input"]["document"], row["expected"]
        assert set(exp) == set(FIELDS)
        for field in ("claimant_name", "policy_number", "injury_type", "damage_description"):
            assert exp[field] in doc, (field, doc)
        assert len(doc.split()) >= 25


def test_heldout_names_are_new_combinations_from_the_same_pools():
    data = generate()
    train_names = {r["expected"]["claimant_name"] for r in data.train}
    held = [r["expected"]["claimant_name"] for r in data.heldout]
    assert len(held) == 300 and not set(held) & train_names
    first_names = {n.split()[0] for n in train_names}
    assert all(n.split()[0] in first_names for n in held)


def test_edge_suite_covers_every_hard_case_and_missing_fields_expect_null():
    edge = generate().edge
    kinds = {t for r in edge for t in r["tags"]}
    assert {"legalese", "missing-field", "two-dates", "ocr-noise", "non-ascii-name", "long-document",
            "prompt-injection"} <= kinds
    missing = [r for r in edge if "missing-field" in r["tags"]]
    assert all(sum(v is None for v in r["expected"].values()) == 1 for r in missing)
    assert max(len(r["input"]["document"].split()) for r in edge) > 250
    assert any(not r["expected"]["claimant_name"].isascii() for r in edge if "non-ascii-name" in r["tags"])


def test_raw_export_holds_duplicates_and_one_conflicting_label():
    data = generate()
    docs = [r["input"]["document"] for r in data.raw]
    assert len(docs) - len(set(docs)) == 4  # three exact duplicates and one relabelled twin
    by_doc: dict[str, set[str]] = {}
    for r in data.raw:
        by_doc.setdefault(r["input"]["document"], set()).add(json.dumps(r["expected"], sort_keys=True))
    assert sum(len(v) > 1 for v in by_doc.values()) == 1


def test_demo_project_and_suites_validate(tmp_path):
    data = generate(n_train=200, n_validation=10, n_heldout=10, n_train_sample=10, edge_per_kind=1)
    write_data(tmp_path, data)
    write_project(tmp_path)
    for m in MODELS:
        (tmp_path / "models" / m).mkdir(parents=True)
    res = run_cli("validate", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert f"{len(MODELS)} model(s), {len(SUITES)} suite(s)" in res.stdout


def test_shipped_weights_were_built_by_the_current_recipe():
    for m in MODELS:
        meta = json.loads((WEIGHTS / m / "build.json").read_text())
        recipe = SmallRecipe() if m == "small" else Recipe()
        assert meta["recipe"] == asdict(recipe), f"{m}: recipe changed; rebuild with python -m demo.build"
        assert (WEIGHTS / m / "model.safetensors").stat().st_size < 4_000_000


def test_scaled_down_demo_trains_and_evaluates_end_to_end(tmp_path):
    res = run_cli("demo", "--dir", str(tmp_path / "d"), "--rebuild", "--scale", "0.02", "--small", "--no-progress",
                  cwd=tmp_path, timeout=480)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "field accuracy" in res.stdout and "overfit" in res.stdout
    rows = json.loads(run_cli("results", "--format", "json", cwd=tmp_path / "d").stdout)
    runs = {(r["model"], r["suite"]) for r in rows}
    assert {(m, s) for m in MODELS for s in (*SUITES, "claims_cloze", "policy_reading", "arithmetic")} <= runs
    assert all(r["errors"] == 0 for r in rows)


def test_candidate_beats_production_on_heldout_field_accuracy(full_demo):
    _, by, _ = full_demo
    cand, prod = by["candidate", "heldout", "json_fields"], by["production", "heldout", "json_fields"]
    assert cand["value"] > prod["value"]
    assert cand["ci_low"] > prod["ci_high"], "the difference should be clear, not noise"


def test_overfit_model_shows_a_clear_train_heldout_gap(full_demo):
    _, by, _ = full_demo
    train, held = by["overfit", "train_sample", "json_fields"], by["overfit", "heldout", "json_fields"]
    assert train["ci_low"] > held["ci_high"]
    assert by["base", "heldout", "json_valid"]["value"] < 0.5, "the base model never learned the task"


def test_the_demo_gate_passes_the_candidate_and_fails_the_overfit_model(full_demo):
    res, _, _ = full_demo
    assert "gate candidate --against production: PASS" in res.stderr
    assert "gate overfit --against production: FAIL" in res.stderr
    assert "no overfitting: gap" in res.stdout and "no overfitting: memorisation" in res.stdout


def test_the_demo_puts_accuracy_against_cost_with_a_smaller_model(full_demo):
    res, by, _ = full_demo
    assert "tollgate compare --cost candidate production small" in res.stderr
    assert all(m in res.stdout for m in ("candidate", "production", "small")) and "frontier" in res.stdout.lower()
    # whether the small model is good enough is measured, not scripted: it has the same runs as the others
    # (the candidate also has the gate's memorisation probe, "train_sample~memorisation")
    assert {s for (m, s, _) in by if m == "small"} == {s for (m, s, _) in by if m == "candidate" and "~" not in s}


def test_the_demo_decisions_recompute_from_their_records(full_demo):
    root = full_demo[2]
    decisions = json.loads(run_cli("decisions", "--format", "json", cwd=root).stdout)
    assert {d["candidate"] for d in decisions} == {"candidate", "overfit"}
    offline = [d for d in decisions if "policy" in d["evidence"]]
    traffic = [d for d in decisions if d["evidence"].get("gate") in ("shadow", "beta")]
    assert offline and traffic and len(offline) + len(traffic) == len(decisions)
    for d in offline:
        check = run_cli("decisions", "--id", d["decision_id"], "--verify", cwd=root)
        assert check.returncode == 0 and "evidence identical" in check.stdout, check.stdout + check.stderr
    check = run_cli("decisions", "--id", traffic[0]["decision_id"], "--verify", cwd=root)
    assert check.returncode == 2 and "only offline gate decisions are recomputed" in check.stderr


def test_shipped_general_suites_are_what_the_generator_writes(tmp_path):
    from demo.general import ROOT, write_general_suites

    write_general_suites(tmp_path)
    assert _digest(tmp_path) == _digest(ROOT)


def test_the_demo_shows_general_benchmarks_before_and_after(full_demo):
    res, by, _ = full_demo
    assert "General benchmarks through lm-eval" in res.stdout
    for model in MODELS:
        assert by[model, "policy_reading", "acc"]["n"] == 120
    assert by["base", "claims_cloze", "acc"]["stage"] == "pre-finetune"
    assert by["candidate", "claims_cloze", "acc"]["stage"] == "post-finetune"
