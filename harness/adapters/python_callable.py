"""``python``: any Python callable as a model, for rule-based baselines, custom stacks and tests.

``options.callable`` is ``"package.module:function"`` (the project folder is importable). With
``batch: true`` it receives a list of prompts and returns a list; otherwise one prompt at a time.
A returned dict or list is stored as JSON text. An exception for one example is stored as that
example's error, never a crash of the run.

A callable that samples can ask for the generation settings by naming them as keyword parameters:
``seed``, ``temperature``, ``top_p``, ``max_new_tokens``, ``stop``, or ``settings`` (the whole
:class:`GenerationSettings`). Only the names it declares are passed, so ``def f(prompt)`` keeps
working, and ``def f(prompt, seed)`` gives repeated runs (``--repeats``) a different seed per repeat.
"""

from __future__ import annotations

import importlib
import inspect
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from harness.adapters.base import (
    Generation,
    GenerationSettings,
    Loglikelihood,
    ModelConfig,
    ProgressFn,
    StrictOptions,
    register_adapter,
    truncate_at_stop,
)
from harness.errors import TollgateInputError
from harness.hashing import hash_file, hash_obj


class PythonOptions(StrictOptions):
    callable: str
    batch: bool = False
    loglikelihood: str | None = None


def resolve_callable(ref: str, cfg: ModelConfig, field: str) -> Callable[..., Any]:
    """Import ``module:attr`` (or ``module.attr``) with the project folder on ``sys.path``."""
    if str(cfg.root) not in sys.path:
        sys.path.insert(0, str(cfg.root))
    mod_name, sep, attr = ref.partition(":")
    if not sep:
        mod_name, _, attr = ref.rpartition(".")
    try:
        obj: Any = importlib.import_module(mod_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError, ValueError) as exc:
        raise TollgateInputError(f"cannot import '{ref}': {exc}.", field=field) from None
    if not callable(obj):
        raise TollgateInputError(f"'{ref}' is not callable.", field=field)
    return obj


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


SETTING_NAMES = ("seed", "temperature", "top_p", "max_new_tokens", "stop", "settings")


def setting_parameters(fn: Callable[..., Any]) -> tuple[str, ...]:
    """The generation settings ``fn`` declares as keyword parameters (none for a callable without a signature)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return ()
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return tuple(n for n in SETTING_NAMES if n in params and params[n].kind in kinds)


def setting_kwargs(names: tuple[str, ...], settings: GenerationSettings) -> dict[str, Any]:
    return {n: settings if n == "settings" else getattr(settings, n) for n in names}


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class PythonModel:
    def __init__(self, cfg: ModelConfig) -> None:
        self.opts: PythonOptions = cfg.options
        self.fn = resolve_callable(self.opts.callable, cfg, f"models.{cfg.name}.options.callable")
        self.wants = setting_parameters(self.fn)
        self.ll = (resolve_callable(self.opts.loglikelihood, cfg, f"models.{cfg.name}.options.loglikelihood")
                   if self.opts.loglikelihood else None)

    def generate(self, prompts: Sequence[str], settings: GenerationSettings,
                 progress: ProgressFn | None = None) -> list[Generation]:
        kwargs = setting_kwargs(self.wants, settings)
        if self.opts.batch:
            t0 = time.perf_counter()
            try:
                outs = list(self.fn(list(prompts), **kwargs))
                if len(outs) != len(prompts):
                    raise ValueError(f"returned {len(outs)} answers for {len(prompts)} prompts")
            except Exception as exc:
                ms = (time.perf_counter() - t0) * 1000 / max(1, len(prompts))
                result = [Generation(None, ms, error=_error(exc)) for _ in prompts]
            else:
                ms = (time.perf_counter() - t0) * 1000 / max(1, len(prompts))
                result = [Generation(truncate_at_stop(_as_text(o), settings.stop), ms) for o in outs]
            if progress:
                progress(len(prompts))
            return result
        result = []
        for p in prompts:
            t0 = time.perf_counter()
            try:
                g = Generation(truncate_at_stop(_as_text(self.fn(p, **kwargs)), settings.stop), 0.0)
            except Exception as exc:
                g = Generation(None, 0.0, error=_error(exc))
            g.latency_ms = (time.perf_counter() - t0) * 1000
            result.append(g)
            if progress:
                progress(1)
        return result

    def loglikelihood(self, requests: Sequence[tuple[str, str]],
                      progress: ProgressFn | None = None) -> list[Loglikelihood]:
        if self.ll is None:
            raise TollgateInputError("this python model has no 'loglikelihood' callable.")
        out = []
        for context, continuation in requests:
            t0 = time.perf_counter()
            try:
                lp = float(self.ll(context, continuation))
                out.append(Loglikelihood(lp, False, 0, (time.perf_counter() - t0) * 1000))
            except Exception as exc:
                out.append(Loglikelihood(float("nan"), False, 0, 0.0, error=_error(exc)))
            if progress:
                progress(1)
        return out

    def close(self) -> None:
        pass


def _fingerprint(cfg: ModelConfig) -> str:
    """The callable's name, its module's source and the model's version label."""
    parts: list[Any] = [cfg.adapter, cfg.options.model_dump(), cfg.version]
    for ref in filter(None, (cfg.options.callable, cfg.options.loglikelihood)):
        fn = resolve_callable(ref, cfg, f"models.{cfg.name}.options")
        try:
            src = inspect.getsourcefile(inspect.getmodule(fn))  # type: ignore[arg-type]
        except TypeError:
            src = None
        parts.append(hash_file(Path(src)) if src else ref)
    return hash_obj(*parts)


@register_adapter("python", options=PythonOptions, fingerprint=_fingerprint, needs="none",
                  capabilities=lambda cfg: frozenset({"generate", "loglikelihood"} if cfg.options.loglikelihood
                                                     else {"generate"}))
def load_python(cfg: ModelConfig) -> PythonModel:
    return PythonModel(cfg)
