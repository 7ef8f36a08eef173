"""The live router over real HTTP: a real uvicorn server on 127.0.0.1, a real DuckDB store, other
processes changing stages and holding the store's lock while it serves."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import write_project

from harness.errors import TollgateInputError
from harness.project import load_project
from harness.store import Store, insert_decision, utcnow
from rollout.router import create_app, serve
from rollout.stages import Stage, record

REPO = Path(__file__).resolve().parent.parent

MODELS = """\
  prod:
    adapter: python
    role: production
    options: {callable: "mymodels:prod"}
  cand:
    adapter: python
    role: candidate
    options: {callable: "mymodels:cand"}
  slow:
    adapter: python
    role: candidate
    options: {callable: "mymodels:slow"}
  broken:
    adapter: python
    options: {callable: "mymodels:missing"}
"""

# Another process moving stages: argv = store path, then MODEL:FROM:TO[:SHARE] ...
MOVE = textwrap.dedent("""\
    import sys
    from pathlib import Path
    from harness.store import Store
    from rollout.stages import Stage, record
    with Store(Path(sys.argv[1])).write() as con:
        for spec in sys.argv[2:]:
            model, frm, to, *share = spec.split(":")
            record(con, model, Stage(frm), Stage(to, float(share[0]) if share else None), "ops", "test", None, False)
    """)

# Another process holding the store's write lock for argv[2] seconds.
HOLD_LOCK = textwrap.dedent("""\
    import sys, time
    from pathlib import Path
    from harness.store import Store
    with Store(Path(sys.argv[1])).write():
        print("locked", flush=True)
        time.sleep(float(sys.argv[2]))
    """)

SERVE = textwrap.dedent("""\
    import sys
    from pathlib import Path
    from harness.project import load_project
    from rollout.router import serve
    serve(load_project(Path(sys.argv[1])), port=0)
    """)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "mymodels.py").write_text(textwrap.dedent("""\
        import time
        def prod(prompt):
            return "prod:" + prompt
        def cand(prompt):
            return "cand:" + prompt
        def slow(prompt):
            time.sleep(0.005)
            return "cand:" + prompt
        """))
    write_project(tmp_path, MODELS)
    return tmp_path


@dataclass
class Live:
    url: str
    router: Any


@contextlib.contextmanager
def running(root: Path, **kw: Any) -> Iterator[Live]:
    """The router app under a real uvicorn server in a thread; leaving the block shuts it down
    (lifespan: queues drained, rows flushed)."""
    import uvicorn

    project = load_project(root / "tollgate.yaml")
    app = create_app(project, Store(project.store_path), **kw)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # TCP: asyncio sets NODELAY
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, lifespan="on", log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the router did not start"
        time.sleep(0.01)
    try:
        yield Live(f"http://127.0.0.1:{sock.getsockname()[1]}", app.state.router)
    finally:
        server.should_exit = True
        thread.join(120)
        sock.close()
        assert not thread.is_alive(), "the router did not shut down"


def store_path(root: Path) -> Path:
    return root / ".tollgate" / "tollgate.duckdb"


def move(root: Path, *specs: str) -> None:
    """Stage events written in this process (before a server runs)."""
    with Store(store_path(root)).write() as con:
        for spec in specs:
            model, frm, to, *share = spec.split(":")
            record(con, model, Stage(frm), Stage(to, float(share[0]) if share else None), "test", "test", None, False)


def move_elsewhere(root: Path, *specs: str) -> None:
    """Stage events written by another process, while the server runs."""
    subprocess.run([sys.executable, "-c", MOVE, str(store_path(root)), *specs], check=True, cwd=REPO, timeout=60)


def query(root: Path, sql: str, params: list[Any] | None = None) -> list[tuple]:
    with Store(store_path(root)).read() as con:
        return con.execute(sql, params or []).fetchall()


def expected_beta(user: str, share: float, salt: str = "tollgate") -> bool:
    return int(hashlib.sha256(f"{salt}:{user}".encode()).hexdigest(), 16) / 2**256 < share


async def burst(url: str, bodies: list[dict[str, Any]], in_flight: int = 50) -> list[httpx.Response]:
    """POST every body to /v1/completions, ``in_flight`` at a time; responses in the bodies' order.

    One client per lane: a single AsyncClient's pool costs more per request than the router does.
    """
    out: list[Any] = [None] * len(bodies)
    todo = iter(enumerate(bodies))

    async def lane() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=120, verify=False) as client:
            for i, body in todo:
                out[i] = await client.post("/v1/completions", json=body)

    await asyncio.gather(*(lane() for _ in range(in_flight)))
    return out


def test_completions_and_chat_completions_answer_with_production_in_openai_shape(project: Path) -> None:
    with running(project) as live, httpx.Client(base_url=live.url, timeout=30) as c:
        assert c.get("/healthz").status_code == 200
        ready = c.get("/readyz")
        assert ready.status_code == 200 and ready.json()["production"] == "prod"

        r = c.post("/v1/completions", json={"prompt": "hello world", "user": "ann", "max_tokens": 16})
        assert r.status_code == 200
        body = r.json()
        assert set(body) == {"id", "object", "created", "model", "choices", "usage"}
        assert body["object"] == "text_completion" and body["model"] == "prod"
        assert body["choices"][0]["text"] == "prod:hello world"
        assert body["choices"][0]["finish_reason"] == "stop"
        assert set(body["usage"]) == {"prompt_tokens", "completion_tokens", "total_tokens"}
        assert r.headers["x-tollgate-request-id"] == body["id"]
        assert r.headers["x-tollgate-arm"] == "production"

        messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "first"},
                    {"role": "assistant", "content": "ok"}, {"role": "user", "content": "second"}]
        r = c.post("/v1/chat/completions", json={"messages": messages, "model": "ignored"},
                   headers={"X-User-Id": "bob"})
        assert r.status_code == 200
        chat = r.json()
        assert chat["object"] == "chat.completion" and chat["model"] == "prod"
        assert chat["choices"][0]["message"] == {"role": "assistant", "content": "prod:second"}
        assert r.headers["x-tollgate-arm"] == "production"

        parts = [{"role": "user", "content": [{"type": "text", "text": "in"}, {"type": "text", "text": "parts"}]}]
        assert c.post("/v1/chat/completions", json={"messages": parts}).json()["choices"][0]["message"][
            "content"] == "prod:in\nparts"

        ids = {body["id"], chat["id"]} | {c.post("/v1/completions", json={"prompt": f"p{i}"}).json()["id"]
                                          for i in range(20)}
        assert len(ids) == 22
    rows = query(project, "SELECT request_id, arm, model, user_id, input, output FROM traffic")
    assert {r[0] for r in rows} >= {body["id"], chat["id"]} and len(rows) == 23
    by_id = {r[0]: r for r in rows}
    assert by_id[body["id"]][1:] == ("production", "prod", "ann", '"hello world"', "prod:hello world")
    assert by_id[chat["id"]][3:] == ("bob", '"second"', "prod:second")


def test_malformed_requests_are_400_naming_the_field(project: Path) -> None:
    with running(project) as live, httpx.Client(base_url=live.url, timeout=30) as c:
        def param(path: str, **kw: Any) -> str | None:
            r = c.post(path, **kw)
            assert r.status_code == 400, r.text
            return r.json()["error"]["param"]

        assert param("/v1/completions", json={}) == "prompt"
        assert param("/v1/completions", json={"prompt": ["a", "b"]}) == "prompt"
        assert param("/v1/completions", json={"prompt": "x", "max_tokens": 0}) == "max_tokens"
        assert param("/v1/completions", json={"prompt": "x", "max_tokens": "5"}) == "max_tokens"
        assert param("/v1/completions", json={"prompt": "x", "user": 7}) == "user"
        assert param("/v1/completions", json={"prompt": "x", "stream": True}) == "stream"
        assert param("/v1/completions", content=b"{not json") is None
        assert "JSON" in c.post("/v1/completions", json=[1, 2]).json()["error"]["message"]
        assert param("/v1/chat/completions", json={"messages": []}) == "messages"
        assert param("/v1/chat/completions", json={"messages": [{"role": "system", "content": "x"}]}) == "messages"
        assert param("/v1/chat/completions", json={"messages": [{"role": "user", "content": 3}]}) == "messages"
        assert param("/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}],
                                                   "max_tokens": -1}) == "max_tokens"
        assert c.post("/v1/completions", content=b"x" * (2 << 20)).status_code == 413
    assert query(project, "SELECT count(*) FROM traffic") == [(0,)]


def test_no_production_model_is_503(tmp_path: Path) -> None:
    (tmp_path / "mymodels.py").write_text("def cand(prompt):\n    return prompt\n")
    write_project(tmp_path, '  cand:\n    adapter: python\n    options: {callable: "mymodels:cand"}\n')
    with running(tmp_path) as live, httpx.Client(base_url=live.url, timeout=30) as c:
        r = c.post("/v1/completions", json={"prompt": "x"})
        assert r.status_code == 503 and "production" in r.json()["error"]["message"]


def test_a_beta_model_that_cannot_load_falls_back_to_production(project: Path) -> None:
    move(project, "broken:candidate:beta:0.999")
    with running(project) as live, httpx.Client(base_url=live.url, timeout=30) as c:
        r = c.post("/v1/completions", json={"prompt": "x", "user": "u"})
        assert r.status_code == 200 and r.headers["x-tollgate-arm"] == "production"
        assert r.json()["choices"][0]["text"] == "prod:x"
        assert c.get("/metrics").json()["requests"]["beta_fallback"] == 1


def test_serve_refuses_to_start_on_an_unreadable_store(project: Path) -> None:
    store_path(project).parent.mkdir()
    store_path(project).write_bytes(b"not a duckdb file" * 100)
    with pytest.raises(TollgateInputError, match="cannot open the store"):
        serve(load_project(project / "tollgate.yaml"), port=0)


def test_a_burst_with_a_shadow_answers_everyone_and_never_drops_a_user_row_even_with_a_tiny_queue(
        project: Path) -> None:
    """2,000 requests, 50 in flight, an 8-row log queue, the store locked by another process for a
    while: every user is answered with production's output; after shutdown the store holds exactly
    the 2,000 production rows and one shadow row per copy not reported as dropped."""
    move(project, "slow:candidate:shadow")  # 5 ms per answer: the shadow cannot keep up and must drop
    n = 2000
    with running(project, queue_size=8, flush_s=0.05) as live:
        holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(store_path(project)), "1.0"], cwd=REPO,
                                  stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
            responses = asyncio.run(burst(live.url, [{"prompt": f"p{i}", "user": f"u{i}"} for i in range(n)]))
        finally:
            assert holder.wait(60) == 0
        assert [r.status_code for r in responses] == [200] * n
        assert [r.json()["choices"][0]["text"] for r in responses] == [f"prod:p{i}" for i in range(n)]
        assert {r.headers["x-tollgate-arm"] for r in responses} == {"production"}
        ids = [r.json()["id"] for r in responses]
        assert len(set(ids)) == n
        deadline = time.monotonic() + 30
        while (m := httpx.get(live.url + "/metrics").json())["shadow"]["pending"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert m["requests"]["production"] == n and m["shadow"]["selected"] == n
        dropped = m["shadow"]["dropped"]
        assert dropped > 0, m  # the slow shadow really was overrun ...
        assert m["log"]["backpressure_waits"] > 0, m  # ... and users really waited for the locked store
    final = live.router.metrics()
    assert final["shadow"]["dropped"] == dropped and final["log"]["queue_depth"] == 0
    prod = query(project, "SELECT request_id, output FROM traffic WHERE arm = 'production'")
    shadow = query(project, "SELECT request_id, model, output FROM traffic WHERE arm = 'shadow'")
    assert len(prod) == n and {r[0] for r in prod} == set(ids)
    assert len(shadow) == n - dropped and len({r[0] for r in shadow}) == len(shadow)
    assert {r[0] for r in shadow} <= set(ids)
    assert {r[1] for r in shadow} == {"slow"} and all(r[2].startswith("cand:") for r in shadow)
    assert final["log"]["rows_written"] == 2 * n - dropped


def test_shadow_answers_are_logged_but_never_returned_to_users(project: Path) -> None:
    move(project, "cand:candidate:shadow")
    with running(project) as live, httpx.Client(base_url=live.url, timeout=30) as c:
        answers = {}
        for i in range(30):
            r = c.post("/v1/completions", json={"prompt": f"q{i}", "user": f"u{i}"})
            assert r.headers["x-tollgate-arm"] == "production" and r.json()["model"] == "prod"
            answers[r.json()["id"]] = r.json()["choices"][0]["text"]
    rows = query(project, "SELECT request_id, arm, output FROM traffic")
    production = {rid: out for rid, arm, out in rows if arm == "production"}
    shadow = {rid: out for rid, arm, out in rows if arm == "shadow"}
    assert production == answers
    assert set(shadow) == set(answers)  # a large queue: nothing dropped
    assert all(shadow[rid] != answers[rid] and shadow[rid].startswith("cand:") for rid in answers)


def test_beta_is_sticky_per_user_across_requests_and_restarts_and_serves_its_share(project: Path) -> None:
    move(project, "cand:candidate:shadow", "cand:shadow:beta:0.25")
    users = [f"user-{i}" for i in range(2000)]
    with running(project) as live:
        responses = asyncio.run(burst(live.url, [{"prompt": "hi", "user": u} for u in users]))
        arms = {u: r.headers["x-tollgate-arm"] for u, r in zip(users, responses, strict=True)}
        for u, r in zip(users, responses, strict=True):
            assert (r.json()["model"], r.json()["choices"][0]["text"]) == (
                ("cand", "cand:hi") if arms[u] == "beta" else ("prod", "prod:hi"))
        assert arms == {u: "beta" if expected_beta(u, 0.25) else "production" for u in users}
        share = sum(a == "beta" for a in arms.values()) / len(users)
        assert abs(share - 0.25) < 4 * math.sqrt(0.25 * 0.75 / len(users))

        with httpx.Client(base_url=live.url, timeout=30) as c:
            for u in users[:20]:
                seen = {c.post("/v1/completions", json={"prompt": "again"}, headers={"X-User-Id": u})
                        .headers["x-tollgate-arm"] for _ in range(10)}
                assert seen == {arms[u]}
            anonymous = {c.post("/v1/completions", json={"prompt": "who"}).headers["x-tollgate-arm"]
                         for _ in range(100)}
            assert anonymous == {"production"}  # 0.75 ** 100: a random id would have landed in beta

    # a restart: a new process through serve(), port 0
    proc = subprocess.Popen([sys.executable, "-c", SERVE, str(project / "tollgate.yaml")], cwd=REPO,
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("serving on http://127.0.0.1:"), line
        url = line.split()[-1]
        again = asyncio.run(burst(url, [{"prompt": "back", "user": u} for u in users[:300]]))
        assert {u: r.headers["x-tollgate-arm"] for u, r in zip(users, again, strict=False)} == \
            {u: arms[u] for u in users[:300]}
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    assert query(project, "SELECT count(*) FROM traffic WHERE input = '\"back\"'") == [(300,)]


def test_promotion_and_rollback_by_another_process_take_effect_on_the_next_request(project: Path) -> None:
    def wait_for(c: httpx.Client, model: str, arm: str = "production") -> float:
        """Seconds until ``model`` answers user u (on ``arm``)."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < 5:
            r = c.post("/v1/completions", json={"prompt": "x", "user": "u"})
            if r.json()["model"] == model:
                assert r.headers["x-tollgate-arm"] == arm
                return time.monotonic() - t0
            time.sleep(0.02)
        raise AssertionError(f"{model} never answered")

    with running(project, refresh_s=0.2) as live, httpx.Client(base_url=live.url, timeout=30) as c:
        assert c.post("/v1/completions", json={"prompt": "x"}).json()["model"] == "prod"
        move_elsewhere(project, "cand:candidate:production", "prod:production:retired")
        assert wait_for(c, "cand") < 1.0
        move_elsewhere(project, "cand:production:retired", "prod:retired:production")
        assert wait_for(c, "prod") < 1.0
        move_elsewhere(project, "cand:retired:beta:0.999")
        assert wait_for(c, "cand", "beta") < 1.0  # (almost) every named user now in beta ...
        move_elsewhere(project, "cand:beta:retired")  # ... and back to production on rollback
        assert wait_for(c, "prod") < 1.0


def test_feedback_is_stored_and_invalid_feedback_is_400_naming_the_field(project: Path) -> None:
    with running(project) as live, httpx.Client(base_url=live.url, timeout=30) as c:
        rid = c.post("/v1/completions", json={"prompt": "x", "user": "ann"}).json()["id"]
        for kind, value in (("thumb", "up"), ("rating", 4), ("comment", "great"), ("correction", {"a": 1})):
            r = c.post("/feedback", json={"request_id": rid, "kind": kind, "value": value, "user_id": "ann"})
            assert r.status_code == 202, r.text
        for bad, field in (({"kind": "thumb", "value": "up"}, "request_id"),
                           ({"request_id": rid, "kind": "stars", "value": 5}, "kind"),
                           ({"request_id": rid, "kind": "rating", "value": 9}, "value"),
                           ({"request_id": rid, "kind": "thumb", "value": "maybe"}, "value"),
                           ({"request_id": rid, "kind": "comment", "value": "  "}, "value"),
                           ({"request_id": rid, "kind": "thumb", "value": 1, "user_id": 3}, "user_id")):
            r = c.post("/feedback", json=bad)
            assert r.status_code == 400 and r.json()["error"]["param"] == field, (bad, r.text)
            assert field in r.json()["error"]["message"]
        assert c.get("/metrics").json()["feedback"]["received"] == 4
    rows = query(project, "SELECT request_id, kind, value, user_id FROM feedback ORDER BY kind")
    assert rows == [(rid, "comment", "great", "ann"), (rid, "correction", '{"a": 1}', "ann"),
                    (rid, "rating", "4", "ann"), (rid, "thumb", "1", "ann")]


def test_verdict_endpoint_gives_the_latest_decision_as_http_status(project: Path) -> None:
    def decision(i: int, candidate: str, verdict: str) -> dict[str, Any]:
        return {"decision_id": f"d{i}", "candidate": candidate, "reference": "prod", "candidate_fingerprint": None,
                "reference_fingerprint": None, "policy_hash": "p", "suite_hashes": {}, "verdict": verdict,
                "evidence": {"rules": []}, "seed": 0, "code_version": "test", "actor": "ci", "created_at": utcnow()}

    Store(store_path(project)).migrate()
    for i, (cand, verdict) in enumerate((("a", "fail"), ("a", "pass"), ("b", "fail"), ("c", "inconclusive"))):
        with Store(store_path(project)).write() as con:
            insert_decision(con, decision(i, cand, verdict))
    with running(project) as live, httpx.Client(base_url=live.url, timeout=30) as c:
        for cand, status, verdict, did in (("a", 200, "pass", "d1"), ("b", 409, "fail", "d2"),
                                           ("c", 202, "inconclusive", "d3")):
            r = c.get(f"/verdict/{cand}")
            assert (r.status_code, r.json()["verdict"], r.json()["decision_id"]) == (status, verdict, did)
            assert r.json()["evidence"] == {"rules": []}
        r = c.get("/verdict/nobody")
        assert r.status_code == 404 and r.json()["verdict"] is None


def test_the_demo_weights_serve_real_requests_with_a_shadow(tmp_path: Path) -> None:
    models = "".join(f"""\
  {name}:
    adapter: hf-causal
    role: {role}
    path: {REPO / "demo" / "weights" / name}
    generation: {{max_new_tokens: 48}}
""" for name, role in (("production", "production"), ("candidate", "candidate")))
    write_project(tmp_path, models)
    move(tmp_path, "candidate:candidate:shadow")
    doc = ("Claim form. Claimant: Mary Smith. Policy number: PN-48213. Date of accident: 3 March 2024. "
           "Injury: whiplash. Damage: rear bumper dented.")
    answers = {}
    with running(tmp_path) as live, httpx.Client(base_url=live.url, timeout=120) as c:
        for i in range(3):
            r = c.post("/v1/completions", json={"prompt": f"{doc} ({i})\nJSON:", "user": f"u{i}"})
            assert r.status_code == 200 and r.json()["model"] == "production"
            answers[r.json()["id"]] = r.json()
        r = c.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": doc + "\nJSON:"}],
                                                 "max_tokens": 8})
        assert r.status_code == 200
        answers[r.json()["id"]] = r.json()
        assert 0 < r.json()["usage"]["completion_tokens"] <= 8
    rows = query(tmp_path, "SELECT request_id, arm, model, output, completion_tokens FROM traffic")
    production = {r[0]: r for r in rows if r[1] == "production"}
    shadow = {r[0]: r for r in rows if r[1] == "shadow"}
    assert set(production) == set(shadow) == set(answers)
    for rid, body in answers.items():
        choice = body["choices"][0]
        text = choice["text"] if "text" in choice else choice["message"]["content"]
        assert text == production[rid][3] and production[rid][4] == body["usage"]["completion_tokens"] <= 48
        assert shadow[rid][2] == "candidate"
