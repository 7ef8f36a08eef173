"""Faults: ``kill -9`` at seeded random points of a run, an ingest and the live router, a read-only
store and a full disk. After each: the store opens, it holds only whole transactions, nothing
committed is lost, and the same command run again finishes the job with the figures an
uninterrupted run gives. A full disk or a read-only store is exit 2 with one paragraph, never a
traceback.

The default run kills at a few points; ``pytest -m soak tests/test_faults.py`` kills at many more.
"""

from __future__ import annotations

import asyncio
import ctypes
import hashlib
import json
import os
import random
import re
import resource
import stat
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import tollgate_child as tollgate
from conftest import write_project, write_suite

from harness.cli import main
from harness.project import load_project
from harness.report import stored_results
from harness.runner import run_suites
from harness.store import Store
from harness.suites import load_suite

MODELS = """\
  slow:
    adapter: python
    role: candidate
    options: {callable: "mymodels:slow"}
  fast:
    adapter: python
    role: candidate
    options: {callable: "mymodels:fast"}
  prod:
    adapter: python
    role: production
    options: {callable: "mymodels:prod"}
"""

# ``slow`` leaves one byte in calls.log per answer, so a test knows how far a run got.
MYMODELS = textwrap.dedent("""\
    import time
    from pathlib import Path

    CALLS = Path(__file__).with_name("calls.log")

    def slow(prompt):
        time.sleep(0.002)
        with CALLS.open("a") as f:
            f.write(".")
        return prompt.split()[-1]

    def fast(prompt):
        return prompt.split()[-1]

    def prod(prompt):
        return "prod:" + prompt
    """)

COMMIT_EVERY = 8


def make_project(root: Path, n: int = 96) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "mymodels.py").write_text(MYMODELS)
    write_project(root, MODELS)
    write_suite(root, "words", [{"id": f"e{i:04d}", "input": f"say w{i}", "expected": f"w{i}" if i % 4 else "x"}
                                for i in range(n)], extra="checks: [exact_match]\n")
    return root


def db(root: Path) -> Path:
    return root / ".tollgate" / "tollgate.duckdb"


def calls(root: Path) -> int:
    try:
        return (root / "calls.log").stat().st_size
    except FileNotFoundError:
        return 0


@dataclass
class Done:
    code: int
    stdout: str
    stderr: str


def finish(proc: subprocess.Popen[str], timeout: float = 120) -> Done:
    out, err = proc.communicate(timeout=timeout)
    return Done(proc.returncode, out, err)


def clean(res: Done) -> None:
    """Exit 0 and nothing on stderr a user would take for a failure."""
    assert res.code == 0, res.stderr[-3000:]
    assert "Traceback" not in res.stderr and "lock" not in res.stderr.lower(), res.stderr[-3000:]


def one_paragraph_error(res: Done, *fragments: str) -> str:
    """Exit 2 and one paragraph on stderr, starting with ``error:``, holding every fragment."""
    err = res.stderr.strip()
    assert res.code == 2, res.stderr[-3000:]
    assert err.startswith("error: ") and "Traceback" not in err and "\n\n" not in err, err
    for f in fragments:
        assert f in err, (f, err)
    return err


def kill_when(proc: subprocess.Popen[str], ready: Callable[[], bool], jitter_s: float, timeout: float = 120,
              poll_s: float = 0.002) -> bool:
    """SIGKILL ``proc`` ``jitter_s`` after ``ready()`` first holds; False if it ended on its own first."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            return False
        assert time.monotonic() < deadline, "the kill point was never reached"
        time.sleep(poll_s)
    time.sleep(jitter_s)
    if proc.poll() is not None:
        return False
    proc.kill()
    finish(proc)
    return True


def elapsed(seconds: float) -> Callable[[], bool]:
    t0 = time.monotonic()
    return lambda: time.monotonic() - t0 >= seconds


def answered(root: Path, k: int) -> Callable[[], bool]:
    return lambda: calls(root) >= k


def files_digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


# -- a run -----------------------------------------------------------------------------------------------
@dataclass
class RunFacts:
    run_id: str
    status: str
    suite: str
    pid: int
    fresh: set[str] = field(default_factory=set)  # answered by the model in this run
    cached: set[str] = field(default_factory=set)  # served from the store
    scores: int = 0


def run_facts(path: Path) -> list[RunFacts]:
    """Every run in the order it started, with what it stored (the store opened read-only)."""
    with Store(path).read() as con:
        runs = {rid: RunFacts(rid, status, f"{model}/{suite}", pid) for rid, status, model, suite, pid in
                con.execute("SELECT run_id, status, model, suite, pid FROM runs ORDER BY started_at").fetchall()}
        for rid, ex, cached in con.execute("SELECT run_id, example_id, cached FROM results").fetchall():
            (runs[rid].cached if cached else runs[rid].fresh).add(ex)
        for rid, n in con.execute("SELECT run_id, count(*) FROM scores GROUP BY run_id").fetchall():
            runs[rid].scores = n
    return list(runs.values())


def check_whole_batches(path: Path, commit_every: int) -> list[RunFacts]:
    """Each run served from the cache exactly what earlier runs stored, recomputed none of it, and
    stored its own answers in whole batches (all of them once it completed), each with its score."""
    runs = run_facts(path)
    stored: dict[str, set[str]] = {}  # by model and suite
    for r in runs:
        before = stored.setdefault(r.suite, set())
        assert r.cached == before, f"run {r.run_id}: served {len(r.cached)} from the cache, {len(before)} stored"
        assert not r.fresh & before, f"run {r.run_id} recomputed stored answers"
        assert r.scores == len(r.fresh) + len(r.cached), f"run {r.run_id}: a result without its score"
        if r.status != "completed":
            assert len(r.fresh) % commit_every == 0, f"run {r.run_id} holds half a batch: {len(r.fresh)} answers"
        before |= r.fresh
    return runs


def figures(path: Path) -> tuple[list[dict[str, Any]], dict[str, tuple]]:
    """What ``tollgate results`` shows for the newest completed run (latency aside: it is a time), and
    every example's stored answer and score."""
    rows = [{k: v for k, v in r.as_dict().items() if k not in ("cached", "duration_s", "run_id")}
            for r in stored_results(Store(path), model="slow") if r.metric != "latency_ms"]
    with Store(path).read() as con:
        (rid,) = con.execute("SELECT run_id FROM runs WHERE status = 'completed' ORDER BY started_at DESC "
                             "LIMIT 1").fetchone()
        per_example = {ex: (out, passed, score) for ex, out, passed, score in con.execute(
            "SELECT example_id, output, passed, score FROM results WHERE run_id = ?", [rid]).fetchall()}
    return rows, per_example


def uninterrupted_figures(tmp: Path, n: int) -> tuple[list[dict[str, Any]], dict[str, tuple]]:
    root = make_project(tmp / "reference", n)
    project = load_project(root / "tollgate.yaml")
    run_suites(project, "slow", [load_suite(root / "suites" / "words")], Store(project.store_path),
               show_progress=False, commit_every=COMMIT_EVERY)
    return figures(project.store_path)


def kill_runs(tmp_path: Path, seed: int, n: int, points: int) -> None:
    rng = random.Random(seed)
    root = make_project(tmp_path / "killed", n)
    c = COMMIT_EVERY
    args = ("run", "--model", "slow", "--no-progress", "--format", "csv", "--commit-every", str(c))
    landed = []
    for _ in range(points):
        (root / "calls.log").unlink(missing_ok=True)
        remaining = n - sum(len(r.fresh) for r in run_facts(db(root))) if db(root).exists() else n
        cap = max(0, remaining - 2 * c)  # at least two batches left when the kill comes
        if rng.random() < 0.25:  # a time: in the imports, the start transaction or the first batches
            after = rng.uniform(0.2, 2.5)
            proc = tollgate(root, *args)
            timer, enough = elapsed(after), answered(root, cap)
            ready: Callable[[], bool] = lambda: timer() or enough()  # noqa: B023, E731 - called in this pass
            jitter, point = 0.0, f"{after:.2f}s"
        else:  # an answer: mid-batch, or (rounded down to a batch end) in the batch's commit
            k = rng.randint(0, cap // 2)
            if rng.random() < 0.5:
                k -= k % c
            proc = tollgate(root, *args)
            ready = answered(root, k)
            jitter = rng.uniform(0.0, 0.04)
            point = f"answer {k} + {jitter * 1000:.0f} ms"
        assert kill_when(proc, ready, jitter), f"the run ended before its kill point {point}"
        runs = check_whole_batches(db(root), c)  # the store opens and holds whole batches only
        made = calls(root)
        mine = next((r.fresh for r in runs if r.pid == proc.pid), set())
        # the killed process lost at most the batch it was answering or committing
        assert 0 <= made - len(mine) <= c, (made, len(mine))
        landed.append((point, made, len(mine)))
    (root / "calls.log").unlink(missing_ok=True)
    res = finish(tollgate(root, *args))
    clean(res)
    runs = check_whole_batches(db(root), c)
    final = runs[-1]
    assert final.status == "completed" and len(final.fresh | final.cached) == n
    assert calls(root) == len(final.fresh)  # the rerun answered only what no killed run had stored
    assert [r.status for r in runs[:-1]] == ["interrupted"] * (len(runs) - 1)  # found and marked by the next run
    assert figures(db(root)) == uninterrupted_figures(tmp_path, n)
    print(f"\nrun kill points (point, answers made, answers stored): {landed}; the rerun answered "
          f"{len(final.fresh)} and served {len(final.cached)} from the store")


def test_a_run_killed_at_random_points_keeps_whole_batches_and_resumes_to_the_same_figures(tmp_path):
    kill_runs(tmp_path, seed=10, n=96, points=5)


@pytest.mark.soak
def test_soak_a_run_killed_at_many_random_points(tmp_path):
    kill_runs(tmp_path, seed=1010, n=400, points=25)


# -- an ingest -------------------------------------------------------------------------------------------
def traffic_file(path: Path, prefix: str, n: int) -> Path:
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            f.write(json.dumps({"request_id": f"{prefix}-{i}", "ts": f"2026-03-02T09:{i % 60:02d}:00Z",
                                "user_id": f"u{i % 97}", "arm": "production", "model": "prod",
                                "input": f"question {i}", "output": f"answer {prefix} {i}", "latency_ms": i % 300,
                                "prompt_tokens": 10, "completion_tokens": 3}) + "\n")
    return path


def stored_by_source(path: Path) -> dict[str, int]:
    with Store(path).read() as con:
        return dict(con.execute("SELECT source, count(*) FROM traffic GROUP BY source").fetchall())


def kill_ingests(tmp_path: Path, seed: int, rows: int, points: int) -> None:
    """The store's transaction is short: rows are staged in memory (a file of more than DuckDB's row
    group, 122,880 rows, is written straight into the store file's free blocks), written to the WAL
    at the commit, then checkpointed into the file. Kill points: the WAL being written, the
    checkpoint, the file being read and validated, and (large files) the store file growing."""
    rng = random.Random(seed)
    root = make_project(tmp_path, 4)
    wal = db(root).with_name(db(root).name + ".wal")
    assert main(["--project", str(root / "tollgate.yaml"), "traffic", "ingest",
                 str(traffic_file(root / "seed.jsonl", "seed", 10))]) == 0
    expected = {"seed.jsonl": 10}
    landed = []
    for k in range(points):
        path = traffic_file(root / f"traffic-{k}.jsonl", f"k{k}", rows)
        scratch = tmp_path / f"tmp-{k}"  # the ingest's spill folder appears here when it starts
        scratch.mkdir()
        proc = tollgate(root, "traffic", "ingest", path.name, env={"TMPDIR": str(scratch)})
        mode = k % (4 if rows > 122_880 else 3)
        size = db(root).stat().st_size
        if mode == 2:  # reading and validating the file
            ready, jitter = lambda: any(scratch.iterdir()), rng.uniform(0.0, 0.3)  # noqa: B023 - called in this pass
        elif mode == 3:  # the insert writing row groups into the store file, before the commit
            ready, jitter = lambda: db(root).stat().st_size > size, rng.uniform(0.0, 0.05)  # noqa: B023
        else:  # the WAL has appeared: being written, committed (mode 0) or checkpointed (mode 1)
            ready, jitter = wal.exists, rng.uniform(*((0.0, 0.004), (0.01, 0.06))[mode])
        killed = kill_when(proc, ready, jitter, poll_s=0.0005)
        if not killed:
            clean(finish(proc))
        at_kill = wal.stat().st_size if wal.exists() else None
        got = stored_by_source(db(root))  # the store opens
        assert {s: n for s, n in got.items() if s != path.name} == expected  # nothing stored before is lost
        point = (("wal", "checkpoint", "validating", "growing")[mode] + f"+{jitter * 1000:.1f}ms"
                 + ("" if killed else " (ended first)"))
        assert got.get(path.name, 0) in (0, rows), f"kill at {point}: {got.get(path.name)} of {rows} rows stored"
        landed.append((point, at_kill, got.get(path.name, 0)))
        assert main(["--project", str(root / "tollgate.yaml"), "traffic", "ingest", str(path)]) == 0  # the rerun
        expected[path.name] = rows
        with Store(db(root)).read() as con:
            stored = con.execute("SELECT request_id, output, latency_ms FROM traffic WHERE source = ? "
                                 "ORDER BY request_id", [path.name]).fetchall()
        want = sorted((f"k{k}-{i}", f"answer k{k} {i}", float(i % 300)) for i in range(rows))
        assert stored == want, f"the rerun after a kill at {point} stored other rows"
    assert stored_by_source(db(root)) == expected
    assert sum("ended first" not in p for p, _, _ in landed) >= points - 1, landed
    print(f"\ningest kill points (point, WAL bytes at the kill, rows of {rows} stored at the kill): {landed}")


def test_an_ingest_killed_at_random_points_stores_all_of_its_file_or_none(tmp_path, capsys):
    kill_ingests(tmp_path, seed=20, rows=30_000, points=3)


@pytest.mark.soak
def test_soak_an_ingest_killed_at_many_random_points(tmp_path, capsys):
    kill_ingests(tmp_path, seed=2020, rows=150_000, points=12)


# -- the router ------------------------------------------------------------------------------------------
QUEUE = 64
BATCH = 256  # rollout.router.create_app's default batch_size, which ``tollgate serve`` uses


@dataclass
class Load:
    url: str
    sent: set[str] = field(default_factory=set)
    answered: dict[str, str] = field(default_factory=dict)  # prompt -> request id
    committed: int = 0  # the most rows /metrics ever said were written
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    async def lane(self, name: str) -> None:
        async with httpx.AsyncClient(base_url=self.url, timeout=30) as client:
            i = 0
            while not self.stop.is_set():
                prompt = f"{name}-{i}"
                i += 1
                self.sent.add(prompt)
                try:
                    r = await client.post("/v1/completions", json={"prompt": prompt, "user": name})
                except httpx.TransportError:
                    return  # the router is gone
                if r.status_code != 200 or r.json()["choices"][0]["text"] != f"prod:{prompt}":
                    self.failures.append(r.text)
                else:
                    self.answered[prompt] = r.json()["id"]

    async def watch(self) -> None:
        async with httpx.AsyncClient(base_url=self.url, timeout=30) as client:
            while not self.stop.is_set():
                try:
                    m = (await client.get("/metrics")).json()
                except httpx.TransportError:
                    return
                self.committed = max(self.committed, m["log"]["rows_written"])
                await asyncio.sleep(0.02)

    async def all(self, lanes: int, prefix: str) -> None:
        await asyncio.gather(self.watch(), *(self.lane(f"{prefix}l{j}") for j in range(lanes)))

    def run(self, lanes: int, prefix: str) -> None:
        try:
            asyncio.run(self.all(lanes, prefix))
        except Exception as exc:  # reported by the test, not lost in the thread
            self.failures.append(f"{type(exc).__name__}: {exc}")


def start_router(root: Path) -> tuple[subprocess.Popen[str], str]:
    proc = tollgate(root, "serve", "--port", "0", "--queue", str(QUEUE))
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("serving on http://127.0.0.1:"), line + (proc.stderr.read() if proc.stderr else "")
    return proc, line.split()[-1]


def kill_router(tmp_path: Path, seed: int, points: int) -> None:
    """What ``tollgate serve`` promises under kill -9: it answers a user before the row is written to
    the store (rows wait in a queue of ``--queue`` rows and a batch of at most 256, written every
    0.2 s), but after the row is in its journal; every row it committed survives the kill, every
    stored row is whole and is an answer it gave, and the next router on the store stores the rows
    the killed one had journaled but not committed: no answered request is lost."""
    rng = random.Random(seed)
    root = make_project(tmp_path, 4)
    Store(db(root)).migrate()
    seen: dict[str, str] = {}  # prompt -> request id, over every router killed
    report = []
    for k in range(points):
        proc, url = start_router(root)
        load = Load(url)
        thread = threading.Thread(target=load.run, args=(8, f"r{k}"), daemon=True)
        thread.start()
        after = rng.uniform(0.8, 2.0)
        timer = elapsed(after)
        assert kill_when(proc, lambda: timer() and load.committed > 0, 0.0)  # noqa: B023 - called in this pass
        load.stop.set()
        thread.join(60)
        assert not thread.is_alive() and not load.failures, load.failures[:3]
        seen.update(load.answered)
        with Store(db(root)).read() as con:  # the store opens, read-only (a WAL is replayed in memory)
            committed_rows = con.execute("SELECT count(*) FROM traffic").fetchone()[0]
        recovered = recover(root)
        with Store(db(root)).read() as con:
            rows = con.execute("SELECT request_id, model, arm, input, output, ts, latency_ms, source, user_id "
                               "FROM traffic").fetchall()
        by_prompt = {}
        for rid, model, arm, inp, out, ts, latency, source, user in rows:
            prompt = json.loads(inp)
            assert (model, arm, out, source) == ("prod", "production", f"prod:{prompt}", "router"), rows[0]
            assert ts is not None and latency is not None and user == prompt.split("-")[0]
            by_prompt[prompt] = rid
        assert len(by_prompt) == len(rows)  # one row per request
        mine = {p: r for p, r in by_prompt.items() if p in load.sent}
        assert set(by_prompt) - set(mine) <= set(seen)  # earlier routers' rows are all still there ...
        assert all(seen[p] == by_prompt[p] for p in set(by_prompt) & set(seen))  # ... under the id users got
        assert committed_rows >= load.committed  # every row the router had committed survived the kill
        lost = set(load.answered) - set(mine)
        assert not lost, f"{len(lost)} answered requests are not in the traffic log, e.g. {sorted(lost)[:3]}"
        assert len(rows) == committed_rows + recovered  # the journal held exactly what was not committed
        report.append((f"{after:.2f}s", len(load.answered), load.committed, recovered, len(mine), len(lost)))
    with Store(db(root)).write() as con:  # and it is writable again
        assert con.execute("SELECT count(*) FROM traffic").fetchone()[0] >= sum(r[3] for r in report)
    print(f"\nrouter kill points (after, answered, committed per /metrics, recovered from the journal, stored, "
          f"answered but lost): {report}")


def recover(root: Path) -> int:
    """Start a router on the store (it stores the dead router's journal before it is ready), stop it;
    returns the rows it recovered."""
    proc, url = start_router(root)
    deadline = time.monotonic() + 60
    while httpx.get(f"{url}/readyz", timeout=5).status_code != 200:
        assert time.monotonic() < deadline, "the recovering router never became ready"
        time.sleep(0.05)
    proc.terminate()
    _, err = proc.communicate(timeout=60)
    found = re.search(r"stored (\d+) row\(s\) journaled", err)
    return int(found.group(1)) if found else 0


def test_a_killed_router_loses_no_answered_request_and_keeps_every_row_whole(tmp_path, capsys):
    kill_router(tmp_path, seed=30, points=1)


@pytest.mark.soak
def test_soak_a_router_killed_again_and_again_on_the_same_store(tmp_path, capsys):
    kill_router(tmp_path, seed=3030, points=6)


# -- a read-only store and a full disk -----------------------------------------------------------------------
def _without_root_bypass() -> None:
    """In the child: as root, give up the capabilities that ignore file permissions (as another user
    nothing is needed: the permissions already apply)."""
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, dropped from the bounding set before exec
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def _root_bypass_can_be_dropped() -> bool:
    try:
        subprocess.run([sys.executable, "-c", "pass"], preexec_fn=_without_root_bypass, check=True)
    except (subprocess.SubprocessError, OSError):
        return False
    return True


def _file_size_limit(limit: int) -> Callable[[], None]:
    def apply() -> None:  # a write past ``limit`` bytes of any file fails with EFBIG, as on a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def completed_project(tmp_path: Path, big: int) -> Path:
    """A project whose store holds a completed run, and a suite ``big`` not run yet."""
    root = make_project(tmp_path, 40)
    project = load_project(root / "tollgate.yaml")
    run_suites(project, "fast", [load_suite(root / "suites" / "words")], Store(project.store_path),
               show_progress=False)
    write_suite(root, "big", [{"id": f"b{i}", "input": f"say b{i} " + "pad " * 40, "expected": f"b{i}"}
                              for i in range(big)], extra="checks: [exact_match]\n")
    return root


def shown(root: Path) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.as_dict().items() if k != "duration_s"}
            for r in stored_results(Store(db(root))) if r.metric != "latency_ms"]


@pytest.mark.parametrize("what", ["file and folder", "folder"])
def test_a_read_only_store_is_exit_2_in_one_paragraph_and_still_reads(tmp_path, what):
    if not _root_bypass_can_be_dropped():
        pytest.skip("running as root without CAP_SETPCAP: file permissions cannot be made to apply")
    root = completed_project(tmp_path, 40)
    before, digest = shown(root), files_digest(db(root).parent)
    traffic_file(root / "t.jsonl", "t", 100)
    folder = db(root).parent
    if what == "file and folder":
        db(root).chmod(0o444)
    folder.chmod(0o555)
    try:
        run = finish(tollgate(root, "run", "--model", "fast", "--suite", "big", "--no-progress",
                              preexec_fn=_without_root_bypass))
        one_paragraph_error(run, "Permission denied", "read-only", "run the same command again")
        if what == "file and folder":
            ingest = finish(tollgate(root, "traffic", "ingest", "t.jsonl", preexec_fn=_without_root_bypass))
            one_paragraph_error(ingest, "Permission denied")
        res = finish(tollgate(root, "results", "--format", "json", preexec_fn=_without_root_bypass))
        clean(res)  # a reader needs no write access
        assert [{k: v for k, v in r.items() if k != "duration_s"} for r in json.loads(res.stdout)
                if r["metric"] != "latency_ms"] == before
        assert files_digest(folder) == digest
    finally:
        folder.chmod(0o755)
        db(root).chmod(stat.S_IRUSR | stat.S_IWUSR)
    assert shown(root) == before
    # writable again once the permissions are back
    assert main(["--project", str(root / "tollgate.yaml"), "run", "--model", "fast", "--suite", "big",
                 "--no-progress", "--format", "csv"]) == 0
    assert len(run_facts(db(root))[-1].fresh) == 40


BIG = 700


def test_a_full_disk_is_exit_2_in_one_paragraph_and_loses_nothing(tmp_path):
    """A file size limit (RLIMIT_FSIZE) stands in for a full disk: writes past it fail with EFBIG.
    DuckDB cannot checkpoint into the store file, so the WAL grows with each batch until a commit
    fails mid-run."""
    root = completed_project(tmp_path, BIG)
    before = shown(root)
    path = traffic_file(root / "t.jsonl", "t", 10_000)
    full = _file_size_limit(384 << 10)
    run = finish(tollgate(root, "run", "--model", "fast", "--suite", "big", "--no-progress", "--commit-every", "50",
                          preexec_fn=full))
    one_paragraph_error(run, "File too large", "run the same command again")
    ingest = finish(tollgate(root, "traffic", "ingest", path.name, preexec_fn=full))
    one_paragraph_error(ingest, "File too large")

    assert shown(root) == before  # the store opens and what it held is all there
    assert stored_by_source(db(root)) == {}  # none of the file
    runs = check_whole_batches(db(root), 50)
    stopped = len(runs[-1].fresh)
    assert runs[-1].status in ("running", "failed") and 0 < stopped < BIG, (runs[-1].status, stopped)
    assert main(["--project", str(root / "tollgate.yaml"), "run", "--model", "fast", "--suite", "big",
                 "--no-progress", "--format", "csv", "--commit-every", "500"]) == 0
    runs = check_whole_batches(db(root), 50)
    assert runs[-1].status == "completed" and len(runs[-1].fresh | runs[-1].cached) == BIG
    assert len(runs[-1].cached) == stopped  # resumed from the last batch the full disk let through
    assert main(["--project", str(root / "tollgate.yaml"), "traffic", "ingest", str(path)]) == 0
    assert stored_by_source(db(root)) == {"t.jsonl": 10_000}
    print(f"\nfull disk: the run stopped after {stopped} of {BIG} examples (whole batches of 50); the rerun "
          f"resumed and completed; the ingest stored none of its 10,000 rows, the rerun all of them")
