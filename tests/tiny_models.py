"""Tiny real transformers models for tests: a tokenizer trained on the fly, fixed seeds, safetensors."""

from __future__ import annotations

from pathlib import Path

CORPUS = [
    "The claimant Anna Berg reported damage to the rear bumper on 2024-03-01.",
    "Policy number PN-12345 covers the vehicle. Injury: whiplash.",
    "Q: What is the capital of France? A: Paris",
    "Q: What is the capital of Japan? A: Tokyo",
    "yes no maybe true false positive negative",
] * 20


def train_tokenizer(vocab_size: int = 300):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>", "<pad>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>",
                                   pad_token="<pad>")


def build_causal(out: Path, seed: int = 0, n_embd: int = 32) -> Path:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = train_tokenizer()
    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=len(tok), n_embd=n_embd, n_layer=2, n_head=2, n_positions=256,
                     bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    model = GPT2LMHeadModel(cfg)
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out


def build_classifier(out: Path, seed: int = 0) -> Path:
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    tok = train_tokenizer()
    tok.add_special_tokens({"cls_token": "[CLS]", "sep_token": "[SEP]"})
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128, num_labels=2,
                     id2label={0: "negative", 1: "positive"}, label2id={"negative": 0, "positive": 1},
                     pad_token_id=tok.pad_token_id)
    model = BertForSequenceClassification(cfg)
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out
