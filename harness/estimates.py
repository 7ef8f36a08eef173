"""A metric's value with its interval: the one type every report shares.

Kept apart from ``harness.intervals`` so that reading stored summaries (``tollgate results``, the
dashboard) does not import numpy and scipy just to hold the numbers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Estimate:
    """A metric's value with its confidence interval, its n and how the interval was made."""

    value: float
    low: float
    high: float
    n: int
    method: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
