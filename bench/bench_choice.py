"""Row 1: evaluation throughput of a ``choice`` task (log-likelihood), whole process, against lm_eval.

A ~5M-parameter GPT-2 (random weights, BPE trained on the demo's claim documents) on 1,000 four-way
examples ("which policy number appears in this document?"). Measured, in the same repetitions:
- ``tollgate run --model m5 --suite policy_choice`` in a fresh project (cold store), whole process;
- ``lm_eval --model hf ... --tasks policy_choice --batch_size 32 --device cpu`` on the task that
  ``tollgate export-lm-eval`` wrote from the same suite, whole process;
- Tollgate's run as stored (``runs.duration_s``: in-process, model load included) and its model
  calls alone (the sum of the stored per-example latencies);
- the FLOP floor: 2 x non-embedding parameters x tokens (each context once plus every option)
  over torch's measured matmul rate on 2 threads.
Both harnesses must report the same accuracy; the script says so when they do not.

    python bench/bench_choice.py [--smoke] [--repeat N]
"""

from __future__ import annotations

import sys
from pathlib import Path

import flops
import versus_lm_eval as vs
import workloads
from common import Report, parse, parser, ratios


def main(argv: list[str] | None = None) -> int:
    args = parse(parser(__doc__.splitlines()[0], repeat=3), argv)
    n = 24 if args.smoke else 1000
    model_dir = workloads.gpt2(args.cache, smoke=args.smoke)
    setup = vs.prepare(args.cache / "choice", model_dir, lambda p: workloads.choice_suite(p, n),
                       metric="choice_accuracy", lm_metric="acc,none")
    tg, lm = vs.compare(setup, args.repeat, warmup=not args.smoke)

    params, cfg = flops.non_embedding_parameters(model_dir)
    tokens = _tokens(model_dir, setup.project / "suites" / setup.suite)
    width = round(tokens["per_option"] / (4 * n))  # mean tokens of one (context, option) sequence
    rate = flops.matmul_flops_per_s(cfg, tokens=setup.batch_size * width, threads=2)
    floor_s = 2 * params * tokens["floor"] / rate

    r = Report("bench_choice", args, params={
        "examples": n, "options": 4, "non_embedding_params": params, "model": model_dir.name,
        "tokens_floor": tokens["floor"], "tokens_per_option": tokens["per_option"], "batch_size": setup.batch_size,
        "matmul_gflops": round(rate / 1e9, 2)})
    r.add("tollgate run, whole process", tg.wall_s, "s")
    r.add("lm_eval, whole process", lm.wall_s, "s")
    r.add("lm_eval / tollgate (whole process)", ratios(lm.wall_s, tg.wall_s), "x", bar=">= 1.5")
    r.add("tollgate run as stored (in-process)", tg.run_s, "s", note="runs.duration_s: model load + scoring + store")
    r.add("tollgate model calls (compute)", tg.compute_s, "s", note="sum of stored per-example latencies")
    r.add("FLOP floor", [floor_s], "s", note=f"2 x {params:,} params x {tokens['floor']:,} tokens / "
                                            f"{rate / 1e9:.1f} GFLOP/s (2 threads)")
    r.add("tollgate compute / floor", [c / floor_s for c in tg.compute_s], "x", bar="<= 2")
    r.add("tollgate whole process / floor", [w / floor_s for w in tg.wall_s], "x")
    r.add("accuracy, tollgate", tg.accuracy, "acc")
    r.add("accuracy, lm_eval", lm.accuracy, "acc")
    same = all(abs(a - b) < 1e-9 for a, b in zip(tg.accuracy, lm.accuracy, strict=True))
    r.note(f"same accuracy in both harnesses: {'yes' if same else 'NO, the comparison is not like for like'} "
           f"({tg.accuracy[0]:.4f} vs {lm.accuracy[0]:.4f}); scoring each option with its own copy of the "
           f"context (as lm_eval does) costs {tokens['per_option'] / tokens['floor']:.2f}x the floor's tokens; "
           f"Tollgate runs each shared context once")
    r.finish()
    return 0


def _tokens(model_dir: Path, suite_dir: Path) -> dict[str, int]:
    """The suite's requests as Tollgate renders them, counted with the model's tokenizer."""
    from tokenizers import Tokenizer

    from harness.suites import load_suite

    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    suite = load_suite(suite_dir)
    return flops.choice_tokens(lambda s: tok.encode(s).ids, [suite.render(e) for e in suite.examples],
                               [suite.choices_for(e) for e in suite.examples], suite.spec.target_delimiter)


if __name__ == "__main__":
    sys.exit(main())
