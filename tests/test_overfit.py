"""Overfitting flags raise on the evidence they name, and stay down without it."""

from __future__ import annotations

import json
import textwrap

from conftest import write_project, write_suite

from harness.cli import main

MODELS = """\
  base:
    adapter: python
    role: base
    options: {callable: "omodels:base"}
  tuned:
    adapter: python
    role: candidate
    training_data: data/train.jsonl
    options: {callable: "omodels:tuned"}
"""
# tuned knows its training documents ("seen ...") and little else; base answers everything alike;
# on the general suite the tuned model forgot what the base knew.
OMODELS = textwrap.dedent("""\
    def base(prompt):
        return "ok"
    def tuned(prompt):
        if prompt.startswith("general"):
            return "no"
        return "ok" if prompt.lower().startswith("seen") else "no"
""")


def build(tmp_path) -> None:
    (tmp_path / "omodels.py").write_text(OMODELS)
    train = [{"id": f"t{i}", "input": f"seen document number {i} about a claim", "expected": "ok"} for i in range(80)]
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train))
    write_project(tmp_path, MODELS)
    write_suite(tmp_path, "train_sample", train[:60], kind="train_sample")
    held = [{"id": f"h{i}", "input": f"new document number {i} about a claim", "expected": "ok"} for i in range(60)]
    held += [{"id": "leak", "input": "SEEN document number 3 about a claim!", "expected": "ok"}]  # normalises equal
    write_suite(tmp_path, "heldout", held)
    write_suite(tmp_path, "general", [{"id": f"g{i}", "input": f"general question {i}", "expected": "ok"}
                                      for i in range(60)], kind="general")


def test_flags_raise_on_a_model_that_learned_its_data(tmp_path, monkeypatch, capsys):
    build(tmp_path)
    monkeypatch.chdir(tmp_path)
    for m in ("base", "tuned"):
        assert main(["run", "--model", m, "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["overfit", "tuned", "--json"]) == 1
    flags = {f["name"]: f for f in json.loads(capsys.readouterr().out)}
    assert flags["gap"]["raised"] is True and "unpaired" in flags["gap"]["explanation"]
    gap = flags["gap"]["evidence"]["comparison"]
    assert gap["candidate"] == 1.0 and gap["ci_low"] > 0.05
    assert flags["forgetting"]["raised"] is True and "paired" in flags["forgetting"]["explanation"]
    assert flags["contamination"]["raised"] is True
    suite = flags["contamination"]["evidence"]["suites"][0]
    assert (suite["suite"], suite["contaminated"], suite["examples"]) == ("heldout", 1, ["leak"])
    assert suite["score_clean"] < suite["score_all"]  # the leaked example flatters the score
    assert flags["optimism"]["raised"] is None  # no edge suite: unknown, not "fine"


def test_flags_stay_down_for_the_base_model(tmp_path, monkeypatch, capsys):
    build(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--model", "base", "--no-progress"]) == 0
    capsys.readouterr()
    code = main(["overfit", "base", "--base", "base", "--json"])
    flags = {f["name"]: f for f in json.loads(capsys.readouterr().out)}
    assert flags["gap"]["raised"] is False and flags["forgetting"]["raised"] is False
    assert flags["contamination"]["raised"] is None  # base names no training data
    assert code == 3


MEMO_MODELS = """\
  reader:
    adapter: python
    options: {callable: "mmodels:reader"}
  recaller:
    adapter: python
    options: {callable: "mmodels:recaller"}
"""
NAMES = ["Alice Smith", "Bob Jones", "Carol White", "Dan Brown", "Eve Black", "Fay Green"]
MMODELS = textwrap.dedent(f"""\
    import json
    NAMES = {NAMES!r}
    def reader(prompt):  # reads the name from the document
        return json.dumps({{"name": prompt.split("filed by ")[1].split(" under")[0]}})
    def recaller(prompt):  # recalls the name it was trained with for this claim number
        number = int(prompt.split("number ")[1])
        return json.dumps({{"name": NAMES[number % len(NAMES)]}})
""")


def memo_project(tmp_path, n: int, monkeypatch) -> None:
    """A train_sample suite of n claims whose name the reader reads and the recaller recalls."""
    (tmp_path / "mmodels.py").write_text(MMODELS)
    write_project(tmp_path, MEMO_MODELS)
    rows = [{"id": f"t{i}", "input": {"doc": f"Claim filed by {NAMES[i % 6]} under number {i}"},
             "expected": {"name": NAMES[i % 6]}} for i in range(n)]
    write_suite(tmp_path, "train_sample", rows, kind="train_sample", prompt="{{ doc }}",
                extra="checks: [json_fields]\n")
    monkeypatch.chdir(tmp_path)


def test_memorisation_flag_tells_recall_from_reading(tmp_path, monkeypatch, capsys):
    memo_project(tmp_path, 60, monkeypatch)
    flags = {}
    for model in ("reader", "recaller"):
        capsys.readouterr()
        main(["overfit", model, "--memorisation", "--no-progress", "--json"])
        flags[model] = next(f for f in json.loads(capsys.readouterr().out) if f["name"] == "memorisation")
    assert flags["reader"]["raised"] is False and flags["reader"]["evidence"]["recalled"] == 0
    assert flags["recaller"]["raised"] is True
    assert flags["recaller"]["evidence"]["recalled"] == flags["recaller"]["evidence"]["n"] == 60
    swap = flags["recaller"]["evidence"]["examples"][0]
    assert swap["field"] == "name" and swap["original"] != swap["replacement"]


def test_memorisation_without_a_probe_run_is_unknown_not_fine(tmp_path, monkeypatch, capsys):
    memo_project(tmp_path, 10, monkeypatch)
    assert main(["run", "--model", "reader", "--no-progress"]) == 0
    capsys.readouterr()
    main(["overfit", "reader", "--json"])
    flag = next(f for f in json.loads(capsys.readouterr().out) if f["name"] == "memorisation")
    assert flag["raised"] is None and "--memorisation" in flag["explanation"]
