"""Everything at once on one store: two ``tollgate run`` processes, the router logging traffic,
``tollgate results`` and the dashboard's query functions reading in a loop. No lock error reaches
anyone, every command exits 0, and at the end the store holds exactly what each one wrote.

The default run is short; ``pytest -m soak tests/test_concurrency.py`` runs longer and wider.
"""

from __future__ import annotations

import asyncio
import json
import signal
import textwrap
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from conftest import tollgate_child as tollgate
from conftest import write_project, write_suite

from harness import queries as hq
from harness.report import stored_results
from harness.store import Store
from rollout import queries as rq

MODELS = """\
  alpha:
    adapter: python
    role: candidate
    options: {callable: "mymodels:alpha"}
  beta:
    adapter: python
    role: candidate
    options: {callable: "mymodels:beta"}
  prod:
    adapter: python
    role: production
    options: {callable: "mymodels:prod"}
"""

MYMODELS = textwrap.dedent("""\
    import time

    def alpha(prompt):
        time.sleep(0.001)
        return prompt.split()[-1]

    def beta(prompt):
        time.sleep(0.001)
        return prompt.split()[0]

    def prod(prompt):
        return "prod:" + prompt
    """)


def no_user_facing_error(code: int, stderr: str, what: str) -> None:
    assert code == 0, f"{what}: exit {code}: {stderr[-3000:]}"
    assert "Traceback" not in stderr and "lock" not in stderr.lower() and "error" not in stderr.lower(), \
        f"{what}: {stderr[-3000:]}"


@dataclass
class Traffic:
    """Requests to the router, ``lanes`` at a time, until stopped; what each got back."""

    url: str
    pace_s: float
    answered: dict[str, str] = field(default_factory=dict)  # prompt -> request id
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    async def lane(self, name: str) -> None:
        async with httpx.AsyncClient(base_url=self.url, timeout=120) as client:
            i = 0
            while not self.stop.is_set():
                prompt = f"{name}-{i}"
                i += 1
                r = await client.post("/v1/completions", json={"prompt": prompt, "user": name})
                if r.status_code != 200 or r.json()["choices"][0]["text"] != f"prod:{prompt}":
                    self.failures.append(r.text)
                else:
                    self.answered[prompt] = r.json()["id"]
                await asyncio.sleep(self.pace_s)

    def run(self, lanes: int) -> None:
        async def all_lanes() -> None:
            await asyncio.gather(*(self.lane(f"l{j}") for j in range(lanes)))
        try:
            asyncio.run(all_lanes())
        except Exception as exc:  # reported by the test, not lost in the thread
            self.failures.append(f"{type(exc).__name__}: {exc}")


@dataclass
class Reader:
    """The dashboard's way in: query functions on short read-only connections, in a loop."""

    store: Store
    pause_s: float
    reads: int = 0
    errors: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                with self.store.read() as con:
                    hq.runs_list(con)
                    hq.run_totals(con)
                    rq.traffic_span(con)
                    rq.traffic_by_period(con, period="hour")
                stored_results(self.store)
                hq.store_status(self.store)
                self.reads += 1
            except Exception as exc:  # any error here would reach a dashboard user
                self.errors.append(f"{type(exc).__name__}: {exc}")
            time.sleep(self.pause_s)


def cli_reader(root: Path, stop: threading.Event, outcomes: list[tuple[int, str]], pause_s: float) -> None:
    """``tollgate results`` again and again, as a user at a terminal would."""
    while not stop.wait(pause_s):
        proc = tollgate(root, "results", "--format", "json")
        out, err = proc.communicate(timeout=300)
        try:
            json.loads(out)
        except ValueError:
            err += f"\nnot JSON on stdout: {out[:200]!r}"
        outcomes.append((proc.returncode, err))


def everything_at_once(root: Path, n: int, commit_every: int, lanes: int, pause_s: float) -> dict[str, int]:
    """Two runs of ``n`` examples (``commit_every`` a batch); ``lanes`` clients of the router, each
    sending a request every ``pause_s / 5``; a reader every ``pause_s`` and ``tollgate results``
    every 40 times that; all until both runs end."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "mymodels.py").write_text(MYMODELS)
    write_project(root, MODELS)
    for suite in ("first", "second"):
        write_suite(root, suite, [{"id": f"{suite}{i}", "input": f"say {suite} w{i}", "expected": f"w{i}"}
                                  for i in range(n)], extra="checks: [exact_match]\n")
    store = Store(root / ".tollgate" / "tollgate.duckdb")
    store.migrate()

    router = tollgate(root, "serve", "--port", "0")
    assert router.stdout is not None
    line = router.stdout.readline()
    assert line.startswith("serving on http://127.0.0.1:"), line + (router.stderr.read() if router.stderr else "")
    traffic = Traffic(line.split()[-1], pause_s / 5)
    reader = Reader(store, pause_s)
    cli_stop, cli_outcomes = threading.Event(), []
    threads = [threading.Thread(target=traffic.run, args=(lanes,), daemon=True),
               threading.Thread(target=reader.run, daemon=True),
               threading.Thread(target=cli_reader, args=(root, cli_stop, cli_outcomes, 40 * pause_s), daemon=True)]
    for t in threads:
        t.start()
    t0 = time.monotonic()
    runs = {model: tollgate(root, "run", "--model", model, "--suite", suite, "--no-progress", "--format", "csv",
                            "--commit-every", str(commit_every))
            for model, suite in (("alpha", "first"), ("beta", "second"))}
    for model, proc in runs.items():
        _, err = proc.communicate(timeout=600)
        no_user_facing_error(proc.returncode, err, f"tollgate run --model {model}")
    seconds = time.monotonic() - t0
    reads_during_runs = reader.reads
    cli_reads_during_runs = len(cli_outcomes)
    cli_stop.set()
    traffic.stop.set()
    reader.stop.set()
    for t in threads:
        t.join(300)
        assert not t.is_alive()
    router.send_signal(signal.SIGTERM)  # a graceful stop: every answered request is written first
    _, err = router.communicate(timeout=120)
    no_user_facing_error(router.returncode, err, "tollgate serve")

    assert not reader.errors, reader.errors[:3]
    assert not traffic.failures, traffic.failures[:3]
    for code, err in cli_outcomes:
        assert code == 0 and "Traceback" not in err and "lock" not in err.lower() and "not JSON" not in err, \
            err[-3000:]
    # the readers really read while both runs wrote
    assert reads_during_runs >= 5 and cli_reads_during_runs >= 1, (reads_during_runs, cli_reads_during_runs)

    with store.read() as con:
        stored = {model: (status, n_done, results, scores) for model, status, n_done, results, scores in con.execute(
            """SELECT r.model, r.status, r.n_done,
                      (SELECT count(*) FROM results x WHERE x.run_id = r.run_id),
                      (SELECT count(*) FROM scores s WHERE s.run_id = r.run_id)
               FROM runs r""").fetchall()}
        logged = dict(con.execute("SELECT json_extract_string(input, '$'), request_id FROM traffic "
                                  "WHERE arm = 'production'").fetchall())
        other = con.execute("SELECT count(*) FROM traffic WHERE arm <> 'production'").fetchone()[0]
    assert stored == {"alpha": ("completed", n, n, n), "beta": ("completed", n, n, n)}
    assert logged == traffic.answered and other == 0  # every answered request, once, under its id
    assert len(logged) > 0
    return {"seconds": round(seconds, 1), "results": 2 * n, "traffic": len(logged), "reads": reader.reads,
            "cli_reads": len(cli_outcomes)}


def test_two_runs_the_router_and_readers_at_once_lose_nothing_and_show_no_lock_error(tmp_path):
    figures = everything_at_once(tmp_path, n=36, commit_every=12, lanes=1, pause_s=0.05)
    print(f"\nconcurrency: {figures}")


@pytest.mark.soak
def test_soak_two_long_runs_the_router_and_readers_at_once(tmp_path):
    figures = everything_at_once(tmp_path, n=600, commit_every=4, lanes=8, pause_s=0.02)
    print(f"\nconcurrency soak: {figures}")
