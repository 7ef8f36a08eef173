"""Evaluating a model on suites: cache first, then the model in batches, each batch committed.

The cache key of an example is (model fingerprint, the exact request, generation settings) for
the answer, plus (expected value, check configuration) for its score. Whatever has a stored
answer is never recomputed: a killed run re-run resumes where its last committed batch ended,
and a change of checks re-scores stored answers without loading the model at all. A run with
``--repeats k`` answers each example k times (:mod:`harness.runner_repeats`).
"""

from __future__ import annotations

import json
import signal
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from harness import store as st
from harness.adapters import adapters
from harness.adapters.base import Generation, GenerationSettings, Model, ModelConfig
from harness.checks import CheckResult, Sample
from harness.errors import TollgateInputError
from harness.examples import Example
from harness.executors import Executor, LocalExecutor, Work
from harness.hashing import hash_obj
from harness.project import Project
from harness.repeats import choose_repeats
from harness.report import finish_run
from harness.suites import Suite
from harness.version import code_version

DEFAULT_COMMIT_EVERY = 32


@dataclass
class RunOutcome:
    run_id: str
    model: str
    suite: str
    n_examples: int
    n_cached: int
    n_computed: int
    n_errors: int
    duration_s: float
    status: str
    repeats: int = 1  # answers per example


@dataclass
class _Item:
    example: Example
    output_key: str
    result_key: str
    prompt: str
    choices: list[str] | None = None
    target: int | None = None
    source_key: str | None = None  # output key of the example a behavioural test compares with


def settings_for(model: ModelConfig, suite: Suite) -> GenerationSettings:
    """The model's generation settings with the suite's overrides (a suite may need a stop or a length)."""
    g = model.generation
    o = suite.spec.generation
    return replace(g, max_new_tokens=o.max_new_tokens or g.max_new_tokens,
                   stop=tuple(o.stop) if o.stop is not None else g.stop)


def output_key(suite: Suite, ex: Example, fingerprint: str, settings: GenerationSettings,
               prompt: str | None = None) -> str:
    """Same model, same request, same settings: the same answer, whichever suite asked."""
    prompt = suite.render(ex) if prompt is None else prompt
    if suite.task == "choice":
        return hash_obj("choice", fingerprint, prompt, suite.choices_for(ex), suite.spec.target_delimiter)
    return hash_obj("generate", fingerprint, prompt, settings.as_dict())


def plan(suite: Suite, fingerprint: str, settings: GenerationSettings,
         source_settings: GenerationSettings | None = None) -> list[_Item]:
    """Render every example into its request and cache keys.

    A behavioural example's result also depends on its source's answer, so the source's output
    key joins its result key.
    """
    items = []
    checks = suite.check_config()
    source = suite.source or suite
    by_id = {e.id: e for e in source.examples} if suite.has_behaviour else {}
    for ex in suite.examples:
        prompt = suite.render(ex)  # rendered once: it is both the request and part of the cache key
        okey = output_key(suite, ex, fingerprint, settings, prompt)
        skey = None
        if ex.source_id is not None:
            skey = output_key(source, by_id[ex.source_id], fingerprint, source_settings or settings)
        if suite.task == "choice":
            target = suite.target_index(ex)
            items.append(_Item(ex, okey, hash_obj(okey, ex.hash, target, checks, skey), prompt,
                               suite.choices_for(ex), target, skey))
        else:
            rkey = hash_obj(okey, ex.hash, checks) if skey is None else hash_obj(okey, ex.hash, checks, skey)
            items.append(_Item(ex, okey, rkey, prompt, source_key=skey))
    return items


def score(suite: Suite, item: _Item, gen: Generation,
          source_output: str | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run every check on one answer: the result row and one score row per metric.

    A behavioural example is also compared with its source's answer (``source_output``); with
    no expected value, that comparison is its only check.
    """
    details = dict(gen.details)
    if item.choices is not None:
        details.update(choices=item.choices, target=item.target)
    ex = item.example
    if item.source_key is not None:
        details["behaviour"] = {"source": ex.source_id, "source_output": source_output,
                                "type": "invariance" if ex.invariant_to else "directional"}
    row: dict[str, Any] = {
        "example_id": ex.id, "output_key": item.output_key, "result_key": item.result_key,
        "output": gen.text, "details": json.dumps(details, ensure_ascii=False), "latency_ms": gen.latency_ms,
        "prompt_tokens": gen.prompt_tokens, "completion_tokens": gen.completion_tokens, "error": gen.error,
        "cached": False, "created_at": st.utcnow(), "score": None, "passed": None, "reason": None,
    }
    if gen.error is None and item.source_key is not None and source_output is None:
        row["error"] = (f"source example '{ex.source_id}' has no stored answer from this model to compare with "
                        f"(it errored, or its suite has not run); the next run retries it")
    if row["error"] is not None:
        return row, []
    sample = Sample(output=gen.text or "", expected=ex.expected, input=ex.input, example_id=ex.id, details=details)
    named: list[tuple[str, CheckResult]] = []
    seen: dict[str, int] = {}
    if item.source_key is not None:
        from harness.behaviour import behaviour_result

        named.append(behaviour_result(ex, gen.text or "", source_output or ""))
    if item.source_key is None or ex.expected is not None:
        for spec, fn in zip(suite.check_specs, suite.checks, strict=True):
            seen[spec.name] = seen.get(spec.name, 0) + 1
            named.append((spec.name if seen[spec.name] == 1 else f"{spec.name}#{seen[spec.name]}", fn(sample)))
    scores: list[dict[str, Any]] = []
    for metric, res in named:
        scores.append({"example_id": ex.id, "metric": metric, "value": float(res.score),
                       "passed": bool(res.passed), "reason": res.reason or None,
                       "counts": json.dumps(res.counts) if res.counts else None})
        for sub, value in res.metrics.items():
            scores.append({"example_id": ex.id, "metric": f"{metric}.{sub}", "value": float(value),
                           "passed": value >= 1.0, "reason": None, "counts": None})
    results = [r for _, r in named]
    main = results[1] if item.source_key is not None and len(results) > 1 else results[0]
    row["score"] = main.score
    row["passed"] = all(r.passed for r in results)
    if item.source_key is None:
        row["reason"] = next((r.reason for r in results if not r.passed and r.reason), None)
    else:  # say which comparison failed: the one with the source, or the one with the label
        row["reason"] = "; ".join(f"{m}: {r.reason}" for m, r in named if not r.passed and r.reason) or None
    return row, scores


def _work(suite: Suite, items: list[_Item], settings: GenerationSettings) -> Work:
    """A chunk's request to the model, as plain data any executor (here or a Ray actor) can answer."""
    choices = tuple(tuple(it.choices or ()) for it in items) if suite.task == "choice" else None
    return Work(suite.task, tuple(it.prompt for it in items), settings, choices, suite.spec.target_delimiter)


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM ends a run like Ctrl-C: the current batch is dropped, the run marked interrupted."""
    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        old = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


class ModelHandle:
    """Loads the model only when an example actually needs it."""

    def __init__(self, cfg: ModelConfig) -> None:
        self.cfg = cfg
        self.spec = adapters.get(cfg.adapter)
        self.fingerprint = self.spec.fingerprint(cfg)
        self._model: Model | None = None

    def get(self) -> Model:
        if self._model is None:
            self._model = self.spec.load(self.cfg)
        return self._model

    def close(self) -> None:
        if self._model is not None:
            self._model.close()


def check_capability(handle: ModelHandle, suite: Suite) -> None:
    if suite.task == "lm-eval":
        if handle.cfg.adapter not in ("hf-causal", "openai"):
            raise TollgateInputError(f"suite '{suite.name}' runs lm-eval tasks, which need an hf-causal or openai "
                                     f"model; '{handle.cfg.name}' uses '{handle.cfg.adapter}'.",
                                     file=suite.path / "suite.yaml", field="lm_eval")
        return
    need = "loglikelihood" if suite.task == "choice" else "generate"
    if need not in handle.spec.capabilities_of(handle.cfg):
        raise TollgateInputError(
            f"suite '{suite.name}' is a {suite.task} task, which needs {need}; adapter "
            f"'{handle.cfg.adapter}' of model '{handle.cfg.name}' does not provide it.",
            file=suite.path / "suite.yaml", field="task")


def default_stage(cfg: ModelConfig) -> str:
    return "pre-finetune" if cfg.role == "base" else "post-finetune"


def run_suites(project: Project, model_name: str, suites: list[Suite], store: st.Store, *,
               stage: str | None = None, show_progress: bool = True,
               commit_every: int = DEFAULT_COMMIT_EVERY, executor: Executor | None = None,
               repeats: int | None = None, temperature: float | None = None,
               named_suites: bool = False) -> list[RunOutcome]:
    """Evaluate one model on the given (already validated) suites; returns one outcome per suite.

    ``executor`` answers the chunks (default: here, one after another); whoever passes one closes it.
    ``repeats`` (``--repeats``) answers each example that many times, before the suite's and the
    model's own ``repeats:`` (:func:`harness.repeats.choose_repeats`; ``named_suites``: the user
    named the suites, so a deterministic one among them is refused rather than run once).
    ``temperature`` overrides the model's sampling temperature for this run (and so its cache keys).
    """
    if commit_every < 1:
        raise TollgateInputError(f"must be at least 1, got {commit_every}.", field="--commit-every")
    cfg = project.model(model_name)
    if temperature is not None:
        if not 0.0 <= temperature <= 5.0:
            raise TollgateInputError(f"must be from 0 to 5, got {temperature:g}.", field="--temperature")
        cfg = replace(cfg, generation=replace(cfg.generation, temperature=float(temperature)))
    if any(s.spec.source_suite not in (None, s.name) and s.has_behaviour for s in suites):  # sources first
        from harness.suites import link_sources, suite_headers

        suites = link_sources(suites, suite_headers(project.suite_dirs))
    handle = ModelHandle(cfg)
    for suite in suites:
        check_capability(handle, suite)
    per_suite, notes = choose_repeats(suites, cli=repeats, model=project.repeats.get(model_name), named=named_suites,
                                      temperature=cfg.generation.temperature)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    stage = stage or default_stage(cfg)
    outcomes = []
    with store.write() as con:
        st.mark_dead_runs(con)
        st.register_model(con, name=cfg.name, fingerprint=handle.fingerprint, adapter=cfg.adapter,
                          uri=str(cfg.path or cfg.url or cfg.options.model_dump().get("callable", "")),
                          role=cfg.role, version=cfg.version, settings=cfg.generation.as_dict())
    try:
        with _sigterm_as_interrupt():
            for suite in suites:
                if suite.task == "lm-eval":
                    from harness.lmeval_bridge import run_lm_eval_suite

                    outcomes.append(run_lm_eval_suite(handle, suite, store, stage))
                elif per_suite[suite.name] > 1:
                    from harness.runner_repeats import run_repeated

                    outcomes.append(run_repeated(handle, suite, store, stage, show_progress, commit_every,
                                                 executor or LocalExecutor(), per_suite[suite.name]))
                else:
                    outcomes.append(_run_one(handle, suite, store, stage, show_progress, commit_every,
                                             executor or LocalExecutor()))
    finally:
        handle.close()
    return outcomes


def _run_one(handle: ModelHandle, suite: Suite, store: st.Store, stage: str, show_progress: bool,
             commit_every: int, executor: Executor) -> RunOutcome:
    from tqdm import tqdm

    cfg = handle.cfg
    t0 = time.perf_counter()
    settings = settings_for(cfg, suite)
    items = plan(suite, handle.fingerprint, settings, settings_for(cfg, suite.source or suite))
    run_id = uuid.uuid4().hex
    config = {"generation": settings.as_dict(), "checks": suite.check_config(), "task": suite.task,
              "prompt": suite.spec.prompt, "adapter": cfg.adapter}
    with store.write() as con:
        st.register_suite(con, name=suite.name, content_hash=suite.content_hash, kind=suite.kind, task=suite.task,
                          spec=suite.spec.model_dump(), path=str(suite.path),
                          examples=[{**e.as_record(), "hash": e.hash, "line": e.line} for e in suite.examples])
        st.start_run(con, run_id=run_id, model=cfg.name, fingerprint=handle.fingerprint, suite=suite.name,
                     suite_hash=suite.content_hash, suite_kind=suite.kind, stage=stage, config=config,
                     code_version=code_version(), n_examples=len(items))
        served = st.copy_cached(con, run_id, [(it.example.id, it.result_key) for it in items])
    # behavioural examples last: their sources (in this suite) are answered and committed first
    pending = sorted((it for it in items if it.example.id not in served), key=lambda it: it.source_key is not None)
    n_errors = 0
    bar = tqdm(total=len(items), initial=len(served), unit="ex", desc=f"{cfg.name} · {suite.name}",
               file=sys.stderr, disable=not show_progress, dynamic_ncols=True, smoothing=0.1)
    status = "failed"
    try:
        pending = _rescore_stored(suite, store, run_id, pending, bar)
        # two waves: every source chunk is answered and committed before a behavioural one is scored
        plain = [it for it in pending if it.source_key is None]
        waves = [[(part[i:i + commit_every], _work(suite, part[i:i + commit_every], settings))
                  for i in range(0, len(part), commit_every)] for part in (plain, pending[len(plain):])]
        for chunk, gens in executor.answer(handle, waves, bar.update):
            fresh = {it.output_key: g.text for it, g in zip(chunk, gens, strict=True) if g.error is None}
            sources = _source_outputs(store, chunk, fresh)
            rows, scores = [], []
            for it, gen in zip(chunk, gens, strict=True):
                row, sc = score(suite, it, gen, sources.get(it.source_key))
                n_errors += row["error"] is not None
                rows.append(row)
                scores.extend(sc)
            _commit(store, run_id, rows, scores)
        status = "completed"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        bar.close()
        with store.write() as con:
            finish_run(con, run_id, status, time.perf_counter() - t0)
    return RunOutcome(run_id=run_id, model=cfg.name, suite=suite.name, n_examples=len(items),
                      n_cached=len(items) - len(pending), n_computed=len(pending), n_errors=n_errors,
                      duration_s=time.perf_counter() - t0, status=status)


def _rescore_stored(suite: Suite, store: st.Store, run_id: str, pending: list[_Item], bar: Any) -> list[_Item]:
    """Answers stored under other checks are scored again without the model; returns what is left."""
    if not pending:
        return pending
    with store.read() as con:
        known = st.cached_outputs(con, [it.output_key for it in pending])
    if not known:
        return pending
    rows, scores = [], []
    sources = _source_outputs(store, [it for it in pending if it.output_key in known], {})
    for it in pending:
        if it.output_key in known and (it.source_key is None or sources.get(it.source_key) is not None):
            row, sc = score(suite, it, stored_generation(known[it.output_key]), sources.get(it.source_key))
            row["cached"] = True
            rows.append(row)
            scores.extend(sc)
    _commit(store, run_id, rows, scores)
    bar.update(len(rows))
    done = {r["example_id"] for r in rows}
    return [it for it in pending if it.example.id not in done]


def stored_generation(k: dict[str, Any]) -> Generation:
    """A stored answer (``store.cached_outputs``) as the model's answer again, without what scoring added."""
    return Generation(k["output"], k["latency_ms"] or 0.0, k["prompt_tokens"], k["completion_tokens"],
                      details={x: v for x, v in k["details"].items()
                               if x not in ("choices", "target", "behaviour", "repeats")})


def _source_outputs(store: st.Store, items: list[_Item], fresh: dict[str, str | None]) -> dict[str, str | None]:
    """Answers of the examples these behavioural items compare with: just generated, or stored."""
    keys = {it.source_key for it in items if it.source_key is not None}
    out = {k: fresh[k] for k in keys if k in fresh}
    missing = [k for k in keys if k not in out]
    if missing:
        with store.read() as con:
            out.update({k: v["output"] for k, v in st.cached_outputs(con, missing).items()})
    return out


def _commit(store: st.Store, run_id: str, rows: list[dict[str, Any]], scores: list[dict[str, Any]]) -> None:
    for r in rows:
        r["run_id"] = run_id
    for s in scores:
        s["run_id"] = run_id
    with store.write() as con:
        st.insert_results(con, rows, scores)
