"""Checks (scorers): a registry of factories, each returning a function that scores one answer.

Register your own with ``@register_check("name")`` in a module listed under ``plugins:``.
"""

from harness.checks import _choice, _json, _match, _python  # noqa: F401  (registers built-ins)
from harness.checks._base import (
    CheckFn,
    CheckResult,
    CheckSpec,
    Sample,
    build_check,
    checks,
    code_identity,
    parse_check_entry,
    register_check,
)
from harness.checks._choice import pick_choice
from harness.checks._json import parse_json_output
from harness.checks._match import normalize_text

__all__ = [
    "CheckFn", "CheckResult", "CheckSpec", "Sample", "build_check", "checks", "code_identity", "normalize_text",
    "parse_check_entry", "parse_json_output", "pick_choice", "register_check",
]
