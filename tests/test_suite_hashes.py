"""The gate's cache of suite content hashes: reused only while the suite's files are untouched."""

from __future__ import annotations

import json
import time

import pytest
from conftest import write_suite

import harness.suite_hashes as sh
from harness.suites import load_suite

EXAMPLES = [{"id": f"e{i}", "input": f"word{i}", "expected": f"word{i}"} for i in range(20)]


@pytest.fixture
def loads(monkeypatch):
    """How many suites were loaded in full (the real load_suite runs)."""
    seen: list[str] = []
    real = sh.load_suite

    def counting(d):
        seen.append(d.name)
        return real(d)

    monkeypatch.setattr(sh, "load_suite", counting)
    return seen


def test_a_hash_equals_the_full_load_and_is_reused_while_the_files_are_untouched(tmp_path, loads):
    d = write_suite(tmp_path, "heldout", EXAMPLES)
    cache = tmp_path / ".tollgate" / sh.CACHE_FILE
    first = sh.suite_hashes([d], cache)
    assert first == {"heldout": load_suite(d).content_hash}
    assert sh.suite_hashes([d], cache) == first
    assert loads == ["heldout"]  # the second call read only the header


@pytest.mark.parametrize("edit", ["data", "data same size", "suite.yaml"])
def test_any_edit_loads_the_suite_again(tmp_path, loads, edit):
    d = write_suite(tmp_path, "heldout", EXAMPLES)
    cache = tmp_path / sh.CACHE_FILE
    before = sh.suite_hashes([d], cache)["heldout"]
    time.sleep(0.02)  # past the file system's clock tick
    if edit == "suite.yaml":
        (d / "suite.yaml").write_text((d / "suite.yaml").read_text() + "tags: [x]\n")
    else:
        text = (d / "examples.jsonl").read_text()
        (d / "examples.jsonl").write_text(text.replace("word19", "word91" if edit == "data same size" else "w"))
    after = sh.suite_hashes([d], cache)["heldout"]
    assert after != before and after == load_suite(d).content_hash
    assert loads == ["heldout", "heldout"]


def test_a_broken_or_foreign_cache_only_costs_the_speed_up(tmp_path, loads):
    d = write_suite(tmp_path, "heldout", EXAMPLES)
    cache = tmp_path / sh.CACHE_FILE
    truth = load_suite(d).content_hash
    for junk in ("{not json", "[1, 2]", json.dumps({str(d.resolve()): {"stamp": "old", "hash": "forged"}})):
        cache.write_text(junk)
        assert sh.suite_hashes([d], cache) == {"heldout": truth}
    assert len(loads) == 3


def test_an_invalid_edit_is_reported_not_hidden_by_the_cache(tmp_path):
    from harness.errors import TollgateInputError

    d = write_suite(tmp_path, "heldout", EXAMPLES)
    cache = tmp_path / sh.CACHE_FILE
    sh.suite_hashes([d], cache)
    time.sleep(0.02)
    with (d / "examples.jsonl").open("a") as f:
        f.write('{"id": "e0", "input": "dup", "expected": "dup"}\n')
    with pytest.raises(TollgateInputError, match="e0"):
        sh.suite_hashes([d], cache)
