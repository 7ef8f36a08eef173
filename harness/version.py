"""Which code produced a result: stored with every run so numbers can be traced to a release."""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def code_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"tollgate {version('tollgate')}"
    except PackageNotFoundError:
        return "tollgate (not installed)"
