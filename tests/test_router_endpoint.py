"""The router calls a model behind an endpoint for several users at once, and a local model for one
at a time: an endpoint serves requests in parallel, a local model is one forward pass at a time."""

from __future__ import annotations

import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from conftest import write_project
from test_adapter_openai import Server, server  # noqa: F401  (the fake OpenAI server fixture)
from test_router import running


def _ask(url: str, n: int) -> list[int]:
    def one(i: int) -> int:
        return httpx.post(f"{url}/v1/completions", json={"prompt": f"p{i}", "user": f"u{i}"}, timeout=60).status_code

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def test_an_endpoint_model_answers_several_users_at_once(tmp_path: Path, server: Server) -> None:  # noqa: F811
    server.behaviour.delay_s = 0.3
    write_project(tmp_path, f"  prod:\n    adapter: openai\n    url: {server.base_url}\n    role: production\n"
                            "    options: {model: m, api: completions, concurrency: 8, max_retries: 0}\n")
    with running(tmp_path) as live:
        assert _ask(live.url, 8) == [200] * 8
    assert server.behaviour.max_in_flight >= 4  # one at a time would be 1


def test_a_local_model_still_answers_one_request_at_a_time(tmp_path: Path) -> None:
    (tmp_path / "mymodels.py").write_text(textwrap.dedent("""\
        import threading, time
        state = {"now": 0, "most": 0}
        lock = threading.Lock()
        def prod(prompt):
            with lock:
                state["now"] += 1
                state["most"] = max(state["most"], state["now"])
            time.sleep(0.05)
            with lock:
                state["now"] -= 1
            return str(state["most"])
        """))
    write_project(tmp_path, '  prod:\n    adapter: python\n    role: production\n'
                            '    options: {callable: "mymodels:prod"}\n')
    with running(tmp_path) as live:
        assert _ask(live.url, 6) == [200] * 6
        last = httpx.post(f"{live.url}/v1/completions", json={"prompt": "x", "user": "u"}, timeout=60).json()
    assert last["choices"][0]["text"] == "1"  # never two calls of the model at once
