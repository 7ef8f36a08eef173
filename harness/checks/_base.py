"""What a check is: a factory that takes options and returns a function scoring one answer."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import TollgateInputError
from harness.registry import Registry


@dataclass
class Sample:
    """What a check sees of one example: the model's answer and what was expected."""

    output: str
    expected: Any
    input: Any = None
    example_id: str = ""
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class CheckResult:
    """A score in [0, 1], pass or fail, and a reason short enough for a table cell.

    ``metrics`` holds sub-scores (one per JSON field, say) that are aggregated like the score;
    ``counts`` holds additive counts (true/false positives) for ratio metrics such as micro-F1.
    """

    score: float
    passed: bool
    reason: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)


CheckFn = Callable[[Sample], CheckResult]
checks: Registry[Callable[..., CheckFn]] = Registry("check")


def register_check(name: str, *, replace: bool = False, tasks: tuple[str, ...] = ("generate", "choice"),
                   ) -> Callable[[Callable[..., CheckFn]], Callable[..., CheckFn]]:
    """Register a check factory: ``@register_check("has_date") def has_date(fmt="%Y") -> CheckFn``.

    ``tasks`` says which suite tasks the check can score, so a misplaced check is refused when
    the suite is loaded rather than failing in the middle of a run.
    """

    def decorate(factory: Callable[..., CheckFn]) -> Callable[..., CheckFn]:
        factory.tasks = tasks  # type: ignore[attr-defined]
        return checks.register(name, replace=replace)(factory)

    return decorate


def code_identity(spec: CheckSpec) -> str | None:
    """Hash of the source of a check that is not part of Tollgate (a plugin or a ``python`` check).

    It goes into the score's cache key, so editing your check re-scores stored answers.
    """
    import importlib
    import inspect

    from harness.hashing import hash_file

    module = None
    if spec.name == "python" and isinstance(spec.options.get("function"), str):
        try:
            module = importlib.import_module(spec.options["function"].partition(":")[0])
        except ImportError:
            return None
    else:
        factory = checks.get(spec.name)
        if not factory.__module__.startswith("harness."):
            module = inspect.getmodule(factory)
    src = inspect.getsourcefile(module) if module is not None else None
    return hash_file(Path(src)) if src else None


@dataclass(frozen=True)
class CheckSpec:
    """One entry of a suite's ``checks:`` list, with its options."""

    name: str
    options: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "options": self.options}


def parse_check_entry(entry: Any, *, file: str, line: int | None, field: str) -> CheckSpec:
    """``exact_match`` or ``{json_fields: {fields: [...]}}`` -> a CheckSpec."""
    if isinstance(entry, str):
        return CheckSpec(entry, {})
    if isinstance(entry, dict) and len(entry) == 1:
        (name, opts), = entry.items()
        if opts is None:
            opts = {}
        if not isinstance(opts, dict):
            raise TollgateInputError(f"options of check '{name}' must be a mapping, got {type(opts).__name__}.",
                                     file=file, line=line, field=field)
        return CheckSpec(str(name), dict(opts))
    raise TollgateInputError("a check is a name, or a mapping of one name to its options.",
                             file=file, line=line, field=field)


def build_check(spec: CheckSpec, *, file: str, line: int | None, field: str) -> CheckFn:
    """Call the factory with the options, turning a wrong option into a clear input error."""
    factory = checks.get(spec.name, file=file, line=line, field=field)
    params = inspect.signature(factory).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    unknown = [k for k in spec.options if k not in params and not takes_any]
    if unknown:
        allowed = ", ".join(params) or "none"
        raise TollgateInputError(f"check '{spec.name}' has no option '{unknown[0]}' (options: {allowed}).",
                                 file=file, line=line, field=field)
    from pydantic import ValidationError, validate_call

    try:
        return validate_call(factory)(**spec.options)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise TollgateInputError(f"check '{spec.name}' option '{where}': {err['msg']}; got {err.get('input')!r}.",
                                 file=file, line=line, field=field) from None
    except TollgateInputError as exc:
        exc.file, exc.line, exc.field = exc.file or file, exc.line or line, exc.field or field
        raise
    except (TypeError, ValueError) as exc:
        raise TollgateInputError(f"check '{spec.name}': {exc}.", file=file, line=line, field=field) from None
