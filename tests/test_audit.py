"""The audit trail is append-only: no Tollgate command edits or deletes a ``decisions`` or a
``stage_events`` row.

Three independent checks:
- every command the CLI has (found by walking its parser, plugins included) is accounted for, and
  its code lies in the source the static check reads;
- statically: no SQL string in the shipped source updates, deletes, truncates, drops, alters or
  replaces those tables, and no mutating statement has a table name built at run time (which no
  static check could clear);
- behaviourally: a project walks every command through a real store (gates, refused, forced and
  rolled-back moves, ingests, replays, reports) while every SQL statement the process sends to
  DuckDB is recorded; after each command every earlier audit row is still there, byte for byte,
  and no recorded statement mutates the audit tables.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import shutil
import sys
import textwrap
from datetime import datetime, timedelta
from pathlib import Path

from conftest import write_project, write_suite

from harness.cli import build_parser, main

REPO = Path(__file__).resolve().parent.parent
SHIPPED = ("harness", "rollout", "dashboard", "demo", "bench")  # every Python folder but tests/
AUDIT_TABLES = ("stage_events", "decisions")

# Commands not run below, and why; a new command fails the enumeration test until it is run or listed.
NOT_RUN = {
    ("demo",): "builds its own project and four models (minutes); its moves call rollout.promote, run below",
    ("dashboard",): "starts a Streamlit server; its advance/rollback buttons call rollout.promote, run below",
    ("serve",): "a long-running server; it writes traffic and feedback rows only (tests/test_router.py, test_soak.py)",
}

MUTATING = r"(?:UPDATE|DELETE\s+FROM|TRUNCATE(?:\s+TABLE)?|DROP\s+(?:TABLE|VIEW)(?:\s+IF\s+EXISTS)?|" \
           r"ALTER\s+TABLE(?:\s+IF\s+EXISTS)?|(?:INSERT\s+OR\s+)?REPLACE\s+INTO|MERGE\s+INTO|" \
           r"CREATE\s+OR\s+REPLACE\s+(?:TEMP(?:ORARY)?\s+)?(?:TABLE|VIEW))"
STATEMENT = re.compile(rf"\b{MUTATING}\s+(\S+)")  # SQL keywords as the code writes them: upper case
STATEMENT_ANY_CASE = re.compile(rf"\b{MUTATING}\s+(\S+)", re.I)
UPSERT = re.compile(r"\bON\s+CONFLICT\b[^;]*\bDO\s+UPDATE\b", re.I)


# -- enumeration --------------------------------------------------------------------------------------------------
def commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], object]:
    """Every runnable command path, e.g. ('rollout', 'advance'), with the function it calls."""
    out: dict[tuple[str, ...], object] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out.update(commands(sub, (*prefix, name)))
    if prefix and parser.get_default("func") is not None:
        out[prefix] = parser.get_default("func")
    return out


# -- the static check ----------------------------------------------------------------------------------------------
def _text(node: ast.AST) -> str | None:
    """A string expression as text, f-string placeholders as '{}', '+' concatenations joined."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _text(node.left), _text(node.right)
        if left is not None or right is not None:
            return (left if left is not None else "{}") + (right if right is not None else "{}")
    return None


def sql_violations(source: str, where: str) -> list[str]:
    """What in ``source`` could edit or delete an audit row (or cannot be proven not to)."""
    problems = []
    for node in ast.walk(ast.parse(source)):
        text = _text(node)
        if text is None:
            continue
        line = f"{where}:{node.lineno}"
        for m in STATEMENT.finditer(text):
            target = m.group(1).strip('"`(;').lower()
            if "{" in target:
                problems.append(f"{line}: a mutating statement on a table named at run time: {text.strip()[:80]!r}")
        for m in STATEMENT_ANY_CASE.finditer(text):
            target = m.group(1).strip('"`(;').lower().split(".")[-1]
            if target in AUDIT_TABLES:
                problems.append(f"{line}: {m.group(0)!r}")
        if any(re.search(rf"\b{t}\b", text, re.I) for t in AUDIT_TABLES) and UPSERT.search(text):
            problems.append(f"{line}: an upsert on an audit table: {text.strip()[:80]!r}")
    return problems


def test_every_command_is_accounted_for_and_its_code_is_in_the_scanned_source():
    found = commands(build_parser())
    assert {("rollout", c) for c in ("status", "advance", "rollback", "history")} <= set(found)
    assert {("gate",), ("decisions",), ("run",), ("traffic", "ingest"), ("shadow", "replay")} <= set(found)
    assert set(found) == set(RUN_BELOW) | set(NOT_RUN), "a command was added or removed: run it below or list why not"
    for path, func in found.items():
        module = sys.modules[func.__module__]
        rel = Path(module.__file__).resolve().relative_to(REPO)
        assert rel.parts[0] in SHIPPED, (path, rel)


def test_no_shipped_sql_can_edit_or_delete_an_audit_row():
    files = [p for folder in SHIPPED for p in sorted((REPO / folder).rglob("*.py"))]
    assert len(files) > 50
    problems = [v for p in files for v in sql_violations(p.read_text(encoding="utf-8"), str(p.relative_to(REPO)))]
    assert problems == []
    # the check itself catches every form it claims to (a check that cannot fail proves nothing)
    bad = textwrap.dedent('''\
        con.execute("DELETE FROM stage_events WHERE event_id = ?", [e])
        con.execute("UPDATE decisions SET verdict = 'pass'")
        con.execute("update main.decisions set actor = ?", [a])
        con.execute("INSERT OR REPLACE INTO stage_events SELECT * FROM x")
        con.execute("TRUNCATE stage_events")
        con.execute("DROP TABLE IF EXISTS decisions")
        con.execute("ALTER TABLE " + "decisions RENAME TO d2")
        con.execute(f"DELETE FROM {table} WHERE 1 = 1")
        con.execute("INSERT INTO decisions VALUES (?) ON CONFLICT (decision_id) DO UPDATE SET verdict = 'x'")
        con.execute("CREATE OR REPLACE TABLE stage_events AS SELECT 1")
        ''')
    assert len(sql_violations(bad, "bad.py")) == 10
    fine = 'con.execute("UPDATE runs SET status = ?"); con.execute("SELECT * FROM decisions"); x = "update by"'
    assert sql_violations(fine, "fine.py") == []


# -- the behavioural check -----------------------------------------------------------------------------------------
MODELS = """\
  good:
    adapter: python
    role: candidate
    options: {callable: "amodels:good"}
  ref:
    adapter: python
    role: production
    options: {callable: "amodels:ref"}
  bad:
    adapter: python
    options: {callable: "amodels:bad"}
"""
AMODELS = textwrap.dedent("""\
    def _i(prompt):
        return int(prompt.split("q")[-1])
    def good(prompt):
        return "a" if _i(prompt) % 20 != 0 else "b"
    def ref(prompt):
        return "a" if _i(prompt) % 5 != 0 else "b"
    def bad(prompt):
        return "a" if _i(prompt) % 2 == 0 else "b"
""")
POLICY = """\
gate:
  rules:
    - {suite: heldout, non_inferior: 0.02}
rollout:
  suite: heldout
  beta_steps: [0.05, 0.25]
  shadow: {min_pairs: 20, min_corrections: 10, non_inferior: 0.05}
  beta: {min_feedback: 20, non_inferior: 0.1}
"""
T0 = datetime(2026, 3, 2, 8, 0)


def _jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _iso(t: datetime) -> str:
    return t.isoformat() + "Z"


def _steps(root: Path) -> list[tuple[tuple[str, ...], list[str], set[int]]]:
    """(command path, argv, allowed exit codes), in order; {DECISION} is filled in when it runs."""
    traffic = _jsonl(root / "traffic.jsonl", [
        {"request_id": f"s{i}", "ts": _iso(T0 + timedelta(minutes=i)), "user_id": f"u{i}", "model": "ref",
         "input": f"q{i}", "output": "a" if i % 5 else "b", "latency_ms": 40} for i in range(40)] + [
        {"request_id": f"b{i}", "ts": _iso(T0 + timedelta(days=1, minutes=i)), "user_id": f"v{i}", "arm": "beta",
         "model": "good", "input": f"q{i}", "output": "a", "latency_ms": 40} for i in range(30)])
    feedback = _jsonl(root / "feedback.jsonl", [
        {"request_id": f"s{i}", "kind": "correction", "value": "a", "ts": _iso(T0 + timedelta(hours=3))}
        for i in range(20)] + [
        {"request_id": f"b{i}", "kind": "thumb", "value": "up", "ts": _iso(T0 + timedelta(days=1, hours=1))}
        for i in range(30)])
    adv = ["rollout", "advance"]
    return [
        (("init",), ["init", str(root / "other")], {0}),
        (("validate",), ["validate"], {0}),
        (("run",), ["run", "--model", "good", "--no-progress"], {0}),
        (("run",), ["run", "--model", "ref", "--no-progress"], {0}),
        (("baseline",), ["baseline", "--model", "bad", "--no-progress"], {0}),
        (("results",), ["results"], {0}),
        (("compare",), ["compare", "good", "ref"], {0}),
        (("gate",), ["gate", "good", "--against", "ref"], {0}),
        (("gate",), ["gate", "bad", "--against", "ref"], {1}),
        (("decisions",), ["decisions", "--format", "json"], {0}),
        (("decisions",), ["decisions", "--verify", "--id", "{DECISION}"], {0}),
        (("overfit",), ["overfit", "good"], {0, 1, 3}),
        (("power",), ["power", "--baseline-rate", "0.9", "--margin", "0.02"], {0}),
        (("failures",), ["failures", "bad"], {0}),
        (("export-lm-eval",), ["export-lm-eval", "heldout", str(root / "lm_eval_tasks")], {0}),
        (("rollout", "status"), ["rollout", "status"], {0}),
        (("rollout", "advance"), [*adv, "good", "--reason", "offline gate passed"], {0}),
        (("rollout", "advance"), [*adv, "good", "--reason", "no traffic yet"], {3}),  # refused: a decision, no event
        (("traffic", "ingest"), ["traffic", "ingest", traffic], {0}),
        (("feedback", "ingest"), ["feedback", "ingest", feedback], {0}),
        (("shadow", "replay"), ["shadow", "replay", "good", "--no-progress"], {0}),
        (("shadow", "report"), ["shadow", "report", "good"], {0, 1, 3}),
        (("rollout", "advance"), [*adv, "good", "--force", "--reason", "forced into beta"], {0}),
        (("beta", "report"), ["beta", "report", "good"], {0, 1, 3}),
        (("rollout", "advance"), [*adv, "good", "--force", "--reason", "wider beta"], {0}),
        (("rollout", "advance"), [*adv, "good", "--force", "--reason", "ship it"], {0}),  # ref retired
        (("monitor",), ["monitor"], {0, 1, 3}),
        (("rollout", "rollback"), ["rollout", "rollback", "--reason", "complaints"], {0}),
        (("rollout", "rollback"), ["rollout", "rollback", "--reason", "again"], {2}),
        (("rollout", "advance"), [*adv, "bad", "--force", "--reason", "exec override"], {0}),
        (("rollout", "rollback"), ["rollout", "rollback", "bad", "--reason", "users hate it"], {0}),
        (("rollout", "history"), ["rollout", "history", "--json"], {0}),
        (("suite", "perturbations"), ["suite", "perturbations"], {0}),
        (("suite", "perturb"), ["suite", "perturb", "heldout", "--with", "casing", "--out", "perturbed"], {0}),
        (("suite", "lint"), ["suite", "lint", "heldout"], {0, 1}),
        (("suite", "new"), ["suite", "new", "scratch"], {0}),
        (("dashboard", "hash-token"), ["dashboard", "hash-token", "--token", "s3cret"], {0}),
        (("sweep", "list"), ["sweep", "list"], {0}),
        (("sweep", "report"), ["sweep", "report", "no-such-study"], {2}),
        (("sweep", "select"), ["sweep", "select", "no-such-study", "--as", "chosen"], {2}),
    ]


RUN_BELOW = {  # the command paths _steps runs (checked against the parser above)
    ("init",), ("validate",), ("run",), ("baseline",), ("results",), ("compare",), ("gate",), ("decisions",),
    ("overfit",), ("power",), ("failures",), ("export-lm-eval",), ("rollout", "status"), ("rollout", "advance"),
    ("rollout", "rollback"), ("rollout", "history"), ("traffic", "ingest"), ("feedback", "ingest"),
    ("shadow", "replay"), ("shadow", "report"), ("beta", "report"), ("monitor",), ("suite", "new"),
    ("suite", "perturbations"), ("suite", "perturb"), ("suite", "lint"), ("dashboard", "hash-token"),
    ("sweep", "list"), ("sweep", "report"), ("sweep", "select"),
}


class _Traced:
    """A DuckDB connection that records every statement sent through it."""

    def __init__(self, con, log: list[str]) -> None:
        self._con, self._log = con, log

    def execute(self, sql, *args, **kwargs):
        self._log.append(str(sql))
        return self._con.execute(sql, *args, **kwargs)

    def executemany(self, sql, *args, **kwargs):
        self._log.append(str(sql))
        return self._con.executemany(sql, *args, **kwargs)

    def sql(self, sql, *args, **kwargs):
        self._log.append(str(sql))
        return self._con.sql(sql, *args, **kwargs)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self._con.__exit__(*exc)

    def __getattr__(self, name):
        return getattr(self._con, name)


def _audit_rows(store: Path) -> dict[str, dict[str, str]]:
    """Every audit row as the repr of all its columns, by table and primary key."""
    import duckdb

    if not store.exists():
        return {t: {} for t in AUDIT_TABLES}
    con = duckdb.connect(str(store), read_only=True)
    try:
        return {t: {r[0]: repr(r) for r in con.execute(f"SELECT * FROM {t}").fetchall()} for t in AUDIT_TABLES}
    finally:
        con.close()


def test_every_command_leaves_every_earlier_audit_row_unchanged(tmp_path, monkeypatch, capsys):
    import duckdb

    root = tmp_path / "project"
    (root / "suites").mkdir(parents=True)
    (root / "amodels.py").write_text(AMODELS)
    write_project(root, MODELS, suites="  - suites/*\n" + POLICY)
    write_suite(root, "heldout", [{"id": f"{i:04d}", "input": f"q{i}", "expected": "a"} for i in range(100)],
                extra="checks: [exact_match]\n")
    monkeypatch.chdir(root)
    monkeypatch.delenv("TOLLGATE_RELEASE_MANAGERS", raising=False)
    store = root / ".tollgate" / "tollgate.duckdb"

    statements: list[str] = []
    real_connect = duckdb.connect
    monkeypatch.setattr(duckdb, "connect", lambda *a, **k: _Traced(real_connect(*a, **k), statements))

    seen: dict[str, dict[str, str]] = {t: {} for t in AUDIT_TABLES}
    ran, decision = set(), None
    for path, argv, codes in _steps(root):
        argv = [decision if a == "{DECISION}" else a for a in argv]
        capsys.readouterr()
        code = main(argv)
        out = capsys.readouterr()
        assert code in codes, (argv, code, out.err[-2000:])
        if argv[:3] == ["decisions", "--format", "json"]:
            decision = json.loads(out.out)[-1]["decision_id"]
        ran.add(path)
        now = _audit_rows(store)
        for table in AUDIT_TABLES:
            lost = {k: v for k, v in seen[table].items() if now[table].get(k) != v}
            assert lost == {}, f"'{' '.join(argv)}' changed or deleted {table} rows: {lost}"
        seen = now

    assert ran == RUN_BELOW
    # the walk really wrote an audit trail: gates, refused and forced moves, promotion, rollbacks
    assert len(seen["decisions"]) >= 7 and len(seen["stage_events"]) >= 9, {t: len(v) for t, v in seen.items()}
    con = real_connect(str(store), read_only=True)
    try:
        kinds = {r[0] for r in con.execute("SELECT to_stage FROM stage_events").fetchall()}
        forced = con.execute("SELECT count(*) FROM stage_events WHERE forced").fetchone()[0]
        verdicts = {r[0] for r in con.execute("SELECT verdict FROM decisions").fetchall()}
    finally:
        con.close()
    assert {"shadow", "beta", "production", "retired", "rolled_back", "candidate"} <= kinds and forced >= 3
    assert {"pass", "fail"} <= verdicts
    # and no statement the whole walk sent to DuckDB could have edited them (even one that matched no row)
    assert len(statements) > 100
    mutations = [s for s in statements for m in STATEMENT_ANY_CASE.finditer(s)
                 if m.group(1).strip('"`(;').lower().split(".")[-1] in AUDIT_TABLES]
    assert mutations == []
    assert any(re.search(r"INSERT INTO (\w+\.)?stage_events", s) for s in statements)  # the trace saw the writes
    shutil.rmtree(root / "other", ignore_errors=True)
