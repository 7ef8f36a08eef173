"""Choice scoring with each shared context run once equals scoring pair by pair, with fewer tokens."""

from __future__ import annotations

import random

import pytest

WORDS = ["the", "claim", "policy", "number", "date", "injury", "damage", "car", "report", "police",
         "anna", "berg", "12", "march"]


def _requests(seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    reqs = []
    for _ in range(25):
        ctx = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 30))) + rng.choice([" Answer:", "Answer: ", ""])
        for _ in range(rng.choice([1, 2, 4, 5])):  # one option alone is scored pair by pair
            reqs.append((ctx, rng.choice([" ", ""]) + " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 4)))))
    reqs += [("", "alone"), ("", " a b"), ("", " a c")]  # empty contexts: the prefix token stands in
    return reqs


@pytest.fixture(scope="module")
def models(tiny_causal_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from harness.adapters.hf_causal import HFCausalModel, HFCausalOptions

    tok = AutoTokenizer.from_pretrained(tiny_causal_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_causal_dir).eval()

    def make(shared: bool, **kw):
        return HFCausalModel(model, tok, HFCausalOptions(shared_context=shared, **kw))

    return model, make


def _tokens_seen(model, fn):
    seen = []
    hook = model.register_forward_pre_hook(lambda mod, args, kw: seen.append(int(kw["input_ids"].numel())),
                                           with_kwargs=True)
    try:
        return fn(), sum(seen)
    finally:
        hook.remove()


@pytest.mark.parametrize("batch_size,max_length,seed", [(16, None, 0), (3, None, 1), (4, 24, 2)])
def test_shared_context_scores_equal_pair_by_pair(models, batch_size, max_length, seed):
    model, make = models
    reqs = _requests(seed)
    pairwise, n_pair = _tokens_seen(model, lambda: make(False, batch_size=batch_size, max_length=max_length)
                                    .loglikelihood(reqs))
    shared, n_shared = _tokens_seen(model, lambda: make(True, batch_size=batch_size, max_length=max_length)
                                    .loglikelihood(reqs))
    assert len(shared) == len(reqs)
    for a, b in zip(pairwise, shared, strict=True):
        assert b.logprob == pytest.approx(a.logprob, abs=1e-4)
        assert (a.is_greedy, a.n_tokens) == (b.is_greedy, b.n_tokens)
    if max_length is None:  # (with 24 tokens most contexts are cut and scored pair by pair)
        assert n_shared < 0.8 * n_pair  # each context went through the model once, not once per option


def test_the_choice_picked_is_the_same_either_way(models):
    _, make = models
    reqs = _requests(3)
    a = make(False).loglikelihood(reqs)
    b = make(True).loglikelihood(reqs)
    by_ctx: dict[str, list[int]] = {}
    for i, (ctx, _) in enumerate(reqs):
        by_ctx.setdefault(ctx, []).append(i)
    for idx in by_ctx.values():
        assert max(idx, key=lambda i: a[i].logprob) == max(idx, key=lambda i: b[i].logprob)


def test_the_option_is_not_part_of_the_fingerprint(tiny_causal_dir):
    from harness.adapters import adapters
    from harness.adapters.base import GenerationSettings, ModelConfig
    from harness.adapters.hf_causal import HFCausalOptions

    def fp(shared: bool) -> str:
        cfg = ModelConfig(name="m", adapter="hf-causal", path=tiny_causal_dir, generation=GenerationSettings(),
                          options=HFCausalOptions(shared_context=shared))
        return adapters.get("hf-causal").fingerprint(cfg)

    assert fp(True) == fp(False)  # the same answers: cached results stay valid
