"""A repeated run (``--repeats k``): every example answered k times, each answer cached on its own.

One run, k answers per example. Repeat r asks with the model's settings and seed ``seed + r``
(:func:`harness.repeats.seeds_for`), so each (example, repeat) has its own output key and is a work
item of its own: answers are stored in ``samples`` chunk by chunk (one transaction each, like the
results of an ordinary run), and on a rerun every answer already stored under its key, by any run,
is scored again instead of regenerated. That makes a killed run resume and a larger k compute only
the new repeats. As soon as an example has all k answers, its one ``results`` row and its scores
(:func:`harness.repeats.aggregate`) are committed with them.
"""

from __future__ import annotations

import sys
import time
import uuid
from dataclasses import replace
from typing import Any

from harness import store as st
from harness.executors import Executor
from harness.hashing import hash_obj
from harness.repeats import aggregate, sample_row, seeds_for
from harness.report import finish_run
from harness.runner import (
    ModelHandle,
    RunOutcome,
    _Item,
    _source_outputs,
    _work,
    plan,
    score,
    settings_for,
    stored_generation,
)
from harness.suites import Suite
from harness.version import code_version

Scored = tuple[dict[str, Any], list[dict[str, Any]]]


class _Book:
    """The answers of this run, example by example, until each has all k and becomes a result."""

    def __init__(self, items: list[list[_Item]], seeds: list[int], run_id: str) -> None:
        self.items, self.seeds, self.run_id = items, seeds, run_id
        self.k = len(seeds)
        self.index = {its[0].example.id: i for i, its in enumerate(items)}
        self.answers: dict[str, dict[int, Scored]] = {}

    def keys(self, i: int) -> tuple[str, str]:
        """(output key, result key) of example i as a whole: its k answers' keys, so the same k,
        seeds, checks and data serve it whole from the result cache."""
        its = self.items[i]
        return hash_obj("repeats", [it.output_key for it in its]), hash_obj("repeats", [it.result_key for it in its])

    def add(self, r: int, scored: list[Scored]) -> tuple[list[dict[str, Any]], list[dict[str, Any]],
                                                          list[dict[str, Any]]]:
        """Record answers of repeat r; returns (sample rows, result rows, score rows) to commit."""
        samples, results, scores = [], [], []
        for row, sc in scored:
            ex_id = row["example_id"]
            samples.append({**sample_row(row, sc, r, self.seeds[r]), "run_id": self.run_id})
            mine = self.answers.setdefault(ex_id, {})
            mine[r] = (row, sc)
            if len(mine) == self.k:
                okey, rkey = self.keys(self.index[ex_id])
                res, res_scores = aggregate([mine[j] for j in range(self.k)], self.seeds,
                                            output_key=okey, result_key=rkey)
                results.append({**res, "run_id": self.run_id})
                scores += [{**s, "run_id": self.run_id} for s in res_scores]
                del self.answers[ex_id]
        return samples, results, scores


def _commit(store: st.Store, samples: list[dict[str, Any]], results: list[dict[str, Any]],
            scores: list[dict[str, Any]]) -> None:
    with store.write() as con:
        st.insert_samples(con, samples)
        st.insert_results(con, results, scores)


def run_repeated(handle: ModelHandle, suite: Suite, store: st.Store, stage: str, show_progress: bool,
                 commit_every: int, executor: Executor, k: int) -> RunOutcome:
    from tqdm import tqdm

    cfg = handle.cfg
    t0 = time.perf_counter()
    base = settings_for(cfg, suite)
    source_base = settings_for(cfg, suite.source or suite)
    seeds = seeds_for(base.seed, k)
    settings = [replace(base, seed=s) for s in seeds]
    by_repeat = [plan(suite, handle.fingerprint, settings[r], replace(source_base, seed=seeds[r])) for r in range(k)]
    items = [list(its) for its in zip(*by_repeat, strict=True)]  # items[i][r]: example i, repeat r
    run_id = uuid.uuid4().hex
    book = _Book(items, seeds, run_id)
    config = {"generation": base.as_dict(), "checks": suite.check_config(), "task": suite.task,
              "prompt": suite.spec.prompt, "adapter": cfg.adapter, "repeats": k, "seeds": seeds}
    with store.write() as con:
        st.register_suite(con, name=suite.name, content_hash=suite.content_hash, kind=suite.kind, task=suite.task,
                          spec=suite.spec.model_dump(), path=str(suite.path),
                          examples=[{**e.as_record(), "hash": e.hash, "line": e.line} for e in suite.examples])
        st.start_run(con, run_id=run_id, model=cfg.name, fingerprint=handle.fingerprint, suite=suite.name,
                     suite_hash=suite.content_hash, suite_kind=suite.kind, stage=stage, config=config,
                     code_version=code_version(), n_examples=len(items))
        served = st.copy_cached(con, run_id, [(its[0].example.id, book.keys(i)[1]) for i, its in enumerate(items)])
    pending = [(i, r) for i, its in enumerate(items) if its[0].example.id not in served for r in range(k)]
    bar = tqdm(total=len(items) * k, initial=len(served) * k, unit="answer", desc=f"{cfg.name} · {suite.name} ×{k}",
               file=sys.stderr, disable=not show_progress, dynamic_ncols=True, smoothing=0.1)
    status, n_errors, n_fresh = "failed", 0, set[str]()
    try:
        pending = _rescore_stored(suite, store, book, pending, bar)
        n_fresh = {items[i][0].example.id for i, _ in pending}
        waves = _waves(suite, items, pending, settings, commit_every)
        for (r, chunk), gens in executor.answer(handle, waves, bar.update):
            fresh = {it.output_key: g.text for it, g in zip(chunk, gens, strict=True) if g.error is None}
            sources = _source_outputs(store, chunk, fresh)
            scored = [score(suite, it, gen, sources.get(it.source_key)) for it, gen in zip(chunk, gens, strict=True)]
            samples, results, scores = book.add(r, scored)
            n_errors += sum(res["error"] is not None for res in results)
            _commit(store, samples, results, scores)
        status = "completed"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        bar.close()
        with store.write() as con:
            finish_run(con, run_id, status, time.perf_counter() - t0)
    return RunOutcome(run_id=run_id, model=cfg.name, suite=suite.name, n_examples=len(items),
                      n_cached=len(items) - len(n_fresh), n_computed=len(n_fresh), n_errors=n_errors,
                      duration_s=time.perf_counter() - t0, status=status, repeats=k)


def _waves(suite: Suite, items: list[list[_Item]], pending: list[tuple[int, int]], settings: list[Any],
           commit_every: int) -> list[list[tuple[tuple[int, list[_Item]], Any]]]:
    """Chunks of at most ``commit_every`` answers that share one repeat (one seed, one request
    settings), block of examples by block, so examples complete (and get their result) early.
    Behavioural examples come in a second wave, once the answers they compare with are stored."""
    out: list[list[tuple[tuple[int, list[_Item]], Any]]] = []
    for behavioural in (False, True):
        todo = [(i, r) for i, r in pending if (items[i][r].source_key is not None) == behavioural]
        examples = list(dict.fromkeys(i for i, _ in todo))
        wave = []
        for a in range(0, len(examples), commit_every):
            block = set(examples[a:a + commit_every])
            for r in range(len(settings)):
                chunk = [items[i][rr] for i, rr in todo if rr == r and i in block]
                if chunk:
                    wave.append(((r, chunk), _work(suite, chunk, settings[r])))
        out.append(wave)
    return out


def _rescore_stored(suite: Suite, store: st.Store, book: _Book, pending: list[tuple[int, int]],
                    bar: Any) -> list[tuple[int, int]]:
    """Answers already stored under their key (by any run) are scored again, not regenerated;
    returns the (example, repeat) pairs left for the model."""
    if not pending:
        return pending
    with store.read() as con:
        known = st.cached_outputs(con, [book.items[i][r].output_key for i, r in pending])
    hits = [(i, r) for i, r in pending if book.items[i][r].output_key in known]
    if not hits:
        return pending
    sources = _source_outputs(store, [book.items[i][r] for i, r in hits], {})
    done: set[tuple[int, int]] = set()
    samples: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    scores: list[dict[str, Any]] = []
    for r in range(book.k):
        scored = []
        for i, rr in hits:
            it = book.items[i][rr]
            if rr != r or (it.source_key is not None and sources.get(it.source_key) is None):
                continue
            row, sc = score(suite, it, stored_generation(known[it.output_key]), sources.get(it.source_key))
            row["cached"] = True
            scored.append((row, sc))
            done.add((i, r))
        a, b, c = book.add(r, scored)
        samples += a
        results += b
        scores += c
    _commit(store, samples, results, scores)
    bar.update(len(done))
    return [p for p in pending if p not in done]
