"""The transformers adapters on real tiny models built in fixtures (random weights, fixed seeds)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch
from conftest import run_cli, write_project, write_suite

from harness.adapters import adapters
from harness.adapters.base import GenerationSettings, ModelConfig
from harness.errors import TollgateInputError


def _cfg(path, adapter="hf-causal", **options) -> ModelConfig:
    spec = adapters.get(adapter)
    return ModelConfig(name="m", adapter=adapter, options=spec.options.model_validate(options),
                       generation=GenerationSettings(max_new_tokens=6), path=path)


PROMPTS = ["Q: What is the capital of France? A:", "yes", "The claimant Anna Berg reported damage to the",
           "Policy number", "no no no no", "Injury:"]


def test_batched_left_padded_generation_equals_one_by_one(tiny_causal_dir):
    batched = adapters.get("hf-causal").load(_cfg(tiny_causal_dir, batch_size=4))
    single = adapters.get("hf-causal").load(_cfg(tiny_causal_dir, batch_size=1))
    s = GenerationSettings(max_new_tokens=6)
    a = batched.generate(PROMPTS, s)
    b = single.generate(PROMPTS, s)
    assert [g.text for g in a] == [g.text for g in b]
    assert all(g.completion_tokens <= 6 and g.prompt_tokens > 0 for g in a)


def test_stop_sequences_cut_the_answer(tiny_causal_dir):
    model = adapters.get("hf-causal").load(_cfg(tiny_causal_dir))
    free = model.generate(PROMPTS, GenerationSettings(max_new_tokens=12))
    for g in free:
        if len(g.text) > 2:
            stop = g.text[1:3]
            cut = model.generate([PROMPTS[free.index(g)]], GenerationSettings(max_new_tokens=12, stop=(stop,)))[0]
            assert cut.text == g.text[: g.text.find(stop)]
            return
    pytest.skip("the random model produced no text long enough to cut")


def test_loglikelihood_matches_a_direct_forward_pass(tiny_causal_dir):
    model = adapters.get("hf-causal").load(_cfg(tiny_causal_dir, batch_size=3))
    reqs = [("Q: What is the capital of France? A:", " Paris"), ("Q: What is the capital of France? A: ", "Tokyo"),
            ("yes", " no"), ("", "Policy")]
    got = model.loglikelihood(reqs)
    tok, lm = model.tokenizer, model.model
    for (ctx, cont), ll in zip(reqs, got, strict=True):
        if ctx.endswith(" "):  # lm-eval moves the trailing space to the continuation
            ctx, cont = ctx[:-1], " " + cont
        whole = tok.encode(ctx + cont)
        n_ctx = len(tok.encode(ctx)) if ctx else 0
        ids = whole if ctx else [tok.bos_token_id, *whole]
        n_ctx = n_ctx if ctx else 1
        with torch.no_grad():
            logp = torch.log_softmax(lm(torch.tensor([ids])).logits[0].float(), -1)
        expected = sum(logp[i - 1, ids[i]].item() for i in range(n_ctx, len(ids)))
        assert ll.logprob == pytest.approx(expected, abs=1e-4)
        assert ll.n_tokens == len(ids) - n_ctx


def test_pickled_weights_are_refused_unless_allowed(tiny_causal_dir, tmp_path):
    d = tmp_path / "pickled"
    shutil.copytree(tiny_causal_dir, d)
    state = {k: v for k, v in adapters.get("hf-causal").load(_cfg(tiny_causal_dir)).model.state_dict().items()}
    (d / "model.safetensors").unlink()
    torch.save(state, d / "pytorch_model.bin")
    with pytest.raises(TollgateInputError, match="pickled weights"):
        adapters.get("hf-causal").load(_cfg(d))
    assert adapters.get("hf-causal").load(_cfg(d, allow_unsafe_weights=True)) is not None


def test_fingerprint_changes_with_weights_and_output_options_only(tiny_causal_dir, tmp_path):
    fp = adapters.get("hf-causal").fingerprint
    d = tmp_path / "copy"
    shutil.copytree(tiny_causal_dir, d)
    base = fp(_cfg(d))
    assert fp(_cfg(d, batch_size=64, threads=1)) == base
    assert fp(_cfg(d, dtype="bfloat16")) != base
    cfg = json.loads((d / "config.json").read_text())
    cfg["n_layer"] = cfg["n_layer"]  # rewriting the same content keeps the fingerprint
    (d / "config.json").write_text(json.dumps(cfg))
    data = bytearray((d / "model.safetensors").read_bytes())
    data[-1] ^= 1
    (d / "model.safetensors").write_bytes(bytes(data))
    assert fp(_cfg(d)) != base


def test_classifier_answers_a_label_with_its_probability(tiny_classifier_dir):
    model = adapters.get("hf-classifier").load(_cfg(tiny_classifier_dir, adapter="hf-classifier", batch_size=2))
    gens = model.generate(["yes this is good", "no", "maybe true false"], GenerationSettings())
    for g in gens:
        assert g.text in ("negative", "positive")
        probs = g.details["probabilities"]
        assert probs[g.text] == g.details["probability"] == max(probs.values())
        assert sum(probs.values()) == pytest.approx(1.0)


def test_cli_runs_generate_and_choice_suites_on_a_transformers_model(tiny_causal_dir, tmp_path):
    write_project(tmp_path, f"""\
  tiny:
    adapter: hf-causal
    path: {tiny_causal_dir}
    role: candidate
    generation: {{max_new_tokens: 4}}
    options: {{batch_size: 4}}
""")
    write_suite(tmp_path, "gen", [{"id": str(i), "input": p, "expected": "x"} for i, p in enumerate(PROMPTS)],
                extra="checks: [exact_match, json_valid]\n")
    write_suite(tmp_path, "mc", [{"id": str(i), "input": {"q": p, "opts": ["yes", "no", "maybe"]}, "expected": i % 3}
                                 for i, p in enumerate(PROMPTS)], task="choice", prompt="{{ q }}",
                extra="choices_field: opts\n")
    res = run_cli("run", "--model", "tiny", "--format", "json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    rows = json.loads(res.stdout)
    assert {(r["suite"], r["metric"]) for r in rows} >= {("gen", "exact_match"), ("gen", "json_valid"),
                                                          ("mc", "choice_accuracy")}
    assert all(r["n"] == 6 and r["stage"] == "post-finetune" for r in rows)
    assert "ex/s" in res.stderr  # the progress bar shows a rate
    again = run_cli("run", "--model", "tiny", "--format", "json", cwd=tmp_path)
    assert all(r["cached"] == 6 for r in json.loads(again.stdout))
    # a fully cached run never loads the model (nor imports torch)
    probe = subprocess.run([sys.executable, "-c", (
        "import sys; from harness.cli import main; main(['run', '--model', 'tiny', '--no-progress', "
        "'--format', 'json']); assert 'torch' not in sys.modules, 'torch imported'")],
        cwd=tmp_path, capture_output=True, text=True)
    assert probe.returncode == 0, probe.stderr
