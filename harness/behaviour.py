"""Behavioural tests (CheckList's invariance and directional expectations): an example scored
against the model's own answer on a source example, not only against a label.

``invariant_to: <id>`` says a rewrite must not change the answer (typos, legalese, an injected
instruction); ``directional: {of: <id>, changes: [...], keeps: [...]}`` says which fields of the
answer must change and which must stay (a new claimant name must change ``claimant_name`` and
nothing else). JSON answers are compared field by field, so a failure names the field that moved.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness.errors import TollgateInputError


class _DirectionalSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    of: str = Field(min_length=1)
    changes: list[str] | Literal["output"] = Field(min_length=1)
    keeps: list[str] | Literal["rest"] = "rest"


@dataclass(frozen=True)
class Directional:
    """``of``: the source example; ``changes``: fields that must differ from the source's answer
    (or ``"output"``: the whole answer); ``keeps``: fields that must not (``"rest"``: all others)."""

    of: str
    changes: tuple[str, ...] | str
    keeps: tuple[str, ...] | str = "rest"

    def as_dict(self) -> dict[str, Any]:
        return {"of": self.of, "changes": self.changes if isinstance(self.changes, str) else list(self.changes),
                "keeps": self.keeps if isinstance(self.keeps, str) else list(self.keeps)}


def parse_directional(raw: Any, *, file: Path | str, line: int) -> Directional:
    try:
        spec = _DirectionalSpec.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"] if not str(p).startswith(("list[", "literal[")))
        raise TollgateInputError(f"{err['msg']}; write {{\"of\": \"<source id>\", \"changes\": [\"field\", ...], "
                                 f"\"keeps\": \"rest\"}} (changes may also be \"output\").",
                                 file=file, line=line, field=f"directional.{where}".rstrip(".")) from None
    if isinstance(spec.changes, list) and isinstance(spec.keeps, list) and set(spec.changes) & set(spec.keeps):
        both = sorted(set(spec.changes) & set(spec.keeps))[0]
        raise TollgateInputError(f"field '{both}' cannot both change and stay.", file=file, line=line,
                                 field="directional.keeps")
    return Directional(spec.of, spec.changes if isinstance(spec.changes, str) else tuple(spec.changes),
                       spec.keeps if isinstance(spec.keeps, str) else tuple(spec.keeps))


def _fields(text: str) -> dict[str, Any] | None:
    from harness.checks import parse_json_output

    obj, _ = parse_json_output(text)
    return obj if isinstance(obj, dict) else None


def _same(a: Any, b: Any) -> bool:
    from harness.checks._json import _norm_value

    return _norm_value(a, True) == _norm_value(b, True)


def _show(v: Any, width: int = 40) -> str:
    s = repr(v)
    return s if len(s) <= width else s[:width - 1] + "…"


def invariance(output: str, source_output: str, source_id: str) -> Any:
    """Pass when the answer equals the source's answer (field by field for JSON, else as text)."""
    from harness.checks import CheckResult, normalize_text

    src, got = _fields(source_output), _fields(output)
    if src is None:
        same = normalize_text(output) == normalize_text(source_output)
        return CheckResult(float(same), same, "" if same else
                           f"answer changed from {source_id}'s: {_show(source_output)} -> {_show(output)}")
    if got is None:
        return CheckResult(0.0, False, f"answer is no longer a JSON object (on {source_id} it was)")
    names = sorted(set(src) | set(got))
    per = {n: float(_same(src.get(n), got.get(n))) for n in names}
    moved = [n for n in names if not per[n]]
    reason = "; ".join(f"{n} changed: {_show(src.get(n))} -> {_show(got.get(n))}" for n in moved[:3])
    if moved:
        reason = f"vs {source_id}: {reason}" + (f"; +{len(moved) - 3} more" if len(moved) > 3 else "")
    return CheckResult(sum(per.values()) / len(per) if per else 1.0, not moved, reason, metrics=per)


def directional(output: str, source_output: str, spec: Directional) -> Any:
    """Pass when the declared fields changed and the others did not; the reason names each miss."""
    from harness.checks import CheckResult, normalize_text

    if spec.changes == "output":
        moved = normalize_text(output) != normalize_text(source_output)
        return CheckResult(float(moved), moved, "" if moved else f"answer did not change from {spec.of}'s")
    src, got = _fields(source_output), _fields(output)
    if src is None or got is None:
        which = spec.of + "'s answer" if src is None else "the answer"
        return CheckResult(0.0, False, f"{which} is not a JSON object, so fields cannot be compared")
    keeps = sorted((set(src) | set(got)) - set(spec.changes)) if spec.keeps == "rest" else list(spec.keeps)
    per: dict[str, float] = {}
    misses = []
    for n in spec.changes:
        per[n] = float(not _same(src.get(n), got.get(n)))
        if not per[n]:
            misses.append(f"{n} did not change (still {_show(got.get(n))})")
    for n in keeps:
        per[n] = float(_same(src.get(n), got.get(n)))
        if not per[n]:
            misses.append(f"{n} changed: {_show(src.get(n))} -> {_show(got.get(n))}")
    reason = f"vs {spec.of}: " + "; ".join(misses[:3]) if misses else ""
    return CheckResult(sum(per.values()) / len(per), not misses, reason, metrics=per)


def behaviour_result(example: Any, output: str, source_output: str) -> tuple[str, Any]:
    """(metric name, result) for an example with ``invariant_to`` or ``directional``."""
    if example.invariant_to is not None:
        return "invariance", invariance(output, source_output, example.invariant_to)
    return "directional", directional(output, source_output, example.directional)


def check_references(examples: list[Any], sources: dict[str, Any], data_path: Path, source_name: str) -> None:
    """Every ``invariant_to`` / ``directional.of`` names an example that exists, and not a behavioural one."""
    for ex in examples:
        sid = ex.source_id
        if sid is None:
            continue
        field = "invariant_to" if ex.invariant_to is not None else "directional.of"
        if sid not in sources:
            raise TollgateInputError(f"names source example '{sid}', which suite '{source_name}' does not have.",
                                     file=data_path, line=ex.line, field=field)
        if sources[sid].source_id is not None:
            raise TollgateInputError(f"source example '{sid}' is itself compared with another example; "
                                     f"point at the original instead.", file=data_path, line=ex.line, field=field)
