"""Who may do what: the router's API key, and stage changes only by release managers."""

from __future__ import annotations

import textwrap

import pytest
from conftest import write_project
from starlette.testclient import TestClient

from harness.cli import main
from harness.project import load_project
from harness.store import Store
from rollout.router import create_app

MODELS = """\
  prod:
    adapter: python
    role: production
    options: {callable: "mymodels:prod"}
  cand:
    adapter: python
    role: candidate
    options: {callable: "mymodels:cand"}
"""


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "mymodels.py").write_text(textwrap.dedent("""\
        def prod(prompt):
            return "prod:" + prompt
        def cand(prompt):
            return "cand:" + prompt
        """))
    write_project(tmp_path, MODELS, suites="  - suites/*\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TOLLGATE_RELEASE_MANAGERS", raising=False)
    return tmp_path


def test_with_an_api_key_only_requests_that_carry_it_are_served(project):
    p = load_project(project / "tollgate.yaml")
    app = create_app(p, Store(p.store_path), api_key="s3cret", flush_s=0.05)
    with TestClient(app) as client:
        body = {"prompt": "hello", "user": "u1"}
        assert client.post("/v1/completions", json=body).status_code == 401
        assert client.post("/v1/completions", json=body, headers={"Authorization": "Bearer wrong"}).status_code == 401
        ok = client.post("/v1/completions", json=body, headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200 and ok.json()["choices"][0]["text"] == "prod:hello"
        fb = {"request_id": ok.json()["id"], "kind": "thumb", "value": "up"}
        assert client.post("/feedback", json=fb).status_code == 401
        assert client.post("/feedback", json=fb, headers={"Authorization": "Bearer s3cret"}).status_code == 202
        assert client.get("/healthz").status_code == 200  # the platform's probes stay open
    with Store(p.store_path).read() as con:
        assert con.execute("SELECT count(*) FROM traffic").fetchall() == [(1,)]
        assert con.execute("SELECT count(*) FROM feedback").fetchall() == [(1,)]


def test_serve_refuses_an_unset_api_key_variable(project, capsys, monkeypatch):
    monkeypatch.delenv("NO_SUCH_KEY", raising=False)
    assert main(["serve", "--port", "0", "--api-key-env", "NO_SUCH_KEY"]) == 2
    assert "NO_SUCH_KEY is empty or unset" in capsys.readouterr().err


def test_stage_changes_are_refused_to_actors_who_are_not_release_managers(project, capsys, monkeypatch):
    with (project / "tollgate.yaml").open("a") as f:
        f.write("dashboard:\n  release_managers: {ana: 'pbkdf2_sha256$1$x$y'}\n")
    assert main(["rollout", "advance", "cand", "--actor", "mallory", "--reason", "r", "--force"]) == 2
    assert "'mallory' is not a release manager" in capsys.readouterr().err
    assert main(["rollout", "rollback", "--actor", "mallory", "--reason", "r"]) == 2
    monkeypatch.setenv("TOLLGATE_RELEASE_MANAGERS", "bob=pbkdf2_sha256$1$x$y")
    assert main(["rollout", "advance", "cand", "--actor", "bob", "--reason", "no gate yet", "--force"]) == 0
    assert main(["rollout", "advance", "cand", "--actor", "ana", "--reason", "shadow skipped", "--force"]) == 0
    with Store(project / ".tollgate" / "tollgate.duckdb").read() as con:
        rows = con.execute("SELECT actor, to_stage, forced FROM stage_events ORDER BY ts").fetchall()
    assert rows == [("bob", "shadow", True), ("ana", "beta", True)]


def test_without_release_managers_any_actor_may_act_and_is_recorded(project):
    assert main(["rollout", "advance", "cand", "--actor", "carol", "--reason", "open project", "--force"]) == 0
    with Store(project / ".tollgate" / "tollgate.duckdb").read() as con:
        assert con.execute("SELECT actor FROM stage_events").fetchall() == [("carol",)]
