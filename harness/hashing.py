"""Content hashes: the identity of models, suites, examples and cache entries.

Every hash is SHA-256 over a canonical form (sorted-key JSON, raw file bytes), so the same
content always gives the same key on any machine and any Python version.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

_CHUNK = 1 << 20


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


def hash_obj(*parts: Any) -> str:
    """Hash of a JSON-able value (or several): keys sorted, so dict order never matters."""
    h = hashlib.sha256()
    for p in parts:
        h.update(canonical_json(p).encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()


def hash_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def hash_tree(root: Path) -> dict[str, str]:
    """Hash of every regular file under ``root`` (dot-files skipped), by relative path.

    A model directory's identity is its files: config, tokenizer and weights. Any change to any
    of them changes the fingerprint and therefore every cache key of that model.
    """
    if root.is_file():
        return {root.name: hash_file(root)}
    out: dict[str, str] = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or not p.is_file():
            continue
        out[rel.as_posix()] = hash_file(p)
    return out
