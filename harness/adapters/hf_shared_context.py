"""Log-likelihoods of several continuations of one context, with the context run once.

A four-way choice question scored pair by pair sends its document through the model four times;
on short options that is most of the work (3.2x the tokens in the choice benchmark). Here the
contexts of a batch go through the model once, left-padded with explicit positions, and their keys
and values are reused for every option: each option's tokens then attend to the cached context.
The first option token is predicted by the context's last position, the rest by the options' own
positions. The numbers equal the pair-by-pair computation up to floating-point rounding (tested
against it), and only the positions whose log-probabilities are needed go through the output layer.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from harness.adapters.base import Loglikelihood

Pair = tuple[list[int], list[int]]  # (context tokens, continuation tokens)


def group_by_context(pairs: Sequence[Pair]) -> dict[tuple[int, ...], list[int]]:
    """Request indices by identical context tokens, in first-seen order."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, (ctx, _) in enumerate(pairs):
        groups.setdefault(tuple(ctx), []).append(i)
    return groups


def shared_context_loglikelihoods(model: Any, pairs: Sequence[Pair], groups: list[list[int]], *, pad: int,
                                  rows_per_batch: int,
                                  progress: Callable[[int], None] | None = None) -> dict[int, Loglikelihood]:
    """Score every request of ``groups`` (lists of indices into ``pairs`` sharing one context).

    Batches hold whole groups, longest contexts first, up to ``rows_per_batch`` continuations.
    """
    import torch

    out: dict[int, Loglikelihood] = {}
    order = sorted(groups, key=lambda g: -len(pairs[g[0]][0]))
    batch: list[list[int]] = []
    rows = 0
    for g in order:
        if batch and rows + len(g) > rows_per_batch:
            out.update(_score_batch(torch, model, pairs, batch, pad))
            if progress:
                progress(rows)
            batch, rows = [], 0
        batch.append(g)
        rows += len(g)
    if batch:
        out.update(_score_batch(torch, model, pairs, batch, pad))
        if progress:
            progress(rows)
    return out


def _score_batch(torch: Any, model: Any, pairs: Sequence[Pair], batch: list[list[int]],
                 pad: int) -> dict[int, Loglikelihood]:
    t0 = time.perf_counter()
    ctxs = [pairs[g[0]][0] for g in batch]
    width = max(len(c) for c in ctxs)
    ids = torch.full((len(batch), width), pad, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for r, c in enumerate(ctxs):
        ids[r, width - len(c):] = torch.tensor(c)
        mask[r, width - len(c):] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.inference_mode():
        first = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1)
        first_logp = torch.log_softmax(first.logits[:, -1].float(), dim=-1)  # predicts each option's first token

        rows = [(b, i) for b, g in enumerate(batch) for i in g]
        rest = max(len(pairs[i][1]) for _, i in rows) - 1
        logp = None
        if rest > 0:  # options longer than one token: their own positions predict the rest
            cache = first.cache
            cache.batch_select_indices(torch.tensor([b for b, _ in rows]))
            cont = torch.full((len(rows), rest), pad, dtype=torch.long)
            for r, (_, i) in enumerate(rows):
                toks = pairs[i][1][:-1]
                if toks:
                    cont[r, :len(toks)] = torch.tensor(toks)
            # Right padding after each option needs no mask: a causal model's real positions never
            # attend to later ones. The context's left padding stays masked.
            mask2 = torch.cat([mask[[b for b, _ in rows]], torch.ones((len(rows), rest), dtype=torch.long)], dim=1)
            lengths = torch.tensor([len(pairs[batch[b][0]][0]) for b, _ in rows])
            pos2 = lengths[:, None] + torch.arange(rest)[None, :]
            second = model(input_ids=cont, attention_mask=mask2, position_ids=pos2, cache=cache)
            logp = torch.log_softmax(second.logits.float(), dim=-1)
    per_ms = (time.perf_counter() - t0) * 1000 / len(rows)
    out: dict[int, Loglikelihood] = {}
    for r, (b, i) in enumerate(rows):
        target = pairs[i][1]
        total = float(first_logp[b, target[0]])
        greedy = int(first_logp[b].argmax()) == target[0]
        if len(target) > 1:
            span = logp[r, :len(target) - 1]
            t = torch.tensor(target[1:], dtype=torch.long)
            total += float(span.gather(1, t.unsqueeze(1)).sum())
            greedy = greedy and bool((span.argmax(dim=-1) == t).all())
        out[i] = Loglikelihood(logprob=total, is_greedy=greedy, n_tokens=len(target), latency_ms=per_ms)
    return out
