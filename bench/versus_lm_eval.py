"""Tollgate against ``lm_eval`` on the same model and the same examples, whole processes, as a user
runs each: ``tollgate run`` on a fresh store, and ``lm_eval`` on the task that ``tollgate
export-lm-eval`` wrote from the same suite. Shared by the choice and generate benchmarks.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import workloads
from common import Proc, env, run, tool

MODEL = "m5"


@dataclass
class Setup:
    project: Path
    suite: str
    model_dir: Path
    export_dir: Path
    tollgate_metric: str  # the metric row of `tollgate run --format json` that is the accuracy
    lm_eval_metric: str  # the key in lm_eval's results, e.g. "acc,none"
    batch_size: int = 32

    @property
    def task(self) -> str:
        return self.suite.replace("-", "_")

    def environ(self) -> dict[str, str]:
        # lm-eval's dataset cache lives with the benchmark's data, not in the user's home
        return env(HF_DATASETS_CACHE=str(self.project / "hf-datasets"))


@dataclass
class Measured:
    wall_s: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    run_s: list[float] = field(default_factory=list)  # Tollgate: the run's stored duration (in-process)
    compute_s: list[float] = field(default_factory=list)  # Tollgate: the model calls alone
    tokens: dict[str, int] = field(default_factory=dict)


def prepare(root: Path, model_dir: Path, write_suite: Any, *, metric: str, lm_metric: str,
            batch_size: int = 32) -> Setup:
    """A project holding one suite and the model, and the suite exported as an lm-eval task."""
    shutil.rmtree(root, ignore_errors=True)
    project = workloads.write_project(root, {MODEL: workloads.hf_model(model_dir, batch_size)})
    suite = write_suite(project).name
    setup = Setup(project, suite, model_dir, root / "lm-eval-tasks", metric, lm_metric, batch_size)
    run([*tool("tollgate"), "export-lm-eval", suite, str(setup.export_dir)], cwd=project, environ=setup.environ())
    return setup


def run_tollgate(s: Setup, into: Measured | None) -> Proc:
    """``tollgate run`` on a cold store; with ``into``, its figures are kept."""
    store = workloads.fresh_store(s.project)
    p = run([*tool("tollgate"), "run", "--model", MODEL, "--suite", s.suite, "--no-progress", "--format", "json"],
            cwd=s.project, environ=s.environ())
    if into is None:
        return p
    rows = json.loads(p.stdout)
    row = next(r for r in rows if r["metric"] == s.tollgate_metric)
    from harness import store as st

    with st.Store(store).read() as con:
        latency = st.example_values(con, row["run_id"], "latency_ms")
        n_out = con.execute("SELECT sum(prompt_tokens), sum(completion_tokens) FROM results WHERE run_id = ?",
                            [row["run_id"]]).fetchone()
    into.wall_s.append(p.wall_s)
    into.accuracy.append(row["value"])
    into.run_s.append(row["duration_s"])
    into.compute_s.append(sum(latency.values()) / 1000)
    into.tokens = {"prompt": int(n_out[0] or 0), "completion": int(n_out[1] or 0)}
    return p


def lm_eval_argv(s: Setup, out: Path, limit: int | None = None) -> list[str]:
    return [*tool("lm_eval"), "--model", "hf", "--model_args", f"pretrained={s.model_dir},dtype=float32",
            "--tasks", s.task, "--include_path", str(s.export_dir), "--batch_size", str(s.batch_size),
            "--device", "cpu", "--output_path", str(out), *(["--limit", str(limit)] if limit else [])]


def run_lm_eval(s: Setup, into: Measured | None, limit: int | None = None) -> Proc:
    """``lm_eval`` run directly on the exported task (from the task's folder: its data path is relative)."""
    out = s.project / "lm-eval-out"
    shutil.rmtree(out, ignore_errors=True)
    p = run(lm_eval_argv(s, out, limit), cwd=s.export_dir / s.task, environ=s.environ())
    if into is not None:
        results = sorted(out.rglob("results_*.json"))
        if not results:
            raise RuntimeError(f"lm_eval wrote no results under {out}:\n{p.stdout[-2000:]}")
        into.wall_s.append(p.wall_s)
        into.accuracy.append(json.loads(results[-1].read_text())["results"][s.task][s.lm_eval_metric])
    return p


def compare(s: Setup, repeat: int, warmup: bool) -> tuple[Measured, Measured]:
    """Both tools ``repeat`` times, interleaved (the order alternates). With ``warmup``, first one
    untimed ``lm_eval --limit 4``: it builds lm-eval's dataset cache once (a user's second run finds
    it) and brings torch and the model into the OS file cache for both tools."""
    if warmup:
        run_lm_eval(s, None, limit=4)
    tg, lm = Measured(), Measured()
    for i in range(repeat):
        if i % 2 == 0:
            run_tollgate(s, tg)
            run_lm_eval(s, lm)
        else:
            run_lm_eval(s, lm)
            run_tollgate(s, tg)
    return tg, lm
