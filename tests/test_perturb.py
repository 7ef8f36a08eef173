"""Generated adversarial suites: deterministic, answer-preserving, linked to their sources, extensible."""

from __future__ import annotations

import json
import random

import pytest
from conftest import ECHO_MODEL, write_project, write_suite

from harness.cli import main
from harness.perturbations import apply, perturbations, register_perturbation

DOCS = [{"id": f"d{i}", "input": {"doc": f"The claimant Anna Berg{i} reported whiplash after the accident on "
                                         f"2024-03-0{i % 9 + 1} under policy POL-12345{i}."},
         "expected": {"name": f"Anna Berg{i}", "policy": f"POL-12345{i}", "injury": "whiplash"},
         "tags": ["police"]} for i in range(12)]


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "mymodels.py").write_text("def echo(p):\n    return p.split()[-1]\n")
    write_project(tmp_path, ECHO_MODEL)
    write_suite(tmp_path, "heldout", DOCS, prompt="{{ doc }}", extra="checks: [json_fields]\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_perturbed_suite_keeps_every_answer_value_and_links_each_example_to_its_source(project, capsys):
    names = "typos,casing,whitespace,unicode,legalese,distractor,injection,padding"
    assert main(["suite", "perturb", "heldout", "--with", names, "--out", "edge-auto"]) == 0
    out = rows(project / "suites" / "edge-auto" / "examples.jsonl")
    assert len(out) == 12 * 8
    for r in out:
        src = r["id"].split("~")[0]
        assert f"source:{src}" in r["tags"] and any(t.startswith("perturbation:") for t in r["tags"])
        for value in r["expected"].values():
            assert value in r["input"]["doc"], (r["id"], value)  # an invariant rewrite keeps the answer
    changed = [r for r in out if r["input"]["doc"] not in {d["input"]["doc"] for d in DOCS}]
    assert len(changed) >= 0.9 * len(out)  # and does rewrite the document
    assert main(["validate"]) == 0
    assert main(["run", "--model", "echo", "--suite", "edge-auto", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["failures", "echo", "--suite", "edge-auto", "--by", "perturbation", "--format", "json"]) == 0
    slices = {s["slice"] for s in json.loads(capsys.readouterr().out)["slices"]}
    assert {"typos", "legalese", "injection"} <= slices


def test_same_seed_same_suite_and_another_seed_differs(project):
    for out, seed in (("a", "1"), ("b", "1"), ("c", "2")):
        assert main(["suite", "perturb", "heldout", "--with", "typos,unicode", "--out", out, "--seed", seed]) == 0
    text = {n: (project / "suites" / n / "examples.jsonl").read_text() for n in "abc"}
    assert text["a"] == text["b"] != text["c"]


def test_unknown_or_answer_changing_perturbations_are_refused(project, capsys):
    assert main(["suite", "perturb", "heldout", "--with", "tpyos", "--out", "x"]) == 2
    assert "unknown perturbation 'tpyos'" in capsys.readouterr().err
    assert main(["suite", "perturb", "heldout", "--with", "ocr", "--out", "x"]) == 2
    assert "can change the right answer" in capsys.readouterr().err
    assert not (project / "suites" / "x").exists()
    assert main(["suite", "perturb", "heldout", "--with", "typos", "--out", "heldout"]) == 2  # never overwrites


def test_qa_can_register_their_own_perturbation():
    @register_perturbation("test-reverse-words", invariant=True)
    def reverse_words(text: str, rng: random.Random) -> str:
        """Reverse the word order."""
        return " ".join(reversed(text.split()))

    try:
        out = apply("test-reverse-words", {"doc": "a b Anna Berg"}, random.Random(0), protect=["Anna Berg"])
        assert out == {"doc": "Anna Berg b a"}
        assert perturbations.get("test-reverse-words").description == "Reverse the word order."
    finally:
        del perturbations._items["test-reverse-words"]


def test_suite_new_copies_the_format_and_validates_at_once(project, capsys):
    assert main(["suite", "new", "edge-dates", "--kind", "edge", "--from", "heldout"]) == 0
    import yaml

    spec = yaml.safe_load((project / "suites" / "edge-dates" / "suite.yaml").read_text())
    assert (spec["name"], spec["kind"], spec["prompt"]) == ("edge-dates", "edge", "{{ doc }}")
    assert spec["checks"] == ["json_fields"]
    first = rows(project / "suites" / "edge-dates" / "examples.jsonl")[0]
    assert first["expected"] == DOCS[0]["expected"] and first["tags"] == ["todo"]
    assert main(["validate"]) == 0
    assert main(["suite", "new", "edge-dates"]) == 2  # never overwrites
    assert main(["suite", "new", "plain", "--kind", "heldout"]) == 0 and main(["validate"]) == 0
