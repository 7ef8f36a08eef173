"""Training the demo's four small causal LMs from scratch, on this CPU, with fixed seeds.

``base`` learns the documents' language only; ``production`` and ``candidate`` are fine-tunes of
``base`` on the training split (production is the same recipe stopped early, as last quarter's
model was); ``candidate`` keeps its best checkpoint on the validation split (early stopping);
``overfit`` is trained for many epochs on a few hundred examples. The recipe follows what was
measured on this machine (shared/notes/demo-models.md): a 1.2M-parameter GPT-2, byte-level BPE
with one token per digit, loss on the JSON target only, AdamW with warm-up and cosine decay,
bfloat16 autocast.
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

PROMPT = "{{ document }}\nJSON:"


def render_prompt(document: str) -> str:
    """The suite template, rendered the same way at training and evaluation time."""
    return f"{document}\nJSON:"


def render_target(expected: dict[str, Any]) -> str:
    return " " + json.dumps(expected, ensure_ascii=False)


@dataclass(frozen=True)
class Recipe:
    """Everything that decides the weights. Stored beside them; a change means a rebuild."""

    seed: int = 7
    vocab_size: int = 3000
    n_embd: int = 128
    n_layer: int = 4
    n_head: int = 4
    n_positions: int = 1024
    lr: float = 3e-3
    batch_size: int = 32
    warmup: int = 30
    base_steps: int = 200
    candidate_steps: int = 3000
    production_step: int = 1000
    eval_every: int = 250
    patience: int = 4
    overfit_examples: int = 200
    overfit_steps: int = 450

    def scaled(self, factor: float) -> Recipe:
        """A smaller build for tests: same code path, fewer steps and a narrower model."""
        steps = {k: max(2, int(getattr(self, k) * factor)) for k in
                 ("base_steps", "candidate_steps", "production_step", "eval_every", "overfit_steps")}
        return Recipe(**{**asdict(self), **steps, "n_embd": 32, "n_layer": 1, "n_head": 2, "vocab_size": 600,
                         "n_positions": 512, "warmup": 2})


def train_tokenizer(texts: list[str], vocab_size: int) -> Any:
    """Byte-level BPE with every digit its own token, so policy numbers and dates can be copied."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>", "<pad>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>",
                                   pad_token="<pad>")


def _batches(seqs: list[tuple[list[int], int]], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Indices grouped by length (little padding), batches in random order."""
    order = sorted(range(len(seqs)), key=lambda i: (len(seqs[i][0]), rng.random()))
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    rng.shuffle(batches)
    return batches


class Trainer:
    """One model's optimisation loop; ``step`` runs one batch and returns its loss."""

    def __init__(self, model: Any, seqs: list[tuple[list[int], int]], recipe: Recipe, total_steps: int,
                 pad_id: int, seed: int) -> None:
        import torch

        self.torch, self.model, self.seqs, self.recipe = torch, model, seqs, recipe
        self.pad_id, self.total = pad_id, total_steps
        self.rng = random.Random(seed)
        decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
        no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
        self.opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},
                                      {"params": no_decay, "weight_decay": 0.0}], lr=recipe.lr, betas=(0.9, 0.95))
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, self._lr_factor)
        self.queue: list[list[int]] = []
        self.steps = 0

    def _lr_factor(self, step: int) -> float:
        w = self.recipe.warmup
        if step < w:
            return (step + 1) / w
        progress = min(1.0, (step - w) / max(1, self.total - w))
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    def step(self) -> float:
        torch = self.torch
        if not self.queue:
            self.queue = _batches(self.seqs, self.recipe.batch_size, self.rng)
        idx = self.queue.pop()
        width = max(len(self.seqs[i][0]) for i in idx)
        ids = torch.full((len(idx), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(idx), width), -100, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for r, i in enumerate(idx):
            seq, n_prompt = self.seqs[i]
            ids[r, :len(seq)] = torch.tensor(seq)
            mask[r, :len(seq)] = 1
            labels[r, n_prompt:len(seq)] = ids[r, n_prompt:len(seq)]
        self.model.train()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = self.model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        self.sched.step()
        self.opt.zero_grad(set_to_none=True)
        self.steps += 1
        return float(loss.detach())


def encode_examples(tok: Any, rows: list[dict[str, Any]], with_target: bool = True) -> list[tuple[list[int], int]]:
    out = []
    for r in rows:
        p = tok.encode(render_prompt(r["input"]["document"]))
        t = [*tok.encode(render_target(r["expected"])), tok.eos_token_id] if with_target else []
        out.append((p + t, len(p)))
    return out


def field_accuracy(model: Any, tok: Any, rows: list[dict[str, Any]]) -> float:
    """Mean field accuracy with the same adapter and check the harness uses."""
    from harness.adapters.base import GenerationSettings
    from harness.adapters.hf_causal import HFCausalModel
    from harness.checks import Sample, build_check
    from harness.checks._base import CheckSpec

    model.eval()
    runner = HFCausalModel(model, tok)
    runner.opts = runner.opts.model_copy(update={"batch_size": 50})
    gens = runner.generate([render_prompt(r["input"]["document"]) for r in rows], GenerationSettings(96))
    check = build_check(CheckSpec("json_fields", {}), file="", line=None, field="")
    return sum(check(Sample(g.text or "", r["expected"])).score for g, r in zip(gens, rows, strict=True)) / len(rows)


def save(model: Any, tok: Any, out: Path, meta: dict[str, Any]) -> None:
    import copy

    import torch

    out.mkdir(parents=True, exist_ok=True)
    half = copy.deepcopy(model).to(torch.float16)
    half.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    (out / "build.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def build_models(train: list[dict[str, Any]], validation: list[dict[str, Any]], overfit_rows: list[dict[str, Any]],
                 out: Path, recipe: Recipe = Recipe(), log: Callable[[str], None] | None = None) -> dict[str, Path]:
    """Train all four models into ``out/<name>``; returns their folders. Deterministic for a recipe."""
    import copy

    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    say = log or (lambda m: print(m, file=sys.stderr, flush=True))
    torch.manual_seed(recipe.seed)
    t_all = time.perf_counter()
    texts = [r["input"]["document"] for r in train] + [render_target(r["expected"]) for r in train]
    tok = train_tokenizer(texts, recipe.vocab_size)
    cfg = GPT2Config(vocab_size=len(tok), n_embd=recipe.n_embd, n_layer=recipe.n_layer, n_head=recipe.n_head,
                     n_positions=recipe.n_positions, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                     pad_token_id=tok.pad_token_id)
    meta = {"recipe": asdict(recipe), "n_train": len(train), "n_validation": len(validation)}
    paths: dict[str, Path] = {}

    # base: the documents' language, no extraction (loss on every token of the document)
    base = GPT2LMHeadModel(cfg)
    docs = [([*tok.encode(r["input"]["document"]), tok.eos_token_id], 0) for r in train]
    trainer = Trainer(base, docs, recipe, recipe.base_steps, tok.pad_token_id, recipe.seed)
    t0 = time.perf_counter()
    for _ in range(recipe.base_steps):
        loss = trainer.step()
    say(f"base: {recipe.base_steps} steps, loss {loss:.3f}, {time.perf_counter() - t0:.0f} s")
    paths["base"] = out / "base"
    save(base, tok, paths["base"], {**meta, "model": "base", "steps": recipe.base_steps,
                                    "train_seconds": round(time.perf_counter() - t0, 1)})

    # candidate (and production, its early checkpoint): fine-tune with validation early stopping
    seqs = encode_examples(tok, train)
    model = copy.deepcopy(base)
    trainer = Trainer(model, seqs, recipe, recipe.candidate_steps, tok.pad_token_id, recipe.seed + 1)
    val = validation[: min(100, len(validation))]
    best, best_step, best_state, bad = -1.0, 0, None, 0
    t0 = time.perf_counter()
    while trainer.steps < recipe.candidate_steps:
        loss = trainer.step()
        if trainer.steps == recipe.production_step:
            paths["production"] = out / "production"
            save(model, tok, paths["production"], {**meta, "model": "production", "steps": trainer.steps,
                                                   "train_seconds": round(time.perf_counter() - t0, 1)})
            say(f"production: checkpoint at step {trainer.steps}")
        if trainer.steps % recipe.eval_every == 0 or trainer.steps == recipe.candidate_steps:
            acc = field_accuracy(model, tok, val)
            say(f"candidate: step {trainer.steps}, loss {loss:.3f}, validation field accuracy {acc:.3f}, "
                f"{time.perf_counter() - t0:.0f} s")
            if acc > best:
                best, best_step, best_state, bad = acc, trainer.steps, copy.deepcopy(model.state_dict()), 0
            else:
                bad += 1
                if bad >= recipe.patience and trainer.steps >= recipe.production_step:
                    say(f"candidate: early stop at step {trainer.steps}")
                    break
    model.load_state_dict(best_state)
    paths["candidate"] = out / "candidate"
    save(model, tok, paths["candidate"], {**meta, "model": "candidate", "steps": best_step,
                                          "validation_field_accuracy": round(best, 4),
                                          "train_seconds": round(time.perf_counter() - t0, 1)})

    # overfit: many epochs on a few hundred examples
    model = copy.deepcopy(base)
    trainer = Trainer(model, encode_examples(tok, overfit_rows), recipe, recipe.overfit_steps, tok.pad_token_id,
                      recipe.seed + 2)
    t0 = time.perf_counter()
    for _ in range(recipe.overfit_steps):
        loss = trainer.step()
    epochs = recipe.overfit_steps * recipe.batch_size / max(1, len(overfit_rows))
    say(f"overfit: {recipe.overfit_steps} steps (~{epochs:.0f} epochs on {len(overfit_rows)} examples), "
        f"loss {loss:.3f}, {time.perf_counter() - t0:.0f} s")
    paths["overfit"] = out / "overfit"
    save(model, tok, paths["overfit"], {**meta, "model": "overfit", "steps": recipe.overfit_steps,
                                        "train_seconds": round(time.perf_counter() - t0, 1)})
    say(f"all four models built in {time.perf_counter() - t_all:.0f} s")
    return paths


@dataclass(frozen=True)
class SmallRecipe:
    """The demo's smaller model, there so the cost frontier has a cheaper point: a quarter of the
    parameters, the base model's tokenizer, trained on the extraction task from scratch. Whether it is
    good enough is for the evaluation to say; nothing here is tuned to make it so."""

    seed: int = 11
    n_embd: int = 64
    n_layer: int = 2
    n_head: int = 2
    lr: float = 3e-3
    batch_size: int = 32
    warmup: int = 30
    steps: int = 2500


def build_small(train: list[dict[str, Any]], tokenizer_dir: Path, out: Path, recipe: SmallRecipe = SmallRecipe(),
                log: Callable[[str], None] | None = None) -> Path:
    """Train the small model into ``out``; deterministic for a recipe and a tokenizer."""
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    say = log or (lambda m: print(m, file=sys.stderr, flush=True))
    torch.manual_seed(recipe.seed)
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    cfg = GPT2Config(vocab_size=len(tok), n_embd=recipe.n_embd, n_layer=recipe.n_layer, n_head=recipe.n_head,
                     n_positions=Recipe().n_positions, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                     pad_token_id=tok.pad_token_id)
    model = GPT2LMHeadModel(cfg)
    trainer = Trainer(model, encode_examples(tok, train), recipe, recipe.steps, tok.pad_token_id, recipe.seed)
    t0 = time.perf_counter()
    while trainer.steps < recipe.steps:
        loss = trainer.step()
        if trainer.steps % 500 == 0:
            say(f"small: step {trainer.steps}, loss {loss:.3f}, {time.perf_counter() - t0:.0f} s")
    save(model, tok, out, {"recipe": asdict(recipe), "model": "small", "n_train": len(train), "steps": recipe.steps,
                           "parameters": sum(p.numel() for p in model.parameters()),
                           "train_seconds": round(time.perf_counter() - t0, 1)})
    return out


def fine_tune(start: Path, train: list[dict[str, Any]], out: Path, *, lr: float, batch_size: int, steps: int,
              seed: int = 0, should_stop: Callable[[], bool] | None = None) -> Path:
    """Continue training a checkpoint on the extraction task: what one trial of the demo's sweep does."""
    import torch
    from transformers import AutoTokenizer, GPT2LMHeadModel

    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(start)
    model = GPT2LMHeadModel.from_pretrained(start, use_safetensors=True, dtype=torch.float32)
    recipe = SmallRecipe(lr=lr, batch_size=batch_size, warmup=max(1, steps // 20), steps=steps, seed=seed)
    trainer = Trainer(model, encode_examples(tok, train), recipe, steps, tok.pad_token_id, seed)
    t0 = time.perf_counter()
    while trainer.steps < steps and not (should_stop and should_stop()):
        loss = trainer.step()
    save(model, tok, out, {"start": start.name, "lr": lr, "batch_size": batch_size, "steps": trainer.steps,
                           "loss": round(loss, 4), "train_seconds": round(time.perf_counter() - t0, 1)})
    return out
