"""General benchmarks through lm-eval (EleutherAI's lm-evaluation-harness), stored like any suite.

A suite of kind ``general`` or ``baseline`` may name lm-eval tasks instead of examples:

    kind: general
    lm_eval: {tasks: [claims_cloze], include_path: tasks}

Tollgate checks the task files offline (local data only), hands the model it already loads to
lm-eval's own ``simple_evaluate`` (``log_samples``), and stores every sample as an example with
its per-sample metrics, so paired statistics and the forgetting flag work on them unchanged.
lm-eval is imported only here, and only when such a suite runs: it takes seconds to import.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from harness import store as st
from harness.errors import TollgateInputError
from harness.hashing import hash_obj, hash_tree
from harness.report import finish_run

LOCAL_BUILDERS = {"json", "csv", "parquet", "text", "arrow"}


class _AnyTagLoader(yaml.SafeLoader):
    """lm-eval task files may use ``!function`` tags; reading them needs no code to run."""


_AnyTagLoader.add_multi_constructor("!", lambda loader, suffix, node: f"!{suffix}")


def task_files(include_path: Path) -> dict[str, tuple[Path, dict[str, Any]]]:
    """task name -> (YAML file, parsed config) for every task file under ``include_path``."""
    out: dict[str, tuple[Path, dict[str, Any]]] = {}
    for p in sorted(include_path.rglob("*.yaml")):
        try:
            cfg = yaml.load(p.read_text(encoding="utf-8"), Loader=_AnyTagLoader)
        except yaml.YAMLError as exc:
            raise TollgateInputError(f"is not valid YAML: {exc}.", file=p) from None
        if isinstance(cfg, dict) and isinstance(cfg.get("task"), str):
            out[cfg["task"]] = (p, cfg)
    return out


def check_tasks(suite_yaml: Path, include_path: Path, tasks: list[str]) -> None:
    """Every task exists and reads local files only; a hub download is refused with the fix."""
    if not include_path.is_dir():
        raise TollgateInputError(f"include_path {include_path} is not a folder.", file=suite_yaml,
                                 field="lm_eval.include_path")
    found = task_files(include_path)
    folders = {found[n][0].parent for n in tasks if n in found}
    if len(folders) > 1:
        raise TollgateInputError("the tasks of one suite must live in one folder (their data paths are relative to "
                                 "it); make one suite per folder.", file=suite_yaml, field="lm_eval.tasks")
    for name in tasks:
        if name not in found:
            raise TollgateInputError(f"no lm-eval task '{name}' under {include_path} (found: "
                                     f"{', '.join(sorted(found)) or 'none'}).", file=suite_yaml, field="lm_eval.tasks")
        path, cfg = found[name]
        builder = cfg.get("dataset_path")
        if builder not in LOCAL_BUILDERS:
            raise TollgateInputError(
                f"task '{name}' loads dataset '{builder}' from the Hugging Face hub, which cannot be downloaded "
                f"here.", file=path, field="dataset_path",
                hint="Use local files: dataset_path: json with dataset_kwargs: {data_files: {test: data.jsonl}}.")
        files = (cfg.get("dataset_kwargs") or {}).get("data_files")
        names = files.values() if isinstance(files, dict) else ([files] if isinstance(files, str) else files or [])
        for f in names:
            for one in ([f] if isinstance(f, str) else f):
                target = (path.parent / one).resolve()
                if not target.is_relative_to(include_path):
                    raise TollgateInputError(f"data file {one} of task '{name}' is outside the include_path, so a "
                                             f"change to it would not be noticed; move it inside.", file=path,
                                             field="dataset_kwargs.data_files")
                if not target.is_file():
                    raise TollgateInputError(f"data file {one} of task '{name}' not found (paths are relative to "
                                             f"the task's folder).", file=path, field="dataset_kwargs.data_files")


def content_files_hash(include_path: Path) -> dict[str, str]:
    """The task files and their data, and the lm-eval version that reads them: the suite's identity."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        lm_eval_version = version("lm_eval")
    except PackageNotFoundError:
        lm_eval_version = "not installed"
    return {**hash_tree(include_path), "lm_eval": lm_eval_version}


@contextlib.contextmanager
def _cwd(path: Path) -> Iterator[None]:
    old = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def _lm(handle: Any, batch_size: int) -> Any:
    """lm-eval's own model class around the model Tollgate loads (same weights, same tokenizer)."""
    from harness.adapters.hf_causal import HFCausalModel

    cfg = handle.cfg
    if cfg.adapter == "hf-causal":
        from lm_eval.models.huggingface import HFLM

        model: HFCausalModel = handle.get()
        return HFLM(pretrained=model.model, tokenizer=model.tokenizer, batch_size=batch_size, device="cpu",
                    max_length=model.max_length)
    if cfg.adapter == "openai":
        from lm_eval.api.registry import get_model

        o = cfg.options
        kind = "local-chat-completions" if o.api == "chat" else "local-completions"
        endpoint = cfg.url.rstrip("/") + ("/chat/completions" if o.api == "chat" else "/completions")
        return get_model(kind).create_from_arg_obj({"base_url": endpoint, "model": o.model,
                                                    "num_concurrent": o.concurrency, "max_retries": o.max_retries,
                                                    "tokenized_requests": False})
    raise TollgateInputError(f"lm-eval suites run on hf-causal or openai models; '{cfg.name}' uses '{cfg.adapter}'.",
                             field=f"models.{cfg.name}.adapter")


def evaluate_tasks(handle: Any, suite: Any) -> dict[str, Any]:
    """Run lm-eval on the suite's tasks; any failure of lm-eval becomes one clear input error."""
    spec = suite.spec.lm_eval
    try:
        from lm_eval import simple_evaluate
        from lm_eval.tasks import TaskManager
    except ImportError as exc:
        raise TollgateInputError(f"lm-eval is not installed ({exc}); install it with: pip install lm-eval",
                                 file=suite.path / "suite.yaml", field="lm_eval") from None
    include = (suite.path / spec.include_path).resolve()
    lm = _lm(handle, spec.batch_size)
    found = task_files(include)
    task_dir = found[spec.tasks[0]][0].parent
    try:
        with _cwd(task_dir):
            manager = TaskManager(include_path=str(include), include_defaults=False)
            return simple_evaluate(model=lm, tasks=list(spec.tasks), task_manager=manager,
                                   num_fewshot=spec.num_fewshot, limit=spec.limit, log_samples=True,
                                   bootstrap_iters=0, random_seed=0, numpy_random_seed=1234,
                                   torch_random_seed=1234, fewshot_random_seed=1234)
    except TollgateInputError:
        raise
    except Exception as exc:  # lm-eval raises many kinds; the user needs the first line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TollgateInputError(f"lm-eval failed on {', '.join(spec.tasks)}: {type(exc).__name__}: {first}",
                                 file=suite.path / "suite.yaml", field="lm_eval") from None


def samples_to_rows(res: dict[str, Any], primary: str | None) -> tuple[list[dict], list[dict], list[dict]]:
    """lm-eval's logged samples as Tollgate examples, result rows and score rows.

    lm-eval logs one sample per (filter, document); a filter other than ``none`` joins the id.
    """
    examples, rows, scores = [], [], []
    now = st.utcnow()
    for task, samples in sorted(res.get("samples", {}).items()):
        for s in samples:
            filt = s.get("filter")
            ex_id = f"{task}/{s['doc_id']}" + (f"/{filt}" if filt not in (None, "none") else "")
            metrics = [m for m in s.get("metrics", []) if isinstance(s.get(m), (int, float))]
            if primary is not None and primary not in metrics:
                raise TollgateInputError(f"task '{task}' reports no metric '{primary}' (it reports: "
                                         f"{', '.join(metrics) or 'none'}).", field="lm_eval.metric")
            main = primary if primary in metrics else (metrics[0] if metrics else None)
            resp = s.get("filtered_resps")
            if resp and isinstance(resp[0], (list, tuple)):  # log-likelihood answers: pick the best option
                lls = [float(r[0]) for r in resp]
                output = str(max(range(len(lls)), key=lambda i: (lls[i], -i)))
            else:
                output = str(resp[0]) if resp else ""
            examples.append({"id": ex_id, "input": s.get("doc"), "expected": s.get("target"), "tags": [task],
                             "hash": s.get("doc_hash") or hash_obj(s.get("doc")), "line": s["doc_id"] + 1})
            value = float(s[main]) if main else None
            rows.append({"example_id": ex_id, "output_key": hash_obj("lm-eval", task, s.get("prompt_hash")),
                         "result_key": "", "output": output,
                         "details": json.dumps({"task": task, "arguments": s.get("arguments"),
                                                "filtered_resps": resp}, default=str),
                         "score": value, "passed": value is not None and value >= 1.0, "reason": None,
                         "latency_ms": None, "prompt_tokens": None, "completion_tokens": None, "error": None,
                         "cached": False, "created_at": now})
            for m in metrics:
                scores.append({"example_id": ex_id, "metric": m, "value": float(s[m]), "passed": float(s[m]) >= 1.0,
                               "reason": None, "counts": None})
    return examples, rows, scores


def run_lm_eval_suite(handle: Any, suite: Any, store: st.Store, stage: str) -> Any:
    """Evaluate, or serve from the store when this model already ran this exact suite version."""
    from harness.runner import RunOutcome
    from harness.version import code_version

    t0 = time.perf_counter()
    cfg = handle.cfg
    run_id = uuid.uuid4().hex
    with store.read() as con:
        prev = con.execute("""SELECT run_id FROM runs WHERE model_fingerprint = ? AND suite_hash = ?
                              AND status = 'completed' ORDER BY started_at DESC LIMIT 1""",
                           [handle.fingerprint, suite.content_hash]).fetchone()
        keys = con.execute("SELECT example_id, result_key FROM results WHERE run_id = ?",
                           [prev[0]]).fetchall() if prev else []
    if prev:
        with store.write() as con:
            config = json.loads(con.execute("SELECT config FROM runs WHERE run_id = ?", [prev[0]]).fetchone()[0])
            st.start_run(con, run_id=run_id, model=cfg.name, fingerprint=handle.fingerprint, suite=suite.name,
                         suite_hash=suite.content_hash, suite_kind=suite.kind, stage=stage, config=config,
                         code_version=code_version(), n_examples=len(keys))
            st.copy_cached(con, run_id, keys)
            finish_run(con, run_id, "completed", time.perf_counter() - t0)
        return RunOutcome(run_id, cfg.name, suite.name, len(keys), len(keys), 0, 0, time.perf_counter() - t0,
                          "completed")
    res = evaluate_tasks(handle, suite)
    examples, rows, scores = samples_to_rows(res, suite.spec.lm_eval.metric)
    for r in rows:
        r["run_id"] = run_id
        r["result_key"] = hash_obj(handle.fingerprint, suite.content_hash, r["example_id"])
    for s in scores:
        s["run_id"] = run_id
    import lm_eval

    config = {"lm_eval": {"version": lm_eval.__version__, "tasks": res.get("configs"), "versions": res.get("versions"),
                          "n_shot": res.get("n-shot"), "results": res.get("results")}, "adapter": cfg.adapter}
    with store.write() as con:
        st.register_suite(con, name=suite.name, content_hash=suite.content_hash, kind=suite.kind, task="lm-eval",
                          spec=suite.spec.model_dump(), path=str(suite.path), examples=examples)
        st.start_run(con, run_id=run_id, model=cfg.name, fingerprint=handle.fingerprint, suite=suite.name,
                     suite_hash=suite.content_hash, suite_kind=suite.kind, stage=stage,
                     config=json.loads(json.dumps(config, default=str)), code_version=code_version(),
                     n_examples=len(rows))
        st.insert_results(con, rows, scores)
        finish_run(con, run_id, "completed", time.perf_counter() - t0)
    return RunOutcome(run_id, cfg.name, suite.name, len(rows), 0, len(rows), 0, time.perf_counter() - t0, "completed")
