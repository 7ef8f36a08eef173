"""A model served by vLLM or any OpenAI-compatible server, evaluated through ``tollgate run``.

The fake server of ``test_adapter_openai`` runs on 127.0.0.1 and records how many requests it
holds at once. The runner keeps the model's ``concurrency`` requests in flight even when a run
commits in smaller chunks (the next chunks are sent while one is committed), and never more.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import duckdb
import pytest
from conftest import write_project, write_suite
from test_adapter_openai import Server, server  # noqa: F401  (the fixture)

from harness.cli import main


def served_project(root: Path, url: str, concurrency: int, n: int = 48) -> Path:
    write_project(root, f"""\
  served:
    adapter: openai
    url: {url}
    generation: {{max_new_tokens: 8}}
    options: {{model: my-finetune, api: completions, concurrency: {concurrency}, max_retries: 0, timeout_s: 10}}
""")
    write_suite(root, "words", [{"id": f"e{i}", "input": f"w{i}", "expected": f"W{i}" if i % 3 else "no"}
                                for i in range(n)], extra="checks: [exact_match]\n")
    return root


class Slow:
    """The server's answer time: counts the requests inside it at once, exactly (the server's own count
    also spans writing the reply, when the client may already have sent its next request)."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.now, self.most = seconds, 0, 0
        self.lock = threading.Lock()

    def __call__(self, prompt: str) -> float:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
        time.sleep(self.seconds)
        with self.lock:
            self.now -= 1
        return 0.0


def run(*args: str) -> int:
    return main(["run", "--model", "served", "--no-progress", "--format", "json", *args])


@pytest.mark.parametrize(("concurrency", "commit_every"), [(8, 4), (3, 2)])
def test_the_runner_keeps_the_models_concurrency_in_flight_across_chunks_and_never_more(
        server: Server, tmp_path, monkeypatch, capsys, concurrency: int, commit_every: int) -> None:  # noqa: F811
    served_project(tmp_path, server.base_url, concurrency)
    monkeypatch.chdir(tmp_path)
    server.behaviour.delay_s = slow = Slow(0.15)
    assert run("--commit-every", str(commit_every)) == 0
    rows = {r["metric"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["exact_match"]["n"] == 48 and rows["exact_match"]["value"] == pytest.approx(32 / 48)
    assert server.behaviour.count == 48  # each example asked once
    # more requests at once than one chunk holds: chunks overlap; never more than `concurrency`
    assert slow.most == concurrency
    con = duckdb.connect(str(tmp_path / ".tollgate" / "tollgate.duckdb"), read_only=True)
    try:
        assert con.execute("SELECT count(*), count(DISTINCT example_id), count(error) FROM results").fetchall() == \
            [(48, 48, 0)]
    finally:
        con.close()


def test_a_rerun_asks_the_server_nothing_and_a_new_version_label_asks_again(
        server: Server, tmp_path, monkeypatch, capsys) -> None:  # noqa: F811
    served_project(tmp_path, server.base_url, 4, n=12)
    monkeypatch.chdir(tmp_path)
    assert run() == 0 and server.behaviour.count == 12
    assert run() == 0 and server.behaviour.count == 12  # all cached
    text = (tmp_path / "tollgate.yaml").read_text().replace("    url:", "    version: v2\n    url:")
    (tmp_path / "tollgate.yaml").write_text(text)
    assert run() == 0 and server.behaviour.count == 24  # the server changed: its answers are asked again
