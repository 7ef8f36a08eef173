"""``tollgate suite lint``: the data problems that quietly bend every number computed on a suite.

Exact and near duplicates (one example counted twice), the same input with conflicting expected
answers, expected objects missing required fields, empty fields, eval examples that leak from the
training data, untagged examples and lopsided tags or labels. Works on raw JSONL too, so a
training export can be checked before anyone trains on it. ``--fix`` only ever removes exact
duplicates, and reports what it removed.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.checks import normalize_text
from harness.examples import read_jsonl
from harness.overlap import TrainingIndex, text_of

NEAR_DUPLICATE = 0.9  # Jaccard similarity of word 5-gram shingles
SHINGLE = 5


@dataclass
class Finding:
    file: str
    check: str
    severity: str  # "error" | "warning"
    message: str
    lines: list[int] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _shingles(words: list[str]) -> set[int]:
    if len(words) < SHINGLE:
        return {hash(" ".join(words))}
    return {hash(" ".join(words[i:i + SHINGLE])) for i in range(len(words) - SHINGLE + 1)}


def lint_rows(path: Path, rows: list[tuple[int, dict[str, Any]]], *, required: list[str] | None = None,
              training: TrainingIndex | None = None) -> list[Finding]:
    """All findings for one file's rows (line number, object)."""
    f = str(path)
    out: list[Finding] = []
    by_input: dict[str, list[tuple[int, dict[str, Any]]]] = defaultdict(list)
    for ln, obj in rows:
        by_input[normalize_text(text_of(obj.get("input")))].append((ln, obj))
    for group in by_input.values():
        if len(group) < 2:
            continue
        labels = {_canon(o.get("expected")) for _, o in group}
        lines, ids = [ln for ln, _ in group], [str(o.get("id")) for _, o in group]
        if len(labels) > 1:
            out.append(Finding(f, "label-conflict", "error",
                               f"the same input has {len(labels)} different expected answers.", lines, ids))
        else:
            out.append(Finding(f, "duplicate", "warning",
                               f"{len(group)} copies of one example (same input and answer); --fix keeps the first.",
                               lines, ids))
    # near duplicates: candidate pairs share a shingle; confirmed by Jaccard similarity
    uniq = [(g[0][0], str(g[0][1].get("id")), _shingles(key.split())) for key, g in by_input.items() if key]
    index: dict[int, list[int]] = defaultdict(list)
    for k, (_, _, sh) in enumerate(uniq):
        for h in list(sh)[:8]:
            index[h].append(k)
    seen: set[tuple[int, int]] = set()
    for bucket in index.values():
        if len(bucket) > 200:  # a shingle shared by hundreds is template boilerplate, not evidence
            continue
        for i in range(len(bucket)):
            for j in range(i + 1, len(bucket)):
                a, b = bucket[i], bucket[j]
                if (a, b) in seen:
                    continue
                seen.add((a, b))
                sa, sb = uniq[a][2], uniq[b][2]
                sim = len(sa & sb) / len(sa | sb)
                if sim >= NEAR_DUPLICATE:
                    out.append(Finding(f, "near-duplicate", "warning",
                                       f"inputs are {sim:.0%} alike (word {SHINGLE}-grams).",
                                       [uniq[a][0], uniq[b][0]], [uniq[a][1], uniq[b][1]]))
    # required fields and empty values
    dicts = [(ln, o) for ln, o in rows if isinstance(o.get("expected"), dict)]
    if dicts and required is None:
        counts = Counter(k for _, o in dicts for k in o["expected"])
        required = [k for k, c in counts.items() if c > 0.75 * len(dicts)]  # most have it: the rest miss it
    for ln, o in dicts:
        missing = [k for k in required or [] if k not in o["expected"]]
        if missing:
            out.append(Finding(f, "missing-field", "error", f"expected object lacks {', '.join(missing)}.", [ln],
                               [str(o.get("id"))]))
    for ln, o in rows:
        empty = [k for k, v in (o.get("input") or {}).items() if isinstance(v, str) and not v.strip()] \
            if isinstance(o.get("input"), dict) else (["input"] if not str(o.get("input") or "").strip() else [])
        if isinstance(o.get("expected"), str) and not o["expected"].strip():
            empty.append("expected")
        if empty:
            out.append(Finding(f, "empty-field", "error", f"empty or whitespace-only: {', '.join(empty)}.", [ln],
                               [str(o.get("id"))]))
    # leakage from the training data
    if training:
        leaked = [(ln, str(o.get("id"))) for ln, o in rows if training.contains(o.get("input"))]
        if leaked:
            out.append(Finding(f, "leakage", "error", f"{len(leaked)} example(s) also occur in the training data.",
                               [ln for ln, _ in leaked][:50], [i for _, i in leaked][:50]))
    # tags and balance
    untagged = [(ln, str(o.get("id"))) for ln, o in rows if not o.get("tags")]
    if untagged:
        out.append(Finding(f, "untagged", "warning", f"{len(untagged)} example(s) have no tags, so failures cannot "
                                                     f"be sliced.", [ln for ln, _ in untagged][:50],
                           [i for _, i in untagged][:50]))
    labels = Counter(o.get("expected") for _, o in rows if isinstance(o.get("expected"), str))
    if len(labels) > 1 and max(labels.values()) > 0.8 * sum(labels.values()):
        top, n = labels.most_common(1)[0]
        out.append(Finding(f, "imbalance", "warning", f"{n / sum(labels.values()):.0%} of the examples expect "
                                                      f"{top!r}: a model that always says it scores that high."))
    return out


def fix_duplicates(path: Path, findings: list[Finding]) -> dict[str, Any]:
    """Remove exact duplicates (all but the first copy), rewrite the file, return the report."""
    drop = {ln for fd in findings if fd.check == "duplicate" for ln in fd.lines[1:]}
    if not drop:
        return {"file": str(path), "removed": []}
    kept, removed = [], []
    with path.open("rb") as fh:
        for ln, raw in enumerate(fh, start=1):
            if ln in drop:
                removed.append({"line": ln, "text": raw.decode("utf-8").rstrip("\n")})
            else:
                kept.append(raw)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(b"".join(kept))
    tmp.replace(path)  # atomic: the file is the old one or the new one, never half
    return {"file": str(path), "removed": removed}


def lint_file(path: Path, **kwargs: Any) -> list[Finding]:
    return lint_rows(path, read_jsonl(path), **kwargs)
