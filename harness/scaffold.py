"""``tollgate init``: a small project that validates and runs at once, to copy from."""

from __future__ import annotations

from pathlib import Path

from harness.errors import TollgateInputError

PROJECT_YAML = """\
# Tollgate project file. Paths are relative to this file.
store: .tollgate/tollgate.duckdb

models:
  # A rule-based baseline written in Python (models/rules.py): runs anywhere, no weights needed.
  rules:
    adapter: python
    role: production
    options:
      callable: models.rules:answer
  # A transformers causal LM saved with save_pretrained (safetensors) in a local folder:
  # candidate:
  #   adapter: hf-causal
  #   path: models/candidate
  #   role: candidate
  #   training_data: data/train.jsonl   # read by the contamination and memorisation checks
  #   generation: {max_new_tokens: 32, temperature: 0, stop: ["\\n"]}
  #   options: {batch_size: 16, threads: 2}
  # An OpenAI-compatible endpoint:
  # production-api:
  #   adapter: openai
  #   url: http://127.0.0.1:8000/v1
  #   version: "2026-11-01"             # bump when the server's model changes: it is the cache key
  #   options: {model: my-model, api: chat, api_key_env: OPENAI_API_KEY}

suites:
  - suites/*
"""

SUITE_YAML = """\
# A suite: what to ask (prompt template over each example's input fields) and how to score it.
name: example
kind: heldout           # train_sample | validation | heldout | edge | general | baseline
task: generate          # generate (free text or JSON) | choice (pick an option by log-likelihood)
description: Capitals of countries; a first suite to copy.
prompt: "Q: What is the capital of {{ country }}?\\nA:"
generation:
  max_new_tokens: 16
  stop: ["\\n"]
checks:
  - normalized_match    # case, punctuation and spacing do not matter
tags: [geography]
"""

EXAMPLES = [
    ('c1', 'France', 'Paris', '["europe"]'),
    ('c2', 'Japan', 'Tokyo', '["asia"]'),
    ('c3', 'Kenya', 'Nairobi', '["africa"]'),
    ('c4', 'Peru', 'Lima', '["south-america"]'),
    ('c5', 'Canada', 'Ottawa', '["north-america", "tricky"]'),
    ('c6', 'Australia', 'Canberra', '["oceania", "tricky"]'),
    ('c7', 'Switzerland', 'Bern', '["europe", "tricky"]'),
    ('c8', 'Norway', 'Oslo', '["europe"]'),
]

RULES_PY = '''\
"""A rule-based baseline: a lookup table with the usual mistakes. Replace with your own model."""

KNOWN = {"france": "Paris", "japan": "Tokyo", "kenya": "Nairobi", "peru": "Lima",
         "canada": "Toronto", "australia": "Sydney", "switzerland": "Zurich", "norway": "Oslo"}


def answer(prompt: str) -> str:
    country = prompt.split("capital of ", 1)[-1].split("?", 1)[0].strip().lower()
    return " " + KNOWN.get(country, "I don't know")
'''


def init_project(target: Path, *, force: bool = False) -> list[Path]:
    """Write the scaffold into ``target``; refuses to overwrite a project unless ``force``."""
    project = target / "tollgate.yaml"
    if project.exists() and not force:
        raise TollgateInputError("a project already exists here; use --force to overwrite it.", file=project)
    files = {
        project: PROJECT_YAML,
        target / "suites" / "example" / "suite.yaml": SUITE_YAML,
        target / "suites" / "example" / "examples.jsonl": "".join(
            f'{{"id": "{i}", "input": {{"country": "{c}"}}, "expected": "{a}", "tags": {t}}}\n'
            for i, c, a, t in EXAMPLES),
        target / "models" / "__init__.py": "",
        target / "models" / "rules.py": RULES_PY,
    }
    clash = [p for p in files if p.exists() and p != project]
    if clash and not force:
        raise TollgateInputError("would overwrite an existing file; use --force to overwrite it.", file=clash[0])
    gitignore = target / ".gitignore"
    existing = gitignore.read_text() if gitignore.exists() else ""
    if ".tollgate/" not in existing.splitlines():
        files[gitignore] = existing + ("" if not existing or existing.endswith("\n") else "\n") + ".tollgate/\n"
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return sorted(files)
