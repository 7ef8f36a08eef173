"""The bad-input corpus: hand-made malformed files under tests/data/bad/, each with the message it
must produce (tests/data/bad/cases.yaml says which, and how the files are laid out).

Every case runs the real CLI (``harness.cli.main``, in-process) on a copy of a good project with the
one bad file put in, and must give exit code 2 and one line on stderr, without a traceback, that
holds the expected fragments, the file's name and its line (or data row), and must leave every
file of the project as it was: no store created, nothing written beside the input.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.cli import main

BAD = Path(__file__).parent / "data" / "bad"
CASES: list[dict[str, Any]] = yaml.safe_load((BAD / "cases.yaml").read_text(encoding="utf-8"))
RUN = ["run", "--model", "echo", "--no-progress"]


def snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` (bytecode caches aside) and its content hash."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and "__pycache__" not in p.parts}


def _copy(src: Path, dst: Path, expand: dict[str, int]) -> None:
    data = src.read_bytes()
    for marker, n in expand.items():
        data = data.replace(marker.encode(), b"x" * n)
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(data)


def build(case: dict[str, Any], root: Path) -> list[str]:
    """The good project with the case's bad file in place; returns the command to run."""
    shutil.copytree(BAD / "base", root)
    expand = case.get("expand", {})
    args = list(case.get("args", RUN))
    if "project" in case:
        _copy(BAD / case["project"], root / "tollgate.yaml", expand)
    if "suite" in case:
        src = BAD / case["suite"]
        for f in src.iterdir():
            _copy(f, root / "suites" / src.name / f.name, expand)
    if "ingest" in case:
        src = BAD / case["ingest"]
        _copy(src, root / src.name, expand)
        args = list(case.get("args", [src.parent.name, "ingest", src.name]))
    return args


@pytest.mark.timeout(60)  # a loader that hangs on its input fails here instead of stalling the suite
@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_a_bad_file_gives_its_message_exit_2_and_writes_nothing(case: dict[str, Any], tmp_path: Path, capsys,
                                                                monkeypatch) -> None:
    root = tmp_path / "project"
    args = build(case, root)
    monkeypatch.chdir(root)
    before = snapshot(root)
    capsys.readouterr()

    rc = main(args)

    out = capsys.readouterr()
    err = out.err.strip()
    assert rc == 2, f"exit {rc}, expected 2 (bad input); stderr: {err}"
    assert "Traceback" not in out.err and "Traceback" not in out.out
    assert len(err.splitlines()) == 1 and err.isprintable(), f"the error must be one printable line: {err!r}"
    for fragment in case["expect"]:
        assert fragment in err, f"{fragment!r} not in: {err}"
    assert case["file"] in err, f"the message must name the file {case['file']}: {err}"
    if "line" in case:
        assert re.search(rf"{re.escape(case['file'])}, line {case['line']}\b", err), \
            f"the message must name {case['file']}, line {case['line']}: {err}"
    if "row" in case:
        assert re.search(rf"\brow {case['row']}\b", err), f"the message must name row {case['row']}: {err}"
    assert snapshot(root) == before, "a rejected input must not write or change any file"
    assert not (root / ".tollgate").exists(), "a rejected input must not create the store"


def test_the_base_project_is_good(tmp_path: Path, monkeypatch, capsys) -> None:
    """Each case fails for its own file: without it, the project validates."""
    shutil.copytree(BAD / "base", tmp_path / "project")
    monkeypatch.chdir(tmp_path / "project")
    assert main(["validate"]) == 0, capsys.readouterr().err


def test_every_fixture_belongs_to_a_case_and_every_case_has_its_fixture() -> None:
    used = {c[k] for c in CASES for k in ("project", "suite", "ingest") if k in c}
    for path in used:
        assert (BAD / path).exists(), f"cases.yaml names {path}, which does not exist"
    files = {p.relative_to(BAD).as_posix() for p in BAD.rglob("*") if p.is_file()}
    orphans = sorted(f for f in files - {"cases.yaml"} if not f.startswith("base/")
                     and f not in used and not any(f.startswith(u + "/") for u in used))
    assert not orphans, f"fixtures without a case: {orphans}"
    assert len({c["id"] for c in CASES}) == len(CASES), "case ids must be unique"
    assert all(len((BAD / f).read_bytes()) < 16_384 for f in files), "fixtures stay small (see 'expand')"
