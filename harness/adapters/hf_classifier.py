"""``hf-classifier``: a transformers sequence classifier; its answer is the label it picks.

The probability of that label and of every other one go into the generation's details, so a
check or a report can use the model's confidence, not only its choice.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Literal

from harness.adapters.base import (
    Generation,
    GenerationSettings,
    Loglikelihood,
    ModelConfig,
    ProgressFn,
    StrictOptions,
    register_adapter,
)
from harness.adapters.hf_loading import check_weights, hf_fingerprint, load_pretrained, set_threads


class HFClassifierOptions(StrictOptions):
    batch_size: int = 32
    threads: int | None = None
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    max_length: int = 512
    allow_unsafe_weights: bool = False
    trust_remote_code: bool = False


class HFClassifier:
    def __init__(self, cfg: ModelConfig) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        opts: HFClassifierOptions = cfg.options
        set_threads(opts.threads)
        check_weights(cfg)
        self.torch, self.opts = torch, opts
        self.tokenizer = load_pretrained(AutoTokenizer, cfg)
        self.model = load_pretrained(AutoModelForSequenceClassification, cfg, dtype=getattr(torch, opts.dtype))
        self.model.eval()
        self.labels = [self.model.config.id2label[i] for i in range(self.model.config.num_labels)]

    def generate(self, prompts: Sequence[str], settings: GenerationSettings,
                 progress: ProgressFn | None = None) -> list[Generation]:
        torch = self.torch
        order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
        out: list[Generation | None] = [None] * len(prompts)
        for start in range(0, len(order), self.opts.batch_size):
            idx = order[start:start + self.opts.batch_size]
            batch = self.tokenizer([prompts[i] for i in idx], padding=True, truncation=True,
                                   max_length=self.opts.max_length, return_tensors="pt")
            t0 = time.perf_counter()
            with torch.inference_mode():
                probs = torch.softmax(self.model(**batch).logits.float(), dim=-1)
            per_ms = (time.perf_counter() - t0) * 1000 / len(idx)
            lengths = batch["attention_mask"].sum(dim=1).tolist()
            for r, i in enumerate(idx):
                p = probs[r].tolist()
                best = max(range(len(p)), key=p.__getitem__)
                out[i] = Generation(text=self.labels[best], latency_ms=per_ms, prompt_tokens=int(lengths[r]),
                                    completion_tokens=0,
                                    details={"probability": p[best],
                                             "probabilities": dict(zip(self.labels, p, strict=True))})
            if progress:
                progress(len(idx))
        return [g for g in out if g is not None]

    def loglikelihood(self, requests: Sequence[tuple[str, str]],
                      progress: ProgressFn | None = None) -> list[Loglikelihood]:
        raise NotImplementedError("a classifier has no log-likelihood of text")

    def close(self) -> None:
        self.model = None


@register_adapter("hf-classifier", options=HFClassifierOptions,
                  fingerprint=lambda cfg: hf_fingerprint(cfg, ignore=("batch_size", "threads")))
def load_hf_classifier(cfg: ModelConfig) -> HFClassifier:
    return HFClassifier(cfg)
