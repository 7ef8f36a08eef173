"""Row 6: ``tollgate gate`` with 10 rules on 100,000 paired examples and 10,000 bootstrap resamples.

A project with two models (``cand``, ``prod``) and one 100,000-example suite; each model's
completed run is written through the store API with the fingerprints and suite hash the gate
expects today (pass/fail, errors, latencies, an ``exact_match`` and a continuous ``similarity``
score per example). The policy holds 10 rules: thresholds, non-inferiority and superiority on
pass rates and on scores, the error rate and the latency p95 (5 of them paired: McNemar, Nam-Tango,
Wilcoxon and a paired bootstrap each). Measured: ``tollgate gate cand --against prod --json``,
whole process (bar: 2 s), and once, in-process, its two parts: loading the project's suites (to
check no result is stale) and ``evaluate_gate``.

    python bench/bench_gate.py [--smoke] [--repeat N]
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import workloads
from common import Report, parse, parser, run, timed, tool

SUITE = "heldout"
RULES = [
    {"suite": SUITE, "metric": "pass", "min": 0.5, "critical": True},
    {"suite": SUITE, "metric": "exact_match", "min": 0.5},
    {"suite": SUITE, "metric": "similarity", "min": 0.5},
    {"suite": SUITE, "metric": "pass", "non_inferior": 0.02},
    {"suite": SUITE, "metric": "exact_match", "non_inferior": 0.02},
    {"suite": SUITE, "metric": "similarity", "non_inferior": 0.02},
    {"suite": SUITE, "metric": "pass", "superior": True},
    {"suite": SUITE, "metric": "similarity", "superior": True},
    {"suite": SUITE, "max_error_rate": 0.01},
    {"suite": SUITE, "max_latency_p95_ms": 500},
]
MODELS_PY = "def cand(prompt):\n    return 'a'\n\n\ndef prod(prompt):\n    return 'b'\n"


def main(argv: list[str] | None = None) -> int:
    args = parse(parser(__doc__.splitlines()[0], repeat=3), argv)
    n, resamples = (200, 200) if args.smoke else (100_000, 10_000)
    project = _project(args.cache / "gate", n, resamples)

    walls, verdicts = [], []
    for _ in range(args.repeat):
        p = run([*tool("tollgate"), "gate", "cand", "--against", "prod", "--json", "--actor", "bench"], cwd=project,
                ok=(0, 1, 3))
        walls.append(p.wall_s)
        verdicts.append(json.loads(p.stdout)["verdict"])
    load_s, gate_s = _parts(project)

    r = Report("bench_gate", args, params={"paired_examples": n, "rules": len(RULES), "resamples": resamples})
    r.add("tollgate gate, whole process", walls, "s", bar="< 2", note=f"verdict {verdicts[0]}")
    r.add("in-process: load the suites (staleness check)", [load_s], "s")
    r.add("in-process: evaluate_gate", [gate_s], "s")
    r.finish()
    return 0


def _project(root: Path, n: int, resamples: int) -> Path:
    """The project and its store, built once per size."""
    marker = root / ".filled"
    if marker.exists() and marker.read_text() == f"{n} {resamples}":
        return root
    shutil.rmtree(root, ignore_errors=True)
    workloads.write_project(root, {"cand": workloads.python_model("candidate", "mymodels:cand"),
                                   "prod": workloads.python_model("production", "mymodels:prod")},
                            {"gate": {"resamples": resamples, "rules": RULES}})
    (root / "mymodels.py").write_text(MODELS_PY)
    workloads.write_suite(root, SUITE, "kind: heldout\ntask: generate\n",
                          [{"id": f"e{i:06d}", "input": f"question {i}", "expected": f"answer {i}"}
                           for i in range(n)])
    _fill(root, n)
    marker.write_text(f"{n} {resamples}")
    return root


def _fill(root: Path, n: int) -> None:
    """One completed run per model, written through the store API with today's fingerprints."""
    import numpy as np

    from harness import store as st
    from harness.adapters import adapters
    from harness.hashing import hash_obj
    from harness.project import load_project
    from harness.report import finish_run
    from harness.suites import load_suite

    project = load_project(root / "tollgate.yaml")
    suite = load_suite(root / "suites" / SUITE)
    store = st.Store(project.store_path)
    rng = np.random.default_rng(workloads.SEED)
    truth = rng.random(n)  # how easy each example is: the two models' answers are correlated through it
    ids = [e.id for e in suite.examples]
    for model, skill in (("cand", 0.62), ("prod", 0.60)):
        cfg = project.model(model)
        fp = adapters.get(cfg.adapter).fingerprint(cfg)
        run_id = hash_obj("bench-gate", model)[:32]
        passed = truth < skill + rng.normal(0, 0.05, n)
        similarity = np.clip(passed * 0.7 + rng.random(n) * 0.3, 0, 1)
        errors = rng.random(n) < 0.002
        latency = rng.lognormal(4.5, 0.4, n)
        now = st.utcnow()
        results = [{"run_id": run_id, "example_id": i, "output_key": hash_obj(model, i),
                    "result_key": hash_obj(run_id, i), "output": None if errors[k] else "a", "details": "{}",
                    "score": float(passed[k]), "passed": None if errors[k] else bool(passed[k]), "reason": None,
                    "latency_ms": float(latency[k]), "prompt_tokens": 3, "completion_tokens": 1,
                    "error": "timeout" if errors[k] else None, "cached": False, "created_at": now}
                   for k, i in enumerate(ids)]
        scores = [{"run_id": run_id, "example_id": i, "metric": metric, "value": float(v[k]),
                   "passed": bool(v[k] >= 1), "reason": None, "counts": None}
                  for metric, v in (("exact_match", passed), ("similarity", similarity))
                  for k, i in enumerate(ids) if not errors[k]]
        with store.write() as con:
            st.register_model(con, name=model, fingerprint=fp, adapter=cfg.adapter, uri=None, role=cfg.role,
                              version=None, settings={})
            st.register_suite(con, name=SUITE, content_hash=suite.content_hash, kind=suite.kind, task=suite.task,
                              spec=suite.spec.model_dump(), path=str(suite.path),
                              examples=[{**e.as_record(), "hash": e.hash, "line": e.line} for e in suite.examples])
            st.start_run(con, run_id=run_id, model=model, fingerprint=fp, suite=SUITE, suite_hash=suite.content_hash,
                         suite_kind=suite.kind, stage="post-finetune", config={}, code_version="bench", n_examples=n)
            st.insert_results(con, results, scores)
            finish_run(con, run_id, "completed", float(latency.sum() / 1000))  # as a real run: with its summary


def _parts(root: Path) -> tuple[float, float]:
    """The gate's two parts, timed in this process: what ``tollgate gate`` does between start-up and print."""
    from harness.cli_gate import current_versions
    from harness.gates import evaluate_gate
    from harness.project import load_project
    from harness.store import Store

    project = load_project(root / "tollgate.yaml")
    store, kinds = Store(project.store_path), {SUITE: "heldout"}
    load_s, current = timed(lambda: current_versions(project, ["cand", "prod"]))

    def judge() -> object:
        with store.read() as con:
            return evaluate_gate(con, candidate="cand", reference="prod", policy=project.gate, suite_kinds=kinds,
                                 current=current)

    gate_s, _ = timed(judge)
    return load_s, gate_s


if __name__ == "__main__":
    sys.exit(main())
