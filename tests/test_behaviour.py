"""Behavioural tests (invariant_to / directional): scored against the model's own answer on a source
example, field by field; sources in the same or another suite answered first; cached on the source's
answer; bad references refused at load; perturbations that generate them; failures that show what moved."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import random
import re
import signal
import textwrap
from pathlib import Path

import duckdb
import pytest
from conftest import write_project, write_suite

from harness.cli import main
from harness.perturbations import MONTHS, date_formats, field_order, names, sentences

STORE = Path(".tollgate/tollgate.duckdb")

MODELS = """\
  m:
    adapter: python
    options: {callable: "mymodels:extract"}
  t:
    adapter: python
    options: {callable: "mymodels:last_word"}
"""

# ``extract`` reads an ASCII "claimant First Last" (so "the said Claimant ..." and non-ASCII names give
# null) and the first policy number; every prompt it sees is logged, so a cached run can be told apart.
MYMODELS = textwrap.dedent("""\
    import json, os, re

    NAME = re.compile(r"claimant ([A-Z][a-z]+ [A-Z][a-z]+)")
    POLICY = re.compile(r"POL-[0-9]+")


    def _log(prompt):
        with open("calls.log", "a", encoding="utf-8") as f:
            f.write(json.dumps(prompt) + "\\n")


    def extract(prompt):
        _log(prompt)
        if "BOOM" in prompt and os.environ.get("TG_BOOM"):
            raise RuntimeError("endpoint timed out")
        name, policy = NAME.search(prompt), POLICY.search(prompt)
        return json.dumps({"name": name.group(1) if name else None, "policy": policy.group(0) if policy else None})


    def last_word(prompt):
        _log(prompt)
        return prompt.split()[-1]
    """)

CHECKS = "checks: [json_fields]\n"


def doc(text: str) -> dict:
    return {"doc": text}


def claim(i: str, text: str, name: str | None, policy: str | None, **extra) -> dict:
    return {"id": i, "input": doc(text), "expected": {"name": name, "policy": policy}, **extra}


D1 = claim("d1", "The claimant Anna Berg reported whiplash under policy POL-1.", "Anna Berg", "POL-1")
TYPO_D1 = "The claimant Anna Berg reportd whiplsh under policy POL-1."
LEGAL_D1 = "WHEREAS the said Claimant Anna Berg did aver whiplash under policy POL-1."


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "mymodels.py").write_text(MYMODELS)
    write_project(tmp_path, MODELS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TG_BOOM", raising=False)
    return tmp_path


def q(root: Path, sql: str, params: list | None = None) -> list[tuple]:
    con = duckdb.connect(str(root / STORE), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def latest(root: Path, suite: str) -> dict[str, dict]:
    """example id -> its result row in the newest run of ``suite``."""
    cols = ["passed", "score", "reason", "error", "cached", "result_key", "details"]
    rows = q(root, f"""SELECT r.example_id, {", ".join("r." + c for c in cols)} FROM results r
                      WHERE r.run_id = (SELECT run_id FROM runs WHERE suite = ? ORDER BY started_at DESC LIMIT 1)""",
             [suite])
    return {r[0]: dict(zip(cols, r[1:], strict=True)) for r in rows}


def scores(root: Path, suite: str, example_id: str) -> dict[str, float]:
    rows = q(root, """SELECT metric, value FROM scores WHERE example_id = ? AND run_id =
                      (SELECT run_id FROM runs WHERE suite = ? ORDER BY started_at DESC LIMIT 1)""",
             [example_id, suite])
    return dict(rows)


def calls(root: Path) -> list[str]:
    p = root / "calls.log"
    return [json.loads(line) for line in p.read_text().splitlines()] if p.exists() else []


def run(*args: str) -> int:
    return main(["run", "--no-progress", "--format", "json", *args])


# -- invariant_to ---------------------------------------------------------------------------------
def test_invariance_compares_json_answers_field_by_field_with_the_source_answer(project, capsys):
    rows = [
        {"id": "d1~legal", "input": doc(LEGAL_D1), "expected": None, "invariant_to": "d1"},  # before its source
        D1,
        {"id": "d1~typo", "input": doc(TYPO_D1), "expected": None, "invariant_to": "d1"},
        claim("d2", "The claimant Bob Stone reported a dent under policy POL-2.", "Robert Stone", "POL-2"),
        {"id": "d2~typo", "input": doc("The claimant Bob Stone reportd a dnet under policy POL-2."),
         "expected": None, "invariant_to": "d2"},
    ]
    write_suite(project, "claims", rows, prompt="{{ doc }}", extra=CHECKS)
    assert run("--model", "m", "--commit-every", "1") == 0
    res = latest(project, "claims")
    assert {k: (v["passed"], v["error"]) for k, v in res.items()} == {
        "d1": (True, None), "d1~legal": (False, None), "d1~typo": (True, None),
        "d2": (False, None), "d2~typo": (True, None)}
    assert res["d1~legal"]["reason"] == "invariance: vs d1: name changed: 'Anna Berg' -> None"
    # expected null: only the comparison with the source is scored, field by field
    assert scores(project, "claims", "d1~legal") == {"invariance": 0.5, "invariance.name": 0.0,
                                                     "invariance.policy": 1.0}
    assert q(project, "SELECT reason FROM scores WHERE example_id = 'd1~legal' AND metric = 'invariance'") == [
        ("vs d1: name changed: 'Anna Berg' -> None",)]
    # CheckList INV: wrong on the source (Bob for Robert) and wrong the same way once rephrased is invariant
    assert res["d2"]["reason"] == "name: expected 'Robert Stone', got 'Bob Stone'"
    assert scores(project, "claims", "d2~typo") == {"invariance": 1.0, "invariance.name": 1.0,
                                                    "invariance.policy": 1.0}
    beh = json.loads(res["d1~legal"]["details"])["behaviour"]
    assert beh == {"source": "d1", "type": "invariance",
                   "source_output": json.dumps({"name": "Anna Berg", "policy": "POL-1"})}
    assert sorted(calls(project)) == sorted(r["input"]["doc"] for r in rows)  # each prompt asked once


def test_invariance_with_an_expected_value_must_also_pass_the_suite_checks(project):
    rows = [
        D1,
        claim("both", TYPO_D1, "Anna Berg", "POL-1", invariant_to="d1"),
        claim("label", TYPO_D1, "Anna Bergh", "POL-1", invariant_to="d1"),  # same answer, wrong label
        claim("inv", LEGAL_D1, None, "POL-1", invariant_to="d1"),  # right label, answer moved
    ]
    write_suite(project, "claims", rows, prompt="{{ doc }}", extra=CHECKS)
    assert run("--model", "m") == 0
    res = latest(project, "claims")
    assert {k: (v["passed"], v["reason"]) for k, v in res.items()} == {
        "d1": (True, None), "both": (True, None),
        "label": (False, "json_fields: name: expected 'Anna Bergh', got 'Anna Berg'"),
        "inv": (False, "invariance: vs d1: name changed: 'Anna Berg' -> None")}
    assert res["inv"]["score"] == 1.0 and res["label"]["score"] == 0.5  # the row's score is the label check's
    assert set(scores(project, "claims", "both")) == {"invariance", "invariance.name", "invariance.policy",
                                                      "json_fields", "json_fields.name", "json_fields.policy"}
    assert scores(project, "claims", "inv")["invariance"] == 0.5
    assert scores(project, "claims", "inv")["json_fields"] == 1.0


def test_text_answers_are_compared_after_normalisation(project):
    rows = [
        {"id": "q1", "input": "Capital of France? Paris", "expected": "Paris"},
        {"id": "case", "input": "capital of france?   paris.", "expected": None, "invariant_to": "q1"},
        {"id": "moved", "input": "Capital of France? Lyon", "expected": None, "invariant_to": "q1"},
        {"id": "italy", "input": "Capital of Italy? Rome", "expected": None,
         "directional": {"of": "q1", "changes": "output"}},
        {"id": "stuck", "input": "And of France, again? Paris", "expected": None,
         "directional": {"of": "q1", "changes": "output"}},
    ]
    write_suite(project, "capitals", rows, extra="checks: [exact_match]\n")
    assert run("--model", "t") == 0
    res = latest(project, "capitals")
    assert {k: (v["passed"], v["reason"]) for k, v in res.items()} == {
        "q1": (True, None), "case": (True, None),
        "moved": (False, "invariance: answer changed from q1's: 'Paris' -> 'Lyon'"),
        "italy": (True, None), "stuck": (False, "directional: answer did not change from q1's")}
    assert scores(project, "capitals", "case") == {"invariance": 1.0}  # text: no per-field metrics
    assert scores(project, "capitals", "stuck") == {"directional": 0.0}


# -- directional ----------------------------------------------------------------------------------
def test_directional_declared_fields_must_change_and_kept_ones_must_not(project):
    carl_pol9 = "The claimant Carl Dahl reported whiplash under policy POL-9."
    rows = [
        D1,
        {"id": "ok", "input": doc("The claimant Carl Dahl reported whiplash under policy POL-1."), "expected": None,
         "directional": {"of": "d1", "changes": ["name"]}},
        {"id": "same", "input": doc("The claimant Anna Berg reported a dent under policy POL-1."), "expected": None,
         "directional": {"of": "d1", "changes": ["name"], "keeps": "rest"}},
        {"id": "rest", "input": doc(carl_pol9), "expected": None, "directional": {"of": "d1", "changes": ["name"]}},
        {"id": "listed", "input": doc(carl_pol9), "expected": None,
         "directional": {"of": "d1", "changes": ["name"], "keeps": []}},  # policy not declared: free to move
        {"id": "label", "input": doc(carl_pol9), "expected": {"name": "Carl Dahl", "policy": "POL-1"},
         "directional": {"of": "d1", "changes": ["name", "policy"]}},
    ]
    write_suite(project, "claims", rows, prompt="{{ doc }}", extra=CHECKS)
    assert run("--model", "m") == 0
    res = latest(project, "claims")
    assert {k: (v["passed"], v["reason"]) for k, v in res.items()} == {
        "d1": (True, None), "ok": (True, None),
        "same": (False, "directional: vs d1: name did not change (still 'Anna Berg')"),
        "rest": (False, "directional: vs d1: policy changed: 'POL-1' -> 'POL-9'"),
        "listed": (True, None),
        "label": (False, "json_fields: policy: expected 'POL-1', got 'POL-9'")}
    assert scores(project, "claims", "ok") == {"directional": 1.0, "directional.name": 1.0,
                                               "directional.policy": 1.0}
    assert scores(project, "claims", "same") == {"directional": 0.5, "directional.name": 0.0,
                                                 "directional.policy": 1.0}
    assert scores(project, "claims", "listed") == {"directional": 1.0, "directional.name": 1.0}
    assert json.loads(res["rest"]["details"])["behaviour"]["type"] == "directional"


# -- sources in another suite, caching, errors ---------------------------------------------------
def two_suites(root: Path, d1: dict = D1) -> None:
    write_suite(root, "heldout", [d1, claim("d2", "The claimant Bob Stone reported BOOM damage under policy "
                                                  "POL-2.", "Bob Stone", "POL-2")], prompt="{{ doc }}", extra=CHECKS)
    write_suite(root, "edge", [
        {"id": "e1", "input": doc(TYPO_D1), "expected": None, "invariant_to": "d1"},
        {"id": "e2", "input": doc("The claimant Carl Dahl reported damage under policy POL-2."), "expected": None,
         "directional": {"of": "d2", "changes": ["name"]}},
    ], kind="edge", prompt="{{ doc }}", extra=CHECKS + "source_suite: heldout\n")


def test_a_source_suite_runs_first_and_a_rerun_is_fully_cached_until_the_source_answer_changes(project):
    two_suites(project)
    assert run("--model", "m", "--suite", "edge") == 0
    assert q(project, "SELECT suite, status, n_examples, n_cached FROM runs ORDER BY started_at") == [
        ("heldout", "completed", 2, 0), ("edge", "completed", 2, 0)]
    first = latest(project, "edge")
    assert {k: (v["passed"], v["error"]) for k, v in first.items()} == {"e1": (True, None), "e2": (True, None)}
    assert len(calls(project)) == 4

    assert run("--model", "m", "--suite", "edge") == 0
    assert q(project, "SELECT suite, n_cached FROM runs ORDER BY started_at")[2:] == [("heldout", 2), ("edge", 2)]
    assert len(calls(project)) == 4  # nothing asked again

    # the source now reads another policy: its answer changes, so e1's comparison is redone
    moved = claim("d1", "The claimant Anna Berg reported whiplash under policy POL-7.", "Anna Berg", "POL-7")
    two_suites(project, d1=moved)
    assert run("--model", "m", "--suite", "edge") == 0
    assert calls(project)[4:] == [moved["input"]["doc"]]  # only the changed source is asked; e1's answer reused
    third = latest(project, "edge")
    assert third["e1"]["result_key"] != first["e1"]["result_key"]
    assert (third["e1"]["passed"], third["e1"]["reason"]) == (
        False, "invariance: vs d1: policy changed: 'POL-7' -> 'POL-1'")
    assert third["e2"]["result_key"] == first["e2"]["result_key"] and third["e2"]["cached"] is True


def test_an_errored_source_leaves_an_error_naming_it_not_a_pass_and_is_retried(project, monkeypatch, capsys):
    two_suites(project)
    monkeypatch.setenv("TG_BOOM", "1")
    assert run("--model", "m", "--suite", "edge") == 0
    held, edge = latest(project, "heldout"), latest(project, "edge")
    assert held["d2"]["error"] == "RuntimeError: endpoint timed out"
    err = edge["e2"]["error"]
    assert edge["e2"]["passed"] is None and edge["e2"]["score"] is None
    assert err.startswith("source example 'd2' has no ") and err.endswith("; the next run retries it"), err
    assert (edge["e1"]["passed"], edge["e1"]["error"]) == (True, None)
    assert q(project, "SELECT count(*) FROM scores WHERE example_id = 'e2'") == [(0,)]
    assert q(project, "SELECT suite, n_errors FROM runs ORDER BY started_at") == [("heldout", 1), ("edge", 1)]
    capsys.readouterr()
    assert main(["failures", "m", "--suite", "edge", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [(s["slice"], s["value"], s["n"]) for s in report["slices"]] == [("(all)", 0.5, 2), ("(untagged)", 0.5, 2)]
    assert [(f["example_id"], f["source"]) for f in report["failures"]] == [("e2", "d2")]

    monkeypatch.delenv("TG_BOOM")
    assert run("--model", "m", "--suite", "edge") == 0
    edge = latest(project, "edge")
    assert {k: (v["passed"], v["error"], v["cached"]) for k, v in edge.items()} == {
        "e1": (True, None, True), "e2": (True, None, False)}


# -- bad input ------------------------------------------------------------------------------------
def _digest(root: Path) -> str | None:
    p = root / STORE
    return hashlib.sha256(p.read_bytes()).hexdigest() if p.exists() else None


A = {"id": "a", "input": doc("The claimant Anna Berg under POL-1."), "expected": None}


def _b(**kw) -> dict:
    return {"id": "b", "input": doc("The claimant Anna Berg under POL-1!"), "expected": None, **kw}


BAD = {
    "missing-id": ([A, _b(invariant_to="zz")], "", "examples.jsonl, line 2: field 'invariant_to': names source "
                                                  "example 'zz', which suite 'bad' does not have"),
    "missing-id-other-suite": ([A, _b(invariant_to="zz")], "source_suite: good\n",
                               "examples.jsonl, line 2: field 'invariant_to': names source example 'zz', which "
                               "suite 'good' does not have"),
    "missing-suite": ([A, _b(invariant_to="a")], "source_suite: nosuch\n",
                      "suite.yaml, line 5: field 'source_suite': names suite 'nosuch', which the project does not "
                      "have (it has: bad, good)"),
    "no-changes": ([A, _b(directional={"of": "a"})], "",
                   "examples.jsonl, line 2: field 'directional.changes': Field required"),
    "empty-changes": ([A, _b(directional={"of": "a", "changes": []})], "",
                      "examples.jsonl, line 2: field 'directional.changes': "),
    "unknown-key": ([A, _b(directional={"of": "a", "changes": ["name"], "kept": "rest"})], "",
                    "examples.jsonl, line 2: field 'directional.kept': Extra inputs are not permitted"),
    "change-and-keep": ([A, _b(directional={"of": "a", "changes": ["name"], "keeps": ["name"]})], "",
                        "examples.jsonl, line 2: field 'directional.keeps': field 'name' cannot both change and "
                        "stay"),
    "both": ([A, _b(invariant_to="a", directional={"of": "a", "changes": "output"})], "",
             "examples.jsonl, line 2: field 'directional': an example is either invariant_to a source or "
             "directional, not both"),
    "self-invariant": ([A, _b(invariant_to="b")], "",
                       "examples.jsonl, line 2: field 'invariant_to': an example cannot be compared with itself"),
    "self-directional": ([A, _b(directional={"of": "b", "changes": "output"})], "",
                         "examples.jsonl, line 2: field 'directional.of': an example cannot be compared with itself"),
    "source-is-behavioural": ([A, _b(invariant_to="a"), {**_b(invariant_to="b"), "id": "c"}], "",
                              "examples.jsonl, line 3: field 'invariant_to': source example 'b' is itself "
                              "compared with another example"),
    "source-is-behavioural-other-suite": ([{**A, "invariant_to": "y"}], "source_suite: good\n",
                                          "examples.jsonl, line 1: field 'invariant_to': source example 'y' is "
                                          "itself compared with another example"),
}


@pytest.fixture
def stored(project):
    """A project with one good suite (y compares with x) and a store already written by a run."""
    write_suite(project, "good", [{"id": "x", "input": doc("x"), "expected": None},
                                  {"id": "y", "input": doc("y"), "expected": None, "invariant_to": "x"}],
                prompt="{{ doc }}")
    assert run("--model", "t") == 0
    return project


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_behavioural_references_are_refused_before_anything_is_written(stored, capsys, case):
    rows, extra, fragment = BAD[case]
    write_suite(stored, "bad", rows, kind="edge", prompt="{{ doc }}", extra=extra)
    before, n_calls = _digest(stored), len(calls(stored))
    capsys.readouterr()
    assert run("--model", "t") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and fragment in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert _digest(stored) == before and len(calls(stored)) == n_calls
    assert main(["validate"]) == 2


@pytest.mark.parametrize(("args", "fragment"), [
    (["--with", "ocr"], "field '--with': perturbation 'ocr' can change the right answer in ways nobody can predict"),
    (["--with", "typos,truncation"], "field '--with': perturbation 'truncation' can change the right answer"),
    (["--with", "nosuch"], "field '--with': unknown perturbation 'nosuch'"),
    (["--with", "typos", "--sample", "0"], "field '--sample': must be at least 1, got 0."),
])
def test_perturb_refuses_unpredictable_or_unknown_perturbations_and_an_empty_sample(stored, capsys, args, fragment):
    before = _digest(stored)
    capsys.readouterr()
    assert main(["suite", "perturb", "good", *args, "--out", "x"]) == 2
    err = capsys.readouterr().err
    assert fragment in err, err
    assert not (stored / "suites" / "x").exists() and _digest(stored) == before


# -- perturbations --------------------------------------------------------------------------------
_M = "|".join(MONTHS)
_ANY_DATE = re.compile(
    rf"(?P<iso>(\d{{4}})-(\d{{2}})-(\d{{2}}))|(?P<ord>the (\d{{1,2}})(st|nd|rd|th) day of ({_M}), (\d{{4}}))"
    rf"|(?P<mdy>({_M}) (\d{{1,2}}), (\d{{4}}))|(?P<dmy>(\d{{1,2}}) ({_M}) (\d{{4}}))"
    rf"|(?P<dmya>(\d{{1,2}}) ({'|'.join(m[:3] for m in MONTHS)})\. (\d{{4}}))")


def _suffix(d: int) -> str:
    return "th" if 10 <= d % 100 < 20 else {1: "st", 2: "nd", 3: "rd"}.get(d % 10, "th")


def parse_dates(text: str) -> tuple[list[dt.date], list[str], str]:
    """Every date written in one of the five styles: (dates in order, styles, the text around them)."""
    out, styles = [], []
    for m in _ANY_DATE.finditer(text):
        g = [x for x in m.groups() if x is not None]
        style = m.lastgroup
        if style == "iso":
            date = dt.date(int(g[1]), int(g[2]), int(g[3]))
        elif style == "ord":
            assert g[2] == _suffix(int(g[1])), m.group()
            date = dt.date(int(g[4]), MONTHS.index(g[3]) + 1, int(g[1]))
        elif style == "mdy":
            date = dt.date(int(g[3]), MONTHS.index(g[1]) + 1, int(g[2]))
        else:
            date = dt.date(int(g[3]), [x[:3] for x in MONTHS].index(g[2][:3]) + 1, int(g[1]))
        out.append(date)
        styles.append(style)
    return out, styles, _ANY_DATE.sub("<DATE>", text)


def test_date_formats_rewrites_every_unambiguous_date_keeping_the_calendar_date():
    text = ("Filed 2024-03-01, crash on March 22, 2022, seen 13 Mar. 2023 and 2 September 2021; "
            "ref 03/04/2022, form 7.")
    dates, _, skeleton = parse_dates(text)
    assert dates == [dt.date(2024, 3, 1), dt.date(2022, 3, 22), dt.date(2023, 3, 13), dt.date(2021, 9, 2)]
    seen = set()
    for seed in range(25):
        out = date_formats(text, random.Random(seed))
        assert out == date_formats(text, random.Random(seed))  # deterministic for a seed
        got, got_styles, got_skeleton = parse_dates(out)
        assert got == dates and got_skeleton == skeleton, out  # same dates, text around them untouched
        assert "03/04/2022" in out  # ambiguous: left alone
        orig_spans = [m.group() for m in _ANY_DATE.finditer(text)]
        new_spans = [m.group() for m in _ANY_DATE.finditer(out)]
        assert all(a != b for a, b in zip(orig_spans, new_spans, strict=True)), out  # every date rewritten
        seen.update(got_styles)
    assert seen == {"iso", "ord", "mdy", "dmy", "dmya"}
    assert date_formats("due 2021-13-01 or 2021-02-00", random.Random(0)) == "due 2021-13-01 or 2021-02-00"


FORM = ("Dr. Ann Lee examined the claimant. Sgt. Bob Ray filed report No. 12 today. The car was red. "
        "Policy POL-1 applies. Damage was minor.")
FORM_SENTENCES = ["Dr. Ann Lee examined the claimant.", "Sgt. Bob Ray filed report No. 12 today.",
                  "The car was red.", "Policy POL-1 applies.", "Damage was minor."]


def test_field_order_keeps_the_sentences_and_never_splits_after_titles():
    assert sentences(FORM) == FORM_SENTENCES
    orders = set()
    for seed in range(10):
        out = field_order(FORM, random.Random(seed))
        assert out == field_order(FORM, random.Random(seed))
        assert out != FORM and sorted(sentences(out)) == sorted(FORM_SENTENCES), out
        orders.add(tuple(sentences(out)))
    assert len(orders) >= 5
    assert field_order("Too short. Two sentences.", random.Random(0)) == "Too short. Two sentences."


def test_names_replaces_the_person_in_input_and_expected_and_declares_the_field():
    inp = {"doc": "The claimant Anna Berg reported. Signed: Anna Berg.", "notes": ["Anna Berg called", 3]}
    exp = {"name": "Anna Berg", "driver": "Anna Berg", "policy": "POL-1", "city": "oslo"}
    rw = names(inp, exp, random.Random(7))
    assert rw == names(inp, exp, random.Random(7))  # deterministic
    new = rw.expected["name"]
    assert new != "Anna Berg" and not new.isascii()
    assert rw.expected == {**exp, "name": new, "driver": new}  # one person, one new name, everywhere
    assert rw.input == {"doc": f"The claimant {new} reported. Signed: {new}.", "notes": [f"{new} called", 3]}
    assert rw.changes == ["name", "driver"]
    assert exp["name"] == "Anna Berg"  # the source's expected value is not mutated
    text = names("Who filed? Bob Stone did.", "Bob Stone", random.Random(1))
    assert text.changes == "output" and text.input == f"Who filed? {text.expected} did."
    assert names({"doc": "nobody"}, {"name": None, "policy": "POL-1"}, random.Random(0)) is None
    assert names({"doc": "x"}, {"name": "Anna Berg"}, random.Random(0)) is None  # not in the input


def heldout3(root: Path, n: int = 3) -> list[dict]:
    rows = [claim(f"d{i}", f"The claimant Anna Berg{'abcde'[i]} reported whiplash under policy POL-{i}.",
                  f"Anna Berg{'abcde'[i]}", f"POL-{i}") for i in range(n)]
    write_suite(root, "heldout", rows, prompt="{{ doc }}", extra=CHECKS)
    return rows


def test_perturb_sample_writes_linked_invariant_and_directional_examples(project, capsys):
    src = {r["id"]: r for r in heldout3(project, 5)}
    assert main(["suite", "perturb", "heldout", "--with", "typos,names", "--sample", "3", "--out", "x"]) == 0
    assert "wrote 6 examples" in capsys.readouterr().out
    text = (project / "suites" / "x" / "examples.jsonl").read_text()
    rows = [json.loads(line) for line in text.splitlines()]
    ids = [r["id"].split("~")[0] for r in rows]
    assert len(rows) == 6 and len(set(ids)) == 3 and ids[:3] == ids[3:] and set(ids) <= set(src)
    for r, sid in zip(rows, ids, strict=True):
        kind = r["id"].split("~")[1]
        assert f"source:{sid}" in r["tags"] and f"perturbation:{kind}" in r["tags"]
        if kind == "typos":
            assert r["invariant_to"] == sid and "directional" not in r and r["expected"] == src[sid]["expected"]
        else:
            new = r["expected"]["name"]
            assert "invariant_to" not in r
            assert r["directional"] == {"of": sid, "changes": ["name"], "keeps": "rest"}
            assert r["expected"]["policy"] == src[sid]["expected"]["policy"] and new != src[sid]["expected"]["name"]
            assert r["input"]["doc"] == src[sid]["input"]["doc"].replace(src[sid]["expected"]["name"], new)
    spec = (project / "suites" / "x" / "suite.yaml").read_text()
    assert "source_suite: heldout" in spec and "kind: edge" in spec
    assert main(["suite", "perturb", "heldout", "--with", "typos,names", "--sample", "3", "--out", "x", "--force"]) == 0
    assert (project / "suites" / "x" / "examples.jsonl").read_text() == text  # same seed, same suite
    assert main(["validate"]) == 0


# -- failures -------------------------------------------------------------------------------------
def test_failures_by_perturbation_show_the_source_and_what_moved_from_its_answer(project, capsys):
    src = {r["id"]: r for r in heldout3(project)}
    assert main(["suite", "perturb", "heldout", "--with", "legalese,names", "--out", "edge-auto"]) == 0
    assert run("--model", "m", "--suite", "edge-auto") == 0
    assert [r[0] for r in q(project, "SELECT suite FROM runs ORDER BY started_at")] == ["heldout", "edge-auto"]
    capsys.readouterr()
    assert main(["failures", "m", "--suite", "edge-auto", "--by", "perturbation", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [(s["suite"], s["slice"], s["value"], s["n"]) for s in report["slices"]] == [
        ("edge-auto", "(all)", 0.0, 6), ("edge-auto", "legalese", 0.0, 3), ("edge-auto", "names", 0.0, 3)]
    fails = {f["example_id"]: f for f in report["failures"]}
    assert sorted(fails) == sorted(f"d{i}~{p}" for i in range(3) for p in ("legalese", "names"))
    for ex_id, f in fails.items():
        sid, kind = ex_id.split("~")
        was = src[sid]["expected"]["name"]
        assert (f["source"], f["vs_source"], f["error"]) == (sid, {"name": [was, None]}, None)
        if kind == "legalese":  # the answer lost the name: the label and the source both say so
            assert f["diff"] == {"name": [was, None]}
            assert f["reason"] == (f"invariance: vs {sid}: name changed: {was!r} -> None; "
                                   f"json_fields: name: expected {was!r}, got None")
        else:  # the name did change (directional passes) but not to the new one
            assert f["diff"] == {"name": [f["expected"]["name"], None]}
            assert f["reason"] == f"json_fields: name: expected {f['expected']['name']!r}, got None"
    assert main(["failures", "m", "--suite", "edge-auto", "--by", "perturbation"]) == 0
    assert "vs d0:" in capsys.readouterr().out


# -- chained source suites, and known bugs ---------------------------------------------------
def _chain(root: Path) -> None:
    """heldout <- edge (its behavioural examples) <- aaa (compares with a plain example of edge)."""
    two_suites(root)
    with (root / "suites" / "edge" / "examples.jsonl").open("a") as f:
        f.write(json.dumps(claim("e0", "The claimant Eva Lund under policy POL-5.", "Eva Lund", "POL-5")) + "\n")
    write_suite(root, "aaa", [{"id": "f1", "input": doc("the claimant Eva Lund, policy POL-5."), "expected": None,
                               "invariant_to": "e0"}], kind="edge", prompt="{{ doc }}",
                extra=CHECKS + "source_suite: edge\n")


def test_running_a_suite_whose_source_suite_has_its_own_source_suite(project):
    _chain(project)
    assert run("--model", "m", "--suite", "aaa") == 0
    assert [r[0] for r in q(project, "SELECT suite FROM runs ORDER BY started_at")] == ["heldout", "edge", "aaa"]
    assert q(project, "SELECT example_id, passed, error FROM results ORDER BY example_id") == [
        ("d1", True, None), ("d2", True, None), ("e0", True, None), ("e1", True, None), ("e2", True, None),
        ("f1", True, None)]


def test_source_suites_that_loop_are_refused_naming_the_loop(project, capsys):
    write_suite(project, "aa", [{"id": "a1", "input": doc("x"), "expected": None},
                                {"id": "a2", "input": doc("x!"), "expected": None, "invariant_to": "b1"}],
                kind="edge", prompt="{{ doc }}", extra=CHECKS + "source_suite: bb\n")
    write_suite(project, "bb", [{"id": "b1", "input": doc("y"), "expected": None},
                                {"id": "b2", "input": doc("y!"), "expected": None, "invariant_to": "a1"}],
                kind="edge", prompt="{{ doc }}", extra=CHECKS + "source_suite: aa\n")
    assert run("--model", "m", "--suite", "aa") == 2
    err = capsys.readouterr().err
    assert "source suites loop: aa -> bb -> aa" in err and "source_suite" in err
    assert not (project / STORE).exists()


def test_chained_source_suites_are_all_answered_before_the_suites_that_compare_with_them(project):
    _chain(project)
    assert run("--model", "m") == 0  # every suite: listed aaa, edge, heldout
    assert [r[0] for r in q(project, "SELECT suite FROM runs ORDER BY started_at")] == ["heldout", "edge", "aaa"]
    assert q(project, "SELECT count(*), count(*) FILTER (WHERE error IS NOT NULL) FROM results") == [(6, 0)]


def test_field_order_terminates_when_all_sentences_are_equal():
    def alarm(signum, frame):
        raise TimeoutError("field_order did not return within 1 s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, 1.0)
    try:
        assert field_order("Signed. Signed. Signed.", random.Random(0)) == "Signed. Signed. Signed."
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def test_field_order_keeps_an_unterminated_last_sentence_a_sentence_of_its_own():
    text = "Dr. Ann Lee examined the claimant. The car was red. Policy POL-1 applies"
    for seed in range(6):
        out = field_order(text, random.Random(seed))
        assert len(sentences(out)) == 3, out


def test_an_integer_id_can_be_named_as_a_source(project):
    write_suite(project, "claims", [{"id": 1, "input": doc("x"), "expected": None},
                                    {"id": 2, "input": doc("y"), "expected": None, "invariant_to": 1}],
                prompt="{{ doc }}")
    assert main(["validate"]) == 0
