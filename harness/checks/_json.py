"""Checks on JSON answers: validity, and field-by-field accuracy for extraction tasks."""

from __future__ import annotations

import json
from typing import Any

from harness.checks._base import CheckFn, CheckResult, Sample, register_check
from harness.checks._match import normalize_text

_decoder = json.JSONDecoder()


def parse_json_output(text: str, *, strict: bool = False) -> tuple[Any, str | None]:
    """The JSON value in a model's answer, or the reason there is none.

    Models often wrap JSON in prose or a code fence; unless ``strict``, the first JSON object in
    the text counts, as a downstream parser would take it.
    """
    t = text.strip()
    try:
        return json.loads(t), None
    except json.JSONDecodeError as exc:
        err = f"not JSON: {exc.msg} at char {exc.pos}"
    if strict:
        return None, err
    start = t.find("{")
    while start != -1:
        try:
            obj, _ = _decoder.raw_decode(t, start)
            return obj, None
        except json.JSONDecodeError:
            start = t.find("{", start + 1)
    return None, err


@register_check("json_valid")
def json_valid(strict: bool = False, object_only: bool = True) -> CheckFn:
    """The answer is (or contains) valid JSON.

    Args:
        strict: the whole answer must be JSON, not merely contain a JSON object.
        object_only: require a JSON object, not a list, string or number.
    """

    def check(s: Sample) -> CheckResult:
        obj, err = parse_json_output(s.output, strict=strict)
        if err is not None:
            return CheckResult(0.0, False, err)
        if object_only and not isinstance(obj, dict):
            return CheckResult(0.0, False, f"JSON is a {type(obj).__name__}, not an object")
        return CheckResult(1.0, True)

    return check


def _norm_value(v: Any, normalize: bool) -> Any:
    """Comparable form of a field value: numbers by value (5 == 5.0), text normalised, null as None."""
    if v is None or (isinstance(v, str) and not v.strip()):
        return None
    if isinstance(v, bool):
        return ("bool", v)
    if isinstance(v, (int, float)):
        return ("num", float(v))
    if isinstance(v, (dict, list)):
        return ("json", json.dumps(v, sort_keys=True))
    return normalize_text(v) if normalize else v.strip()


@register_check("json_fields")
def json_fields(fields: list[str] | None = None, normalize: bool = True) -> CheckFn:
    """Field-by-field comparison of a JSON answer with the expected object.

    The score is the fraction of fields right (field accuracy); each field is also reported on
    its own, and true/false positive counts give the suite's micro-F1. An expected ``null`` is
    right when the answer leaves the field out or null, which is how missing information should
    be reported.

    Args:
        fields: the fields to compare; default every key of the expected object.
        normalize: compare values after case, punctuation and whitespace normalisation.
    """

    def check(s: Sample) -> CheckResult:
        if not isinstance(s.expected, dict):
            return CheckResult(0.0, False, "expected value is not a JSON object")
        names = fields or sorted(s.expected)
        if not names:
            return CheckResult(0.0, False, "the expected object has no fields to compare")
        obj, err = parse_json_output(s.output)
        got = obj if isinstance(obj, dict) else {}
        per: dict[str, float] = {}
        tp = fp = fn = 0
        wrong = []
        absent = [n for n in names if n not in s.expected]
        if absent:
            return CheckResult(0.0, False, f"the expected object has no field '{absent[0]}' (a typo in 'fields'?)")
        for name in names:
            want = _norm_value(s.expected.get(name), normalize)
            have = _norm_value(got.get(name), normalize)
            ok = want == have
            per[name] = float(ok)
            if ok and want is not None:
                tp += 1
            if not ok:
                wrong.append(name)
                fp += have is not None
                fn += want is not None
        score = sum(per.values()) / len(per) if per else 0.0
        if err is not None or not isinstance(obj, dict):
            reason = err or "JSON answer is not an object"
        elif wrong:
            shown = [f"{n}: expected {s.expected.get(n)!r}, got {got.get(n)!r}" for n in wrong[:3]]
            reason = "; ".join(shown) + (f"; +{len(wrong) - 3} more" if len(wrong) > 3 else "")
        else:
            reason = ""
        return CheckResult(score, not wrong and isinstance(obj, dict), reason, metrics=per,
                           counts={"tp": tp, "fp": fp, "fn": fn})

    return check
