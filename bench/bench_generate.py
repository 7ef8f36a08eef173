"""Row 2: evaluation throughput of a ``generate`` task, whole process, against lm_eval ``generate_until``.

The ~5M-parameter GPT-2 of row 1 on 500 claim documents ("Policy number:"), greedy, at most 16
new tokens, stop at a newline: ``tollgate run`` on a cold store against ``lm_eval`` on the task
``tollgate export-lm-eval`` wrote from the same suite (same model, prompts, token limit, stop and
batch size 32). Also Tollgate's model calls alone and the FLOP floor (2 x non-embedding
parameters x (prompt + generated tokens, as Tollgate stored them) over the measured matmul rate).

    python bench/bench_generate.py [--smoke] [--repeat N]
"""

from __future__ import annotations

import sys

import flops
import versus_lm_eval as vs
import workloads
from common import Report, parse, parser, ratios

MAX_NEW_TOKENS = 16


def main(argv: list[str] | None = None) -> int:
    args = parse(parser(__doc__.splitlines()[0], repeat=3), argv)
    n, max_new = (16, 4) if args.smoke else (500, MAX_NEW_TOKENS)
    model_dir = workloads.gpt2(args.cache, smoke=args.smoke)
    setup = vs.prepare(args.cache / "generate", model_dir, lambda p: workloads.generate_suite(p, n, max_new),
                       metric="exact_match", lm_metric="exact_match,none")
    tg, lm = vs.compare(setup, args.repeat, warmup=not args.smoke)

    params, cfg = flops.non_embedding_parameters(model_dir)
    tokens = tg.tokens["prompt"] + tg.tokens["completion"]
    rate = flops.matmul_flops_per_s(cfg, tokens=setup.batch_size * max(1, tg.tokens["prompt"] // n), threads=2)
    floor_s = 2 * params * tokens / rate

    r = Report("bench_generate", args, params={
        "examples": n, "max_new_tokens": max_new, "greedy": True, "non_embedding_params": params,
        "model": model_dir.name, "prompt_tokens": tg.tokens["prompt"], "completion_tokens": tg.tokens["completion"],
        "batch_size": setup.batch_size, "matmul_gflops": round(rate / 1e9, 2)})
    r.add("tollgate run, whole process", tg.wall_s, "s")
    r.add("lm_eval generate_until, whole process", lm.wall_s, "s")
    r.add("lm_eval / tollgate (whole process)", ratios(lm.wall_s, tg.wall_s), "x", bar=">= 1.0")
    r.add("tollgate run as stored (in-process)", tg.run_s, "s", note="runs.duration_s: model load + generation + store")
    r.add("tollgate model calls (compute)", tg.compute_s, "s", note="sum of stored per-example latencies")
    r.add("FLOP floor", [floor_s], "s", note=f"2 x {params:,} params x {tokens:,} tokens / "
                                            f"{rate / 1e9:.1f} GFLOP/s (2 threads)")
    r.add("tollgate compute / floor", [c / floor_s for c in tg.compute_s], "x")
    r.add("exact match, tollgate", tg.accuracy, "acc")
    r.add("exact match, lm_eval", lm.accuracy, "acc")
    same = all(abs(a - b) < 1e-9 for a, b in zip(tg.accuracy, lm.accuracy, strict=True))
    r.note("the matmul rate is measured at prefill size (a batch of prompts); decoding runs one token per row, "
           "slower per FLOP, so the floor is optimistic for generation")
    r.note(f"same exact match in both harnesses: {'yes' if same else 'NO'} ({tg.accuracy[0]:.4f} vs "
           f"{lm.accuracy[0]:.4f}; an untrained model scores 0 in both, so this says little: the throughput is "
           f"the figure)")
    r.finish()
    return 0


if __name__ == "__main__":
    sys.exit(main())
