"""``hf-causal``: a transformers causal LM from a local directory.

Generation is batched with left padding over length-sorted prompts; log-likelihoods follow
lm-eval's rules exactly (trailing context spaces move to the continuation, the whole string is
encoded then split) so a suite scores the same here and in lm-eval. torch and transformers are
imported inside the functions, never at start-up.
"""

from __future__ import annotations

import sys
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
    truncate_at_stop,
)
from harness.adapters.hf_loading import check_weights, hf_fingerprint, load_pretrained, set_threads
from harness.adapters.hf_shared_context import group_by_context, shared_context_loglikelihoods
from harness.hashing import hash_obj


class HFCausalOptions(StrictOptions):
    batch_size: int = 16
    threads: int | None = None
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    max_length: int | None = None
    allow_unsafe_weights: bool = False
    trust_remote_code: bool = False
    shared_context: bool = True  # run a context shared by several options once (choice tasks)


def _stop_criteria(tok, prompt_width: int, stops: Sequence[str]):
    """Stop a row once its *generated* text holds a stop sequence.

    transformers' own ``stop_strings`` also matches across the prompt boundary (a prompt ending
    in ':' and a first new token ':' "contain" '::'), stopping answers that have not started;
    OpenAI-style APIs look at the completion only, and so do we. Each step decodes only the
    newest tokens, enough to hold the longest stop sequence.
    """
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    window = max(len(s) for s in stops) + 2

    class StopInCompletion(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            gen = input_ids[:, prompt_width:]
            tail = gen[:, -window:].tolist()
            done = [any(s in tok.decode(row, skip_special_tokens=True) for s in stops) for row in tail]
            return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([StopInCompletion()])


def resolve_max_length(config, tokenizer, default: int = 2048) -> int:
    """The context length, found the way lm-eval finds it: nested ``text_config`` first, then
    ``n_positions``, ``max_position_embeddings``, ``n_ctx``, then the tokenizer's limit."""
    for conf in (getattr(config, "text_config", None), config):
        for attr in ("n_positions", "max_position_embeddings", "n_ctx"):
            value = getattr(conf, attr, None) if conf is not None else None
            if isinstance(value, int) and value > 0:
                return value
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and 0 < limit < 10**12:
        return limit
    return default


class HFCausalModel:
    """Batched generation and log-likelihoods over a loaded model (from disk, or in memory while training)."""

    def __init__(self, model, tokenizer, opts: HFCausalOptions | None = None) -> None:
        import torch

        self.torch = torch
        self.opts = opts or HFCausalOptions()
        self.model = model
        self.tokenizer = tok = tokenizer
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token if tok.eos_token is not None else tok.convert_ids_to_tokens(0)
        tok.padding_side = "left"
        self.max_length = self.opts.max_length or resolve_max_length(model.config, tok)
        self.prefix_token_id = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id

    @classmethod
    def load(cls, cfg: ModelConfig) -> HFCausalModel:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        opts: HFCausalOptions = cfg.options
        set_threads(opts.threads)
        check_weights(cfg)
        tokenizer = load_pretrained(AutoTokenizer, cfg)
        model = load_pretrained(AutoModelForCausalLM, cfg, dtype=getattr(torch, opts.dtype))
        model.eval()
        return cls(model, tokenizer, opts)

    # -- generation -------------------------------------------------------------------------
    def generate(self, prompts: Sequence[str], settings: GenerationSettings,
                 progress: ProgressFn | None = None) -> list[Generation]:
        torch, tok = self.torch, self.tokenizer
        max_new = max(1, min(settings.max_new_tokens, self.max_length - 1))
        budget = self.max_length - max_new
        encoded = [tok.encode(p)[-budget:] for p in prompts]
        order = sorted(range(len(prompts)), key=lambda i: -len(encoded[i]))
        out: list[Generation | None] = [None] * len(prompts)
        pad = tok.pad_token_id
        eos = tok.eos_token_id
        # Sampled answers are drawn one example at a time from a seed of (settings.seed, prompt), so
        # an answer never depends on which other examples shared its batch or were cached.
        bs = self.opts.batch_size if settings.temperature == 0 else 1
        for start in range(0, len(order), bs):
            idx = order[start:start + bs]
            width = max(len(encoded[i]) for i in idx)
            ids = torch.full((len(idx), width), pad, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for r, i in enumerate(idx):
                n = len(encoded[i])
                if n:
                    ids[r, width - n:] = torch.tensor(encoded[i])
                    mask[r, width - n:] = 1
            kwargs = dict(max_new_tokens=max_new, pad_token_id=pad, eos_token_id=eos)
            if settings.temperature > 0:
                torch.manual_seed(int(hash_obj(settings.seed, prompts[idx[0]])[:15], 16))
                kwargs.update(do_sample=True, temperature=settings.temperature, top_p=settings.top_p)
            else:
                kwargs.update(do_sample=False)
            if settings.stop:
                kwargs.update(stopping_criteria=_stop_criteria(tok, width, settings.stop))
            t0 = time.perf_counter()
            with torch.inference_mode():
                gen = self.model.generate(input_ids=ids, attention_mask=mask, **kwargs)
            per_example_ms = (time.perf_counter() - t0) * 1000 / len(idx)
            new = gen[:, width:].tolist()
            for r, i in enumerate(idx):
                toks = new[r]
                if eos is not None and eos in toks:
                    toks = toks[:toks.index(eos)]
                text = truncate_at_stop(tok.decode(toks, skip_special_tokens=True), settings.stop)
                out[i] = Generation(text=text, latency_ms=per_example_ms, prompt_tokens=len(encoded[i]),
                                    completion_tokens=len(toks))
            if progress:
                progress(len(idx))
        return [g for g in out if g is not None]

    # -- log-likelihood -----------------------------------------------------------------------
    def _encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces > 0:
            continuation = context[-n_spaces:] + continuation
            context = context[:-n_spaces]
        whole = self.tokenizer.encode(context + continuation)
        ctx = self.tokenizer.encode(context)
        return ctx, whole[len(ctx):]

    def loglikelihood(self, requests: Sequence[tuple[str, str]],
                      progress: ProgressFn | None = None) -> list[Loglikelihood]:
        torch = self.torch
        encoded, pairs = [], []
        for context, continuation in requests:
            if context == "":  # lm-eval: the prefix token (BOS or EOS) stands in for the context
                cont = self.tokenizer.encode(continuation, add_special_tokens=False)
                prefix = self.prefix_token_id
                ctx, cont = ([prefix], cont) if cont[:1] != [prefix] else (cont[:1], cont[1:])
            else:
                ctx, cont = self._encode_pair(context, continuation)
                if not ctx:  # a whitespace-only context: condition on the prefix token, as above
                    ctx = [self.prefix_token_id]
            seq = (ctx + cont)[-(self.max_length + 1):][:-1]
            encoded.append((seq, cont))
            pairs.append((ctx, cont))
        out: list[Loglikelihood | None] = [None] * len(requests)
        shared = self._shared_groups(pairs)
        if shared:
            try:
                scored = shared_context_loglikelihoods(self.model, pairs, shared, pad=self.tokenizer.pad_token_id,
                                                       rows_per_batch=4 * self.opts.batch_size, progress=progress)
            except TypeError as exc:  # a model class without position ids, a cache or logits_to_keep
                print(f"note: this model cannot reuse a shared context ({exc}); scoring pair by pair.",
                      file=sys.stderr)
                self.opts.shared_context = False
                scored = {}
            for i, ll in scored.items():
                out[i] = ll
        order = sorted((i for i in range(len(requests)) if out[i] is None), key=lambda i: -len(encoded[i][0]))
        bs = self.opts.batch_size
        pad = self.tokenizer.pad_token_id
        for start in range(0, len(order), bs):
            idx = order[start:start + bs]
            width = max(len(encoded[i][0]) for i in idx)
            ids = torch.full((len(idx), width), pad, dtype=torch.long)
            for r, i in enumerate(idx):
                seq = encoded[i][0]
                ids[r, :len(seq)] = torch.tensor(seq)
            t0 = time.perf_counter()
            with torch.inference_mode():
                # Right padding needs no attention mask in a causal model: pads come after every
                # real token, so no real position can attend to them.
                logits = self.model(input_ids=ids).logits.float()
                logp = torch.log_softmax(logits, dim=-1)
            per_ms = (time.perf_counter() - t0) * 1000 / len(idx)
            for r, i in enumerate(idx):
                seq, cont = encoded[i]
                n = len(cont)
                span = logp[r, len(seq) - n:len(seq)]
                target = torch.tensor(cont, dtype=torch.long)
                lp = span.gather(1, target.unsqueeze(1)).squeeze(1)
                greedy = bool((span.argmax(dim=-1) == target).all())
                out[i] = Loglikelihood(logprob=float(lp.sum()), is_greedy=greedy, n_tokens=n, latency_ms=per_ms)
            if progress:
                progress(len(idx))
        return [x for x in out if x is not None]

    def _shared_groups(self, pairs: list[tuple[list[int], list[int]]]) -> list[list[int]]:
        """Requests that share their context with another and fit untruncated: scored with the context
        run once (``shared_context=False`` in the options turns this off)."""
        if not self.opts.shared_context:
            return []
        fits = [(c, t) if t and len(c) + len(t) <= self.max_length + 1 else ((-1,), t) for c, t in pairs]
        return [g for key, g in group_by_context(fits).items() if len(g) > 1 and key != (-1,)]

    def close(self) -> None:
        self.model = None


def _fingerprint(cfg: ModelConfig) -> str:
    return hf_fingerprint(cfg, ignore=("batch_size", "threads", "shared_context"))


@register_adapter("hf-causal", options=HFCausalOptions, fingerprint=_fingerprint,
                  capabilities=("generate", "loglikelihood"))
def load_hf_causal(cfg: ModelConfig) -> HFCausalModel:
    return HFCausalModel.load(cfg)
