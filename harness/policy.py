"""The gate policy of ``tollgate.yaml``: which rules a candidate must clear, typed and checked.

Kept apart from the gate's arithmetic so the project file can be validated without numpy or
the store.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from harness.hashing import hash_obj

FLAGS = ("gap", "optimism", "forgetting", "contamination", "memorisation")
CONDITIONS = ("min", "non_inferior", "superior", "max_latency_p95_ms", "max_latency_p50_ms", "max_error_rate",
              "max_cost_per_1k")


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
    max_latency_p50_ms: float | None = Field(None, gt=0, description="median latency per example, ms")
    max_error_rate: float | None = Field(None, ge=0, le=1)
    max_cost_per_1k: float | None = Field(None, gt=0, description="mean cost of 1,000 requests like the suite's, "
                                                                  "in the model's cost.currency (harness.cost)")
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
    max_selections_per_heldout: int | None = Field(
        None, ge=1, description="most distinct models a held-out suite version may have judged before the gate "
                                "asks for a fresh suite (choosing among many on one test set makes it optimistic)")
    rules: list[Rule | OverfitRule] = []
    overfit: OverfitSettings = OverfitSettings()

    def digest(self) -> str:
        return hash_obj(self.model_dump())


class ShadowGate(_Strict):
    """What shadow traffic must show before beta users see the candidate (pairs on the same requests).

    Agreement with production is informative but is no gate by default: a better candidate
    disagrees with a worse production model. The gate is accuracy against reviewers' corrections
    (gold answers on a sample of traffic), paired and non-inferior, plus errors and latency.
    """

    min_pairs: int = Field(200, ge=1, description="paired requests before any verdict")
    min_corrections: int = Field(30, ge=0, description="requests with a correction before accuracy is judged; "
                                                       "0 judges without corrections")
    non_inferior: float = Field(0.02, ge=0, le=1, description="largest tolerated drop in accuracy against "
                                                              "corrections, candidate vs production")
    min_agreement: float | None = Field(None, ge=0, le=1, description="optional: Wilson lower bound of the share "
                                                                      "of requests answered as production did")
    max_error_rate: float = Field(0.01, ge=0, le=1)
    max_latency_ratio: float | None = Field(2.0, gt=0, description="candidate / production median latency")


class BetaGate(_Strict):
    """What beta users' feedback must show, step by step, judged with anytime-valid intervals."""

    min_feedback: int = Field(100, ge=1, description="rated requests per arm before any verdict")
    non_inferior: float = Field(0.03, ge=0, le=1, description="largest tolerated drop in the thumbs-up rate")
    alpha: float = Field(0.05, gt=0, lt=0.5)


class TrafficStorage(_Strict):
    """``rollout.traffic:`` where real traffic is kept. Unset, it is the store's ``traffic`` table;
    ``parquet`` keeps it as hive-partitioned Parquet (``date=YYYY-MM-DD/part-*.parquet``) under a folder
    (relative to the project folder) or an ``s3://bucket/prefix`` URL (DuckDB's httpfs extension,
    credentials from the AWS_* environment variables), queried in place (``harness.traffic_parquet``)."""

    parquet: str | None = Field(None, min_length=1, description="a folder or s3:// URL for traffic as Parquet")

    @model_validator(mode="after")
    def _scheme(self) -> TrafficStorage:
        p = self.parquet
        if p is not None and "://" in p and not p.lower().startswith(("s3://", "s3a://", "s3n://", "gs://",
                                                                        "gcs://", "r2://")):
            raise ValueError("parquet must be a folder or an object-store URL such as s3://bucket/prefix")
        return self


class RolloutPolicy(_Strict):
    """``rollout:`` in tollgate.yaml: the stages a candidate walks through, and each stage's gate."""

    beta_steps: list[float] = Field([0.05, 0.25], min_length=1, description="shares of users served by the "
                                                                             "candidate, in order")
    shadow_share: float = Field(1.0, gt=0, le=1, description="share of production requests mirrored")
    salt: str = Field("tollgate", min_length=1, description="keeps beta assignment sticky and private")
    suite: str | None = Field(None, description="the suite whose prompt renders traffic logged as fields and "
                                                "whose checks score answers against users' corrections")
    shadow: ShadowGate = ShadowGate()
    beta: BetaGate = BetaGate()
    traffic: TrafficStorage = TrafficStorage()

    @model_validator(mode="after")
    def _increasing(self) -> RolloutPolicy:
        steps = self.beta_steps
        if any(not 0 < s < 1 for s in steps) or steps != sorted(set(steps)):
            raise ValueError("beta_steps must be increasing shares between 0 and 1, e.g. [0.05, 0.25]")
        return self


class DashboardSettings(_Strict):
    """``dashboard:`` in tollgate.yaml: who may change state from the dashboard.

    Tokens are never stored, only their salted PBKDF2 hashes (``tollgate dashboard hash-token``
    prints one); ``TOLLGATE_RELEASE_MANAGERS`` (``name=hash,name=hash``) adds users from the
    environment, so a deployment can keep them out of the repository.
    """

    release_managers: dict[str, str] = Field({}, description="user name -> 'pbkdf2_sha256$iterations$salt$hash'")


RELEASE_MANAGERS_ENV = "TOLLGATE_RELEASE_MANAGERS"


def env_release_managers(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Release managers from ``TOLLGATE_RELEASE_MANAGERS``: ``name=hash,name=hash`` (blanks ignored)."""
    raw = (environ if environ is not None else os.environ).get(RELEASE_MANAGERS_ENV, "")
    out: dict[str, str] = {}
    for item in raw.split(","):
        name, sep, encoded = item.strip().partition("=")
        if sep and name.strip() and encoded.strip():
            out[name.strip()] = encoded.strip()
    return out


def release_managers(settings: Any, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """name -> hash: the project file's ``dashboard.release_managers``, then the environment's, which wins
    for a name in both. One list serves the dashboard's login and ``rollout advance/rollback``."""
    from_file = dict(getattr(settings, "release_managers", None) or {})
    return from_file | env_release_managers(environ)
