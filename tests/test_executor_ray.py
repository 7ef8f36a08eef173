"""The Ray executor on a real local Ray cluster (2 CPUs, started once for this module, torn down after).

A run split over two actors stores what a local run stores, example by example and figure by
figure; examples the cache holds are never sent; a replica whose process dies mid-chunk is replaced
and its chunk sent again, each example stored once; ``shadow replay`` uses the same executor; and
without Ray the option says how to install it. The model logs every call with its process id, so
the tests see which replica answered what.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import textwrap
from pathlib import Path

import duckdb
import pytest
from conftest import run_cli, write_project, write_suite

from harness.cli import main

STORE = Path(".tollgate/tollgate.duckdb")

MODELS = """\
  echo:
    adapter: python
    options: {callable: "mymodels:echo", loglikelihood: "mymodels:ll"}
"""

# ``echo`` answers the prompt's last word; it logs "pid<TAB>prompt" per call, raises for FAIL (an
# example's error), and the process that makes the DIE_AT-th call of its life exits on the spot
# (once in all: the first to delete the file).
MYMODELS = textwrap.dedent("""\
    import os
    from pathlib import Path

    HERE = Path(__file__).parent
    CALLS = 0


    def echo(prompt):
        global CALLS
        CALLS += 1
        with open(HERE / "calls.log", "a") as f:
            f.write(f"{os.getpid()}\\t{prompt}\\n")
        die = HERE / "DIE_AT"
        if die.exists() and CALLS >= int(die.read_text()):
            try:
                die.unlink()
            except FileNotFoundError:
                pass
            else:
                os._exit(1)
        if "FAIL" in prompt:
            raise RuntimeError("endpoint timed out")
        return prompt.split()[-1]


    def ll(context, continuation):
        return 0.0 if continuation.strip() in context else -float(len(continuation))
    """)


def make_project(root: Path, n: int = 40) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "mymodels.py").write_text(MYMODELS)
    write_project(root, MODELS)
    rows = [{"id": f"e{i}", "input": "say FAIL" if i == 7 else f"say w{i}", "expected": f"w{i}" if i % 4 else "x"}
            for i in range(n)]
    # behavioural examples, listed before their sources: scored only once the sources are stored
    rows = [{"id": "e1~please", "input": "please say w1", "expected": None, "invariant_to": "e1"},
            {"id": "e2~now", "input": "say w2 now", "expected": None, "invariant_to": "e2"}, *rows]
    write_suite(root, "words", rows, extra="checks: [exact_match]\n")
    write_suite(root, "pick", [{"id": f"p{i}", "input": {"q": f"the colour is {c}", "opts": ["red", "green", "blue"]},
                                "expected": i % 3} for i, c in enumerate(["red", "blue", "green", "blue"] * 4)],
                task="choice", prompt="{{ q }}", extra="choices_field: opts\n")
    return root


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level=logging.ERROR, object_store_memory=100 * 1024**2)
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    root = make_project(tmp_path / "ray")
    monkeypatch.chdir(root)
    return root


def calls(root: Path) -> list[tuple[int, str]]:
    p = root / "calls.log"
    return [(int(pid), prompt) for pid, prompt in (line.split("\t", 1) for line in p.read_text().splitlines())] \
        if p.exists() else []


def per_example(root: Path) -> dict[tuple[str, str], tuple]:
    """(suite, example) -> what is stored for it in the newest run of its suite."""
    con = duckdb.connect(str(root / STORE), read_only=True)
    try:
        rows = con.execute("""
            SELECT u.suite, r.example_id, r.output, r.passed, r.score, r.error, r.reason, r.details, r.cached
            FROM results r JOIN runs u USING (run_id)
            WHERE u.started_at = (SELECT max(started_at) FROM runs v WHERE v.suite = u.suite)""").fetchall()
    finally:
        con.close()
    return {(r[0], r[1]): r[2:] for r in rows}


def figures(capsys) -> list[tuple]:
    capsys.readouterr()
    assert main(["results", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    return sorted((r["suite"], r["metric"], r["value"], r["ci_low"], r["ci_high"], r["n"], r["errors"], r["cached"])
                  for r in rows if not r["metric"].startswith("latency"))


def run(*args: str) -> int:
    return main(["run", "--model", "echo", "--no-progress", "--format", "json", "--commit-every", "4", *args])


def run_ray(root: Path, replicas: int = 2, **kw):
    from harness.executor_ray import RayExecutor
    from harness.project import load_project
    from harness.runner import run_suites
    from harness.store import Store
    from harness.suites import load_suite

    project = load_project(root / "tollgate.yaml")
    suites = [load_suite(d) for d in project.suite_dirs]
    executor = RayExecutor(replicas=replicas, **kw)
    try:
        outcomes = run_suites(project, "echo", suites, Store(project.store_path), show_progress=False,
                              commit_every=4, executor=executor)
    finally:
        executor.close()
    return outcomes, executor


# -- the same results as a local run ----------------------------------------------------------------------
def test_a_run_split_over_two_actors_stores_what_a_local_run_stores(ray_cluster, project, tmp_path, monkeypatch,
                                                                    capsys):
    local = make_project(tmp_path / "local")
    monkeypatch.chdir(local)
    assert run() == 0
    local_rows, local_figures = per_example(local), figures(capsys)

    monkeypatch.chdir(project)
    assert run("--executor", "ray", "--replicas", "2") == 0
    assert per_example(project) == local_rows
    assert figures(capsys) == local_figures
    assert len(local_rows) == 42 + 16
    assert local_rows[("words", "e2~now")][1] is False and local_rows[("words", "e1~please")][1] is True
    assert local_rows[("words", "e7")][3] == "RuntimeError: endpoint timed out"
    seen = calls(project)
    assert len({pid for pid, _ in seen}) == 2  # two replicas answered
    assert len(seen) == 42 and len({p for _, p in seen}) == 42  # every generate prompt once, none twice


def test_examples_the_store_holds_are_not_sent_to_the_cluster(ray_cluster, project, capsys):
    shutil.rmtree(project / "suites" / "pick")
    outcomes, _ = run_ray(project, replicas=1)
    assert [o.n_computed for o in outcomes] == [42]
    with (project / "suites" / "words" / "examples.jsonl").open("a") as f:
        for i in range(40, 45):
            f.write(json.dumps({"id": f"e{i}", "input": f"say w{i}", "expected": f"w{i}"}) + "\n")
    (project / "calls.log").unlink()
    outcomes, _ = run_ray(project, replicas=1)
    # the five new examples, and the one that errored (an error is never cached: the next run retries it)
    assert [(o.n_cached, o.n_computed, o.status) for o in outcomes] == [(41, 6, "completed")]
    assert sorted(p for _, p in calls(project)) == sorted(["say FAIL", *(f"say w{i}" for i in range(40, 45))])
    # without the failing example, nothing is left to send: no replica starts at all
    data = project / "suites" / "words" / "examples.jsonl"
    data.write_text("".join(line for line in data.read_text().splitlines(keepends=True) if "FAIL" not in line))
    (project / "calls.log").unlink()
    outcomes, executor = run_ray(project, replicas=1)
    assert [(o.n_cached, o.n_computed) for o in outcomes] == [(46, 0)] and not calls(project)
    assert executor._slots == []


# -- a replica dies ---------------------------------------------------------------------------------------
def test_a_replica_that_dies_mid_chunk_is_replaced_and_the_run_completes_with_one_result_per_example(
        ray_cluster, project, tmp_path, monkeypatch, capsys):
    local = make_project(tmp_path / "local")
    monkeypatch.chdir(local)
    assert run() == 0
    local_rows, local_figures = per_example(local), figures(capsys)

    monkeypatch.chdir(project)
    (project / "DIE_AT").write_text("6")  # a replica's 6th call: in its second chunk of 4
    outcomes, executor = run_ray(project)
    assert not (project / "DIE_AT").exists()
    assert executor.replaced == 1
    assert all(o.status == "completed" for o in outcomes)
    con = duckdb.connect(str(project / STORE), read_only=True)
    try:
        per_run = con.execute("SELECT count(*), count(DISTINCT example_id) FROM results GROUP BY run_id "
                              "ORDER BY 1").fetchall()
    finally:
        con.close()
    assert per_run == [(16, 16), (42, 42)]
    assert per_example(project) == local_rows
    assert figures(capsys) == local_figures
    pids = [pid for pid, _ in calls(project)]
    assert len(set(pids)) == 3  # two replicas, one of them replaced
    assert len(pids) > 42  # the chunk the dead replica held was answered again


def test_a_replica_that_cannot_load_ends_the_run_with_its_error_instead_of_retrying(ray_cluster, project):
    import os

    # the model's module refuses to load in any process but this one (the driver fingerprints it here)
    (project / "mymodels.py").write_text(f"import os\nif os.getpid() != {os.getpid()}:\n"
                                         f"    raise RuntimeError('no GPU on this node')\n" + MYMODELS)
    with pytest.raises(RuntimeError, match="no GPU on this node"):
        run_ray(project)
    con = duckdb.connect(str(project / STORE), read_only=True)
    try:
        assert con.execute("SELECT status, n_done FROM runs").fetchall() == [("failed", 0)]
    finally:
        con.close()


# -- the command line -------------------------------------------------------------------------------------
def test_the_cli_joins_a_running_cluster_by_address(ray_cluster, project):
    address = ray_cluster.get_runtime_context().gcs_address
    res = run_cli("run", "--model", "echo", "--suite", "pick", "--executor", "ray", "--ray-address", address,
                  "--replicas", "2", "--commit-every", "4", "--format", "json", "--no-progress", cwd=project)
    assert res.returncode == 0, res.stderr[-2000:]
    rows = {r["metric"]: r for r in json.loads(res.stdout)}
    assert rows["choice_accuracy"]["n"] == 16 and rows["choice_accuracy"]["value"] == pytest.approx(5 / 16)


def test_shadow_replay_spreads_its_batches_over_the_same_executor(ray_cluster, tmp_path, monkeypatch, capsys):
    from test_rollout_reports import calls as replay_calls
    from test_rollout_reports import log_production, make_project, q

    make_project(tmp_path)
    monkeypatch.chdir(tmp_path)
    log_production(tmp_path, 40)
    assert main(["shadow", "replay", "cand", "--executor", "ray", "--replicas", "2", "--no-progress"]) == 0
    assert "40 of 40 logged production requests answered (0 errors)" in capsys.readouterr().out
    rows = q(tmp_path, "SELECT request_id, user_id, output FROM traffic WHERE arm = 'shadow' ORDER BY 1")
    assert rows == [(f"r{i:03d}", f"u{i}", f"Claim document: claim {i}") for i in range(40)]
    assert len(replay_calls(tmp_path)) == 40


# -- without Ray ------------------------------------------------------------------------------------------
def test_without_ray_the_option_says_how_to_install_it_and_writes_nothing(tmp_path, monkeypatch, capsys):
    root = make_project(tmp_path / "p")
    monkeypatch.chdir(root)
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails, as where it is not installed
    assert run("--executor", "ray") == 2
    err = capsys.readouterr().err
    assert "needs Ray, which is not installed" in err and "pip install 'tollgate[ray]'" in err
    assert not (root / ".tollgate").exists() and not (root / "calls.log").exists()


def test_ray_only_flags_without_executor_ray_are_usage_errors(tmp_path, monkeypatch, capsys):
    root = make_project(tmp_path / "p")
    monkeypatch.chdir(root)
    assert run("--replicas", "2") == 2
    assert "--replicas needs --executor ray" in capsys.readouterr().err
    assert not (root / ".tollgate").exists()
