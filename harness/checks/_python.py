"""``python``: a check written as a plain function in the user's project, no registry needed."""

from __future__ import annotations

import importlib
from typing import Any

from harness.checks._base import CheckFn, CheckResult, Sample, register_check
from harness.errors import TollgateInputError


def _coerce(value: Any) -> CheckResult:
    """Accept what a person naturally returns: a bool, a score, (score, reason) or a CheckResult."""
    if isinstance(value, CheckResult):
        return value
    if isinstance(value, bool):
        return CheckResult(float(value), value)
    if isinstance(value, (int, float)):
        score = min(1.0, max(0.0, float(value)))
        return CheckResult(score, score >= 1.0)
    if isinstance(value, tuple) and len(value) == 2:
        inner = _coerce(value[0])
        inner.reason = str(value[1])
        return inner
    raise TypeError(f"a python check must return bool, float, (score, reason) or CheckResult, "
                    f"not {type(value).__name__}")


@register_check("python")
def python(function: str, **options: Any) -> CheckFn:
    """Call ``module:function(output, expected, input, **options)`` from the project folder.

    Args:
        function: ``module:function``; the project folder is importable.
        options: any further keyword arguments are passed to the function.
    """
    mod_name, sep, attr = function.partition(":")
    if not sep or not attr:
        raise TollgateInputError(f"function must look like 'module:function', got {function!r}.")
    try:
        fn = getattr(importlib.import_module(mod_name), attr)
    except (ImportError, AttributeError) as exc:
        raise TollgateInputError(f"cannot import check function {function!r}: {exc}.") from None

    def check(s: Sample) -> CheckResult:
        try:
            return _coerce(fn(s.output, s.expected, s.input, **options))
        except Exception as exc:
            return CheckResult(0.0, False, f"check raised {type(exc).__name__}: {exc}")

    return check
