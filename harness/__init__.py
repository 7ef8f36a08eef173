"""Tollgate's evaluation core: project file, suites, adapters, checks, runner, store, statistics.

Nothing heavy is imported here, so ``tollgate --help`` and data-only commands start fast.
"""

__version__ = "0.1.0"
