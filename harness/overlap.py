"""Does a text occur in the training data? One answer, shared by the contamination flag and lint.

An example counts as seen when its normalised text equals a training text, or when at least a
share of its word n-grams (13 by default, lm-eval's length) occur in the training data: lm-eval's
"any shared 13-gram" flags nearly every templated document, so a share is required.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.checks import normalize_text


def text_of(value: Any) -> str:
    """All the text in an input: a string, or the strings of an object or list, joined."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return " ".join(text_of(v) for v in value.values())
    if isinstance(value, list):
        return " ".join(text_of(v) for v in value)
    return "" if value is None else str(value)


def ngrams(words: list[str], n: int) -> set[int]:
    return {hash(" ".join(words[i:i + n])) for i in range(len(words) - n + 1)}


@dataclass
class TrainingIndex:
    n: int = 13
    share: float = 0.5
    texts: set[str] = field(default_factory=set)
    grams: set[int] = field(default_factory=set)

    def add_file(self, path: Path) -> TrainingIndex:
        """Index a JSONL training file: each line's ``input`` (or the whole object, or the raw line)."""
        with path.open(encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                    text = text_of(obj.get("input", obj) if isinstance(obj, dict) else obj)
                except json.JSONDecodeError:
                    text = line
                norm = normalize_text(text)
                self.texts.add(norm)
                self.grams |= ngrams(norm.split(), self.n)
        return self

    def __bool__(self) -> bool:
        return bool(self.texts)

    def contains(self, value: Any) -> bool:
        norm = normalize_text(text_of(value))
        if norm in self.texts:
            return True
        mine = ngrams(norm.split(), self.n)
        return bool(mine) and len(mine & self.grams) / len(mine) >= self.share
