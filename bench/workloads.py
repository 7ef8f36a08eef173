"""The data every benchmark runs on, made by the project's own code and kept in the cache folder:
a ~5M-parameter GPT-2 with a BPE tokenizer trained on the demo's claim documents, suites made from
those documents, throw-away projects, stores filled through the store API, and synthetic traffic.

Everything is seeded, so the same cache folder always holds the same bytes; a workload is built
once and reused while its parameters stay the same (their hash names the folder).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import random
import shutil
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from harness.hashing import hash_obj

SEED = 20261127
# A GPT-2 of about 5M parameters (3.9M outside the embeddings) and a tiny one for --smoke.
GPT2_FULL = {"n_embd": 256, "n_layer": 5, "n_head": 8, "n_positions": 1024, "vocab_size": 3000}
GPT2_SMOKE = {"n_embd": 32, "n_layer": 1, "n_head": 2, "n_positions": 512, "vocab_size": 400}


# -- the model -------------------------------------------------------------------------------------
def claim_examples(n: int, seed: int = SEED) -> list[dict[str, Any]]:
    """``n`` labelled claim documents from the demo's generator."""
    from demo.data import generate

    return generate(seed=seed, n_train=n, n_validation=1, n_heldout=1, n_train_sample=1, edge_per_kind=1).train


def gpt2(cache: Path, *, smoke: bool) -> Path:
    """A randomly initialised GPT-2 saved as safetensors beside its tokenizer; built once per config.

    Its weights are untrained on purpose: throughput does not depend on what a model knows, and
    both harnesses must still agree on every score it gives.
    """
    cfg = GPT2_SMOKE if smoke else GPT2_FULL
    out = cache / f"gpt2-{hash_obj(cfg, SEED)[:10]}"
    with _built_once(out):
        if not (out / "model.safetensors").exists():
            _build_gpt2(out, cfg, smoke)
    return out


@contextlib.contextmanager
def _built_once(target: Path) -> Iterator[None]:
    """Benchmarks run side by side (the smoke test) build a shared workload once: the others wait."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.with_name(target.name + ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _build_gpt2(out: Path, cfg: dict[str, int], smoke: bool) -> None:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from demo.train import train_tokenizer

    docs = [e["input"]["document"] for e in claim_examples(200 if smoke else 2000, seed=SEED + 1)]
    tok = train_tokenizer(docs, cfg["vocab_size"])
    torch.manual_seed(SEED)
    model = GPT2LMHeadModel(GPT2Config(
        vocab_size=len(tok), n_embd=cfg["n_embd"], n_layer=cfg["n_layer"], n_head=cfg["n_head"],
        n_positions=cfg["n_positions"], bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id))
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    (tmp / "bench.json").write_text(json.dumps({"config": cfg, "seed": SEED,
                                                "parameters": sum(p.numel() for p in model.parameters())}))
    tmp.replace(out)


# -- suites and projects -----------------------------------------------------------------------------
CHOICE_SUITE = "policy_choice"
GENERATE_SUITE = "policy_generate"


def choice_rows(n: int) -> list[dict[str, Any]]:
    """Four-way choice: which policy number appears in this document (the right one and three others)."""
    rng = random.Random(SEED)
    rows = []
    for i, ex in enumerate(claim_examples(n)):
        right = ex["expected"]["policy_number"]
        options = [right, *(f"POL-{rng.randrange(100000, 999999)}" for _ in range(3))]
        rng.shuffle(options)
        rows.append({"id": f"c{i:05d}", "input": {"document": ex["input"]["document"], "options": options},
                     "expected": options.index(right)})
    return rows


def generate_rows(n: int) -> list[dict[str, Any]]:
    """Generation: the document in, its policy number out."""
    return [{"id": f"g{i:05d}", "input": {"document": ex["input"]["document"]},
             "expected": ex["expected"]["policy_number"]} for i, ex in enumerate(claim_examples(n))]


def write_suite(project: Path, name: str, spec: str, rows: list[dict[str, Any]]) -> Path:
    d = project / "suites" / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "suite.yaml").write_text(spec, encoding="utf-8")
    with (d / "examples.jsonl").open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return d


def choice_suite(project: Path, n: int) -> Path:
    return write_suite(project, CHOICE_SUITE, "kind: heldout\ntask: choice\n"
                       "prompt: \"{{ document }}\\nThe policy number is\"\n"
                       "choices_field: options\nchecks: [choice_accuracy]\n", choice_rows(n))


def generate_suite(project: Path, n: int, max_new_tokens: int) -> Path:
    return write_suite(project, GENERATE_SUITE, "kind: heldout\ntask: generate\n"
                       "prompt: \"{{ document }}\\nPolicy number:\"\n"
                       f"generation: {{max_new_tokens: {max_new_tokens}, stop: [\"\\n\"]}}\n"
                       "checks: [exact_match]\n", generate_rows(n))


def write_project(root: Path, models: dict[str, dict[str, Any]], extra: dict[str, Any] | None = None) -> Path:
    """A fresh project folder with ``tollgate.yaml`` (JSON is YAML); its store is removed."""
    root.mkdir(parents=True, exist_ok=True)
    doc = {"store": ".tollgate/tollgate.duckdb", "models": models, "suites": ["suites/*"], **(extra or {})}
    (root / "tollgate.yaml").write_text(json.dumps(doc, indent=2), encoding="utf-8")
    fresh_store(root)
    return root


def fresh_store(project: Path) -> Path:
    """Remove the project's store: the next command starts cold."""
    shutil.rmtree(project / ".tollgate", ignore_errors=True)
    return project / ".tollgate" / "tollgate.duckdb"


def hf_model(path: Path, batch_size: int = 32) -> dict[str, Any]:
    return {"adapter": "hf-causal", "path": str(path), "role": "candidate",
            "options": {"batch_size": batch_size, "dtype": "float32"}}


def python_model(role: str = "other", fn: str = "os:getcwd") -> dict[str, Any]:
    return {"adapter": "python", "role": role, "options": {"callable": fn}}


# -- stores filled through the store API ----------------------------------------------------------------
def fill_runs(store: Any, *, models: list[str], suites: int, examples: int, seed: int = SEED) -> int:
    """One completed run of every model on every suite, ``examples`` scored results each, written
    with ``insert_results`` (Arrow batches) in one transaction per suite; returns the run count."""
    import numpy as np

    from harness import store as st
    from harness.report import finish_run

    rng = np.random.default_rng(seed)
    runs = 0
    for s in range(suites):
        suite, suite_hash = f"suite{s:02d}", hash_obj("bench-suite", s, examples)
        ids = [f"e{i:05d}" for i in range(examples)]
        exs = [{"id": i, "input": {"document": f"document {i}"}, "expected": {"policy_number": "POL-1"},
                "tags": ["bench"], "hash": hash_obj(suite_hash, i), "line": k + 1} for k, i in enumerate(ids)]
        with store.write() as con:
            st.register_suite(con, name=suite, content_hash=suite_hash, kind=("heldout", "edge")[s % 2],
                              task="generate", spec={"prompt": "{{ document }}"}, path=f"suites/{suite}",
                              examples=exs)
            for m in models:
                fp = hash_obj("bench-model", m)
                st.register_model(con, name=m, fingerprint=fp, adapter="python", uri=None, role=None, version=None,
                                  settings={})
                run_id = hash_obj("bench-run", m, suite)[:32]
                st.start_run(con, run_id=run_id, model=m, fingerprint=fp, suite=suite, suite_hash=suite_hash,
                             suite_kind=("heldout", "edge")[s % 2], stage="post-finetune", config={},
                             code_version="bench", n_examples=examples)
                p = rng.uniform(0.3, 0.95)
                passed = rng.random(examples) < p
                field_acc = np.clip(passed + rng.normal(0, 0.2, examples), 0, 1)
                lat = rng.lognormal(3, 0.5, examples)
                now = st.utcnow()
                results = [{"run_id": run_id, "example_id": i, "output_key": hash_obj(m, i),
                            "result_key": hash_obj(run_id, i), "output": "{}", "details": "{}",
                            "score": float(field_acc[k]), "passed": bool(passed[k]), "reason": None,
                            "latency_ms": float(lat[k]), "prompt_tokens": 120, "completion_tokens": 40,
                            "error": None, "cached": False, "created_at": now} for k, i in enumerate(ids)]
                scores = [{"run_id": run_id, "example_id": i, "metric": "exact_match", "value": float(passed[k]),
                           "passed": bool(passed[k]), "reason": None, "counts": None} for k, i in enumerate(ids)]
                scores += [{"run_id": run_id, "example_id": i, "metric": "json_fields",
                            "value": float(field_acc[k]), "passed": bool(field_acc[k] >= 1), "reason": None,
                            "counts": None} for k, i in enumerate(ids)]
                st.insert_results(con, results, scores)
                finish_run(con, run_id, "completed", float(lat.sum() / 1000))  # as a real run: with its summary
                runs += 1
    return runs


# -- synthetic traffic --------------------------------------------------------------------------------
TRAFFIC_START = datetime(2026, 10, 1)


def traffic_jsonl(path: Path, rows: int, *, models: tuple[str, str] = ("prod", "cand")) -> Path:
    """``rows`` logged answers as a team would export them: mostly production, a share mirrored to
    the candidate in shadow (same request id) and a share of beta users served by it, over 30 days.
    Written once; the file is reused while it exists with the same row count."""
    marker = path.with_suffix(".rows")
    with _built_once(path):
        if not (path.exists() and marker.exists() and marker.read_text() == str(rows)):
            _write_traffic(path, rows, models)
            marker.write_text(str(rows))
    return path


def _write_traffic(path: Path, rows: int, models: tuple[str, str]) -> None:
    docs = [e["input"]["document"][:80] for e in claim_examples(500)]  # about 360 bytes a row
    answers = [json.dumps({"policy_number": f"POL-{100000 + k}"}) for k in range(500)]
    rng = random.Random(SEED)
    prod, cand = models
    tmp = path.with_name(path.name + ".tmp")
    span = 30 * 24 * 3600
    with tmp.open("w", encoding="utf-8") as f:
        i = 0
        while i < rows:
            ts = (TRAFFIC_START + timedelta(seconds=span * i // rows)).isoformat() + "Z"
            k = rng.randrange(500)
            user = f"user-{rng.randrange(20000):05d}"
            arm = "beta" if rng.random() < 0.1 else "production"
            row = {"request_id": f"req-{i:08d}", "ts": ts, "user_id": user, "arm": arm,
                   "model": cand if arm == "beta" else prod, "input": {"document": docs[k]}, "output": answers[k],
                   "latency_ms": round(rng.uniform(20, 400), 1), "prompt_tokens": 40 + k % 60,
                   "completion_tokens": 20, "error": None}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            i += 1
            if arm == "production" and i < rows and rng.random() < 0.3:  # its shadow copy
                row.update(arm="shadow", model=cand, latency_ms=round(rng.uniform(20, 400), 1))
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
                i += 1
    tmp.replace(path)


def feedback_jsonl(path: Path, traffic_rows: int, *, every: int = 10) -> Path:
    """Thumbs on every ``every``-th request of :func:`traffic_jsonl` (up more often than down)."""
    rng = random.Random(SEED + 2)
    span = 30 * 24 * 3600
    with path.open("w", encoding="utf-8") as f:
        for i in range(0, traffic_rows, every):
            ts = (TRAFFIC_START + timedelta(seconds=span * i // traffic_rows + 600)).isoformat() + "Z"
            f.write(json.dumps({"request_id": f"req-{i:08d}", "kind": "thumb",
                                "value": "up" if rng.random() < 0.7 else "down", "ts": ts}) + "\n")
    return path
