"""The gate policy of ``tollgate.yaml``: which rules a candidate must clear, typed and checked.

Kept apart from the gate's arithmetic so the project file can be validated without numpy or
the store.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from harness.hashing import hash_obj

FLAGS = ("gap", "optimism", "forgetting", "contamination", "memorisation")
CONDITIONS = ("min", "non_inferior", "superior", "max_latency_p95_ms", "max_error_rate")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Rule(_Strict):
    """One rule on one suite (or every suite of a kind) and one metric."""

    name: str | None = None
    suite: str | None = None
    kind: Literal["train_sample", "validation", "heldout", "edge", "general", "baseline"] | None = None
    metric: str = "pass"
    min: float | None = Field(None, ge=0, le=1)
    non_inferior: float | None = Field(None, ge=0, le=1, description="margin")
    superior: bool | None = None
    max_latency_p95_ms: float | None = Field(None, gt=0)
    max_error_rate: float | None = Field(None, ge=0, le=1)
    critical: bool = False

    @model_validator(mode="after")
    def _one_condition(self) -> Rule:
        set_ = [c for c in CONDITIONS if getattr(self, c) not in (None, False)]
        if len(set_) != 1:
            raise ValueError(f"a rule needs exactly one of {', '.join(CONDITIONS)}; found {set_ or 'none'}")
        if (self.suite is None) == (self.kind is None):
            raise ValueError("a rule names either a 'suite' or a 'kind' (all suites of that kind)")
        return self

    @property
    def condition(self) -> str:
        return next(c for c in CONDITIONS if getattr(self, c) not in (None, False))


class OverfitRule(_Strict):
    """Overfitting flags used as a gate rule: any raised flag fails it."""

    no_overfitting: list[Literal["gap", "optimism", "forgetting", "contamination", "memorisation"]]
    critical: bool = False


class OverfitSettings(_Strict):
    metric: str = "pass"
    gap: float = Field(0.05, ge=0, description="largest tolerated train_sample - heldout difference")
    optimism: float = Field(0.10, ge=0, description="largest tolerated heldout - edge difference")
    forgetting: float = Field(0.02, ge=0, description="largest tolerated drop against the base model")
    memorisation: float = Field(0.10, ge=0, le=1, description="largest tolerated share of training values "
                                                                "recalled on counterfactual copies")
    ngram: int = Field(13, ge=4, description="n-gram length of the contamination check (lm-eval uses 13)")
    ngram_share: float = Field(0.5, gt=0, le=1, description="share of an example's n-grams found in training "
                                                             "data that makes it contaminated")


class GatePolicy(_Strict):
    alpha: float = Field(0.05, gt=0, lt=0.5)
    min_paired: int = Field(30, ge=1)
    resamples: int = Field(10_000, ge=100)
    seed: int = 20261126
    power: float = Field(0.8, gt=0.5, lt=1)
    rules: list[Rule | OverfitRule] = []
    overfit: OverfitSettings = OverfitSettings()

    def digest(self) -> str:
        return hash_obj(self.model_dump())
