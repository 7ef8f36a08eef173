"""What a model adapter is: the data that goes in and out, and the registry that names them.

An adapter is registered as an :class:`AdapterSpec`: an options schema (checked by ``validate``
without loading anything), a cheap ``fingerprint`` (so a fully cached run never loads the model)
and a ``load`` that returns a :class:`Model`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict

from harness.registry import Registry

ProgressFn = Callable[[int], None]


class StrictOptions(BaseModel):
    """Base for adapter options: unknown keys are errors, never silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class GenerationSettings:
    """Everything that changes what a model writes; part of every cache key."""

    max_new_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int = 0

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["stop"] = list(self.stop)
        return d


@dataclass
class Generation:
    """One model answer. ``error`` set means the example failed to run, not that it was wrong."""

    text: str | None
    latency_ms: float
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Loglikelihood:
    """Log-probability of a continuation given a context, as lm-eval's ``loglikelihood``."""

    logprob: float
    is_greedy: bool
    n_tokens: int
    latency_ms: float = 0.0
    error: str | None = None


@dataclass
class ModelConfig:
    """A model entry of the project file, resolved against the project directory."""

    name: str
    adapter: str
    options: Any
    generation: GenerationSettings
    path: Path | None = None
    url: str | None = None
    role: str | None = None
    version: str | None = None
    root: Path = Path(".")


def truncate_at_stop(text: str, stop: Sequence[str]) -> str:
    """Cut the text at the first stop sequence, as every OpenAI-style API does."""
    cut = len(text)
    for s in stop:
        if s:
            i = text.find(s)
            if i != -1:
                cut = min(cut, i)
    return text[:cut]


class Model(Protocol):
    """A loaded model. Batched calls so adapters can sort and pad as suits them."""

    def generate(self, prompts: Sequence[str], settings: GenerationSettings,
                 progress: ProgressFn | None = None) -> list[Generation]: ...

    def loglikelihood(self, requests: Sequence[tuple[str, str]],
                      progress: ProgressFn | None = None) -> list[Loglikelihood]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class AdapterSpec:
    name: str
    load: Callable[[ModelConfig], Model]
    fingerprint: Callable[[ModelConfig], str]
    options: type[StrictOptions]
    capabilities: frozenset[str] | Callable[[ModelConfig], frozenset[str]]
    needs: str = "path"  # "path", "url" or "none": which location key the model entry must have

    def capabilities_of(self, cfg: ModelConfig) -> frozenset[str]:
        """What this model can do: fixed per adapter, or decided by the model's options."""
        return self.capabilities(cfg) if callable(self.capabilities) else self.capabilities


adapters: Registry[AdapterSpec] = Registry("adapter")


def register_adapter(name: str, *, options: type[StrictOptions], fingerprint: Callable[[ModelConfig], str],
                     capabilities: Sequence[str] | Callable[[ModelConfig], frozenset[str]] = ("generate",),
                     needs: str = "path",
                     replace: bool = False) -> Callable[[Callable[[ModelConfig], Model]],
                                                        Callable[[ModelConfig], Model]]:
    """Decorate a ``load(config) -> Model`` function to make it an adapter named ``name``."""

    def decorate(load: Callable[[ModelConfig], Model]) -> Callable[[ModelConfig], Model]:
        caps = capabilities if callable(capabilities) else frozenset(capabilities)
        spec = AdapterSpec(name, load, fingerprint, options, caps, needs)
        adapters.register(name, replace=replace)(spec)
        return load

    return decorate
