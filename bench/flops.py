"""The physical floor of an evaluation: the model's forward-pass FLOPs over this machine's measured
matmul rate.

FLOPs are counted the usual way, 2 x non-embedding parameters per token processed (attention
scores and the output projection onto the vocabulary are left out, so the floor is a lower
bound). The matmul rate is torch's on the shapes of this model's layers (a batch of tokens times
the attention and MLP weight matrices), on the same number of threads the evaluation uses.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def non_embedding_parameters(model_dir: Path) -> tuple[int, dict[str, Any]]:
    """(parameters outside the token and position embeddings, the model config), read from disk."""
    from safetensors import safe_open

    cfg = json.loads((model_dir / "config.json").read_text())
    total = 0
    with safe_open(str(model_dir / "model.safetensors"), "pt") as f:
        for name in f.keys():  # noqa: SIM118 - safe_open is not a mapping
            if name.endswith(("wte.weight", "wpe.weight", "lm_head.weight")):
                continue
            total += _numel(f.get_slice(name).get_shape())
    return total, cfg


def _numel(shape: list[int]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def choice_tokens(encode: Callable[[str], list[int]], prompts: list[str], choices: list[list[str]],
                  delimiter: str = " ") -> dict[str, int]:
    """Tokens an evaluation of ``choice`` examples must process, split as lm-eval splits them.

    ``floor``: each context once plus every option's continuation (one forward pass per shared
    context); ``per_option``: the context again for every option, as one pass per (context, option)
    pair does.
    """
    floor = per_option = 0
    for prompt, opts in zip(prompts, choices, strict=True):
        ctx = len(encode(prompt))
        conts = [len(encode(prompt + delimiter + o)) - ctx for o in opts]
        floor += ctx + sum(conts)
        per_option += sum(ctx + c for c in conts)
    return {"floor": floor, "per_option": per_option}


def matmul_flops_per_s(cfg: dict[str, Any], *, tokens: int, threads: int = 2, seconds: float = 0.5) -> float:
    """Measured FLOP/s of the layer matmuls of a GPT-2 block on a batch of ``tokens`` tokens.

    The rate of the mix (qkv, attention out, MLP up, MLP down) weighted by their FLOPs: the time
    those four products take together, as one layer's forward pass would.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        d = cfg["n_embd"]
        shapes = [(d, 3 * d), (d, d), (d, 4 * d), (4 * d, d)]
        with torch.inference_mode():
            mats = [(torch.randn(tokens, k), torch.randn(k, n)) for k, n in shapes]
            flops = sum(2 * tokens * k * n for k, n in shapes)
            for a, b in mats:  # warm-up
                torch.matmul(a, b)
            rates = []
            deadline = time.perf_counter() + seconds
            while time.perf_counter() < deadline or len(rates) < 5:
                t0 = time.perf_counter()
                for a, b in mats:
                    torch.matmul(a, b)
                rates.append(flops / (time.perf_counter() - t0))
        return statistics.median(rates)
    finally:
        torch.set_num_threads(before)
