"""The referee against selection on the test set: the store counts the distinct models each held-out
suite version has judged, ``compare`` and ``gate`` say when it is many, and the policy can require a
fresh suite."""

from __future__ import annotations

import json
import textwrap

from conftest import write_project, write_suite

from harness.cli import main

MODELS = "".join(f"""\
  {name}:
    adapter: python
    options: {{callable: "smodels:{name}"}}
""" for name in ("m1", "m2", "m3", "m4", "m5"))
# m1 95%, m2 80%, the others 75% of 100 examples right
SMODELS = textwrap.dedent("""\
    def _i(prompt):
        return int(prompt.split("q")[-1])
    def m1(prompt):
        return "a" if _i(prompt) % 20 != 0 else "b"
    def m2(prompt):
        return "a" if _i(prompt) % 5 != 0 else "b"
    def m3(prompt):
        return "a" if _i(prompt) % 4 != 0 else "b"
    def m4(prompt):
        return "a" if _i(prompt) % 4 != 1 else "b"
    def m5(prompt):
        return "a" if _i(prompt) % 4 != 2 else "b"
""")


def make(root, gate: str = "", n: int = 100) -> None:
    (root / "smodels.py").write_text(SMODELS)
    write_project(root, MODELS, suites="  - suites/*\n" + gate)
    heldout(root, n)
    write_suite(root, "edge", [{"id": f"{i:04d}", "input": f"q{i}", "expected": "a"} for i in range(40)], kind="edge",
                extra="checks: [exact_match]\n")


def heldout(root, n: int) -> None:
    write_suite(root, "heldout", [{"id": f"{i:04d}", "input": f"q{i}", "expected": "a"} for i in range(n)],
                extra="checks: [exact_match]\n")


def run(*models: str) -> None:
    for m in models:
        assert main(["run", "--model", m, "--no-progress", "--format", "json"]) == 0


def uses(root) -> list:
    from harness.selection import heldout_uses
    from harness.store import Store

    with Store(root / ".tollgate" / "tollgate.duckdb").read() as con:
        return heldout_uses(con)


def test_the_store_counts_distinct_models_per_heldout_version_and_a_changed_suite_starts_at_zero(
        tmp_path, monkeypatch, capsys):
    make(tmp_path)
    monkeypatch.chdir(tmp_path)
    run("m1", "m2", "m3")
    run("m1")  # the same model again is not another selection
    [use] = uses(tmp_path)
    assert (use.suite, use.n_models, use.models, use.current) == ("heldout", 3, ["m1", "m2", "m3"], True)
    assert use.first_used <= use.last_used
    old_hash = use.suite_hash

    heldout(tmp_path, 101)  # one more example: another version of the suite
    run("m4")
    new, old = uses(tmp_path)
    assert (new.n_models, new.models, new.current) == (1, ["m4"], True) and new.suite_hash != old_hash
    assert (old.n_models, old.suite_hash, old.current) == (3, old_hash, False)
    # the edge suite is not held out: never counted
    assert {u.suite for u in uses(tmp_path)} == {"heldout"}


def test_other_weights_under_the_same_name_are_another_model(tmp_path, monkeypatch):
    make(tmp_path)
    monkeypatch.chdir(tmp_path)
    run("m1")
    (tmp_path / "smodels.py").write_text(SMODELS + "\n# retrained\n")  # new fingerprint for every model
    run("m1")
    [use] = uses(tmp_path)
    assert use.n_models == 2 and use.models == ["m1"]


def test_compare_and_gate_warn_when_a_heldout_version_has_judged_more_than_three_models(tmp_path, monkeypatch, capsys):
    make(tmp_path, "gate:\n  rules:\n    - {suite: heldout, min: 0.5}\n")
    monkeypatch.chdir(tmp_path)
    run("m1", "m2", "m3")
    capsys.readouterr()
    assert main(["compare", "m1", "m2"]) == 0
    assert main(["gate", "m1"]) == 0
    assert "has judged" not in capsys.readouterr().err  # a base, production and one candidate: no selection yet

    run("m4")
    capsys.readouterr()
    assert main(["compare", "m1", "m2"]) == 0
    err = capsys.readouterr().err
    assert "warning: heldout (version " in err and "has judged 4 models since it last changed" in err
    assert "optimistic for whichever model was chosen on it" in err and "m1, m2, m3, m4" in err
    assert main(["gate", "m1", "--json"]) == 0  # a warning, not a verdict, without the policy
    out = capsys.readouterr()
    assert "has judged 4 models" in out.err
    d = json.loads(out.out)
    assert [(u["suite"], u["n_models"]) for u in d["heldout_use"]] == [("heldout", 4)]


def test_the_gate_fails_when_the_heldout_suite_has_judged_more_models_than_the_policy_allows(
        tmp_path, monkeypatch, capsys):
    make(tmp_path, "gate:\n  max_selections_per_heldout: 3\n  rules:\n    - {suite: heldout, min: 0.5}\n")
    monkeypatch.chdir(tmp_path)
    run("m1", "m2", "m3")
    capsys.readouterr()
    assert main(["gate", "m1", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    sel = [r for r in d["rules"] if r["condition"] == "max_selections_per_heldout"]
    assert [(r["verdict"], r["comparison"]["n_models"], r["threshold"]) for r in sel] == [("pass", 3, 3.0)]

    run("m4")
    capsys.readouterr()
    assert main(["gate", "m1", "--json"]) == 1
    d = json.loads(capsys.readouterr().out)
    assert d["verdict"] == "fail"
    [sel] = [r for r in d["rules"] if r["condition"] == "max_selections_per_heldout"]
    assert sel["verdict"] == "fail" and sel["suite"] == "heldout"
    assert "has judged 4 models" in sel["reason"] and "a fresh held-out suite is required" in sel["reason"]
    assert sel["comparison"]["models"] == ["m1", "m2", "m3", "m4"]
    assert [r["verdict"] for r in d["rules"] if r["condition"] == "min"] == ["pass"]  # the score itself is fine

    # the decision recomputes identically however many models are run later: uses are counted up to its time
    decision = d["decision_id"]
    run("m5")
    capsys.readouterr()
    assert main(["decisions", "--id", decision[:12], "--verify"]) == 0
    assert "stored verdict fail, recomputed fail; evidence identical" in capsys.readouterr().out

    # a fresh held-out suite: the gate passes again once the candidate has run on it
    heldout(tmp_path, 120)
    run("m1")
    capsys.readouterr()
    assert main(["gate", "m1"]) == 0


def test_a_gate_with_the_limit_lists_the_rule_in_its_table(tmp_path, monkeypatch, capsys):
    make(tmp_path, "gate:\n  max_selections_per_heldout: 1\n  rules:\n    - {kind: heldout, min: 0.5}\n")
    monkeypatch.chdir(tmp_path)
    run("m1", "m2")
    capsys.readouterr()
    assert main(["gate", "m1"]) == 1
    out = capsys.readouterr().out
    assert "fresh held-out suite" in out and "FAIL" in out
