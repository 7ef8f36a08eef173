"""Where the dashboard's data comes from: the project file, its store, and cached reads of it.

The project is named by ``--project`` after ``streamlit run app.py --`` or by ``TOLLGATE_PROJECT``
(``tollgate dashboard`` sets both), else found from the working directory. Reads go through the
query functions of ``harness.queries`` / ``rollout.queries`` (and the report functions) on a
read-only connection that retries while a writer holds the lock. Results are cached per store
version (the file's and its write-ahead log's size and time), so a page re-renders instantly until
someone writes, and each page says when its data was read.
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

PROJECT_ENV = "TOLLGATE_PROJECT"
BUSY_TIMEOUT_S = 8.0  # a page waits this long for a writer's transaction, then says the store is busy


@dataclass
class Context:
    """One page view's view of the world; ``problem`` set means there is nothing to show yet."""

    project_path: Path | None
    project: Any = None
    store: Any = None
    status: Any = None  # harness.queries.StoreStatus
    problem: str | None = None
    hint: str | None = None
    reads: list[datetime] = field(default_factory=list)  # when each piece of data on the page was read

    @property
    def settings(self) -> Any:
        return getattr(self.project, "dashboard", None)

    def read(self, fn: str, *args: Any, **kwargs: Any) -> Any:
        """``fn(con, *args, **kwargs)`` for a query function named ``module:function``, cached per store version."""
        value, at = _cached_read(str(self.store.path), self.store.traffic_parquet, store_version(self.store), fn,
                                 args, tuple(sorted(kwargs.items())))
        self.reads.append(at)
        return value

    def compute(self, fn: str, *args: Any, **kwargs: Any) -> Any:
        """``fn(self, *args, **kwargs)`` for a function that needs the project too (reports), cached the same way."""
        version = (*store_version(self.store), *project_version(self.project_path))  # and the policy's
        value, at = _cached_compute(str(self.project_path), str(self.store.path), version, fn, args,
                                    tuple(sorted(kwargs.items())))
        self.reads.append(at)
        return value

    @property
    def read_at(self) -> datetime | None:
        return min(self.reads) if self.reads else None


def project_path_from_args(argv: list[str] | None = None, environ: dict[str, str] | None = None) -> Path | None:
    argv = sys.argv[1:] if argv is None else argv
    environ = os.environ if environ is None else environ
    for i, arg in enumerate(argv):
        if arg == "--project" and i + 1 < len(argv):
            return Path(argv[i + 1])
        if arg.startswith("--project="):
            return Path(arg.split("=", 1)[1])
    if environ.get(PROJECT_ENV):
        return Path(environ[PROJECT_ENV])
    return None


def store_version(store: Any) -> tuple[int, ...]:
    """Changes whenever anything is committed to the store (DuckDB appends to ``.wal`` first), or a
    traffic file is added under its Parquet root (a local folder; an s3:// root is not listed here)."""
    from harness.traffic_parquet import local_version

    path = store.path
    out: list[int] = list(local_version(store.traffic_parquet))
    for p in (path, path.with_name(path.name + ".wal")):
        try:
            s = p.stat()
            out += [s.st_mtime_ns, s.st_size]
        except FileNotFoundError:
            out += [0, 0]
    return tuple(out)


def load() -> Context:
    """The project and the state of its store, or the reason there is nothing to show."""
    from harness.errors import TollgateInputError
    from harness.project import find_project

    try:
        path = find_project(explicit=project_path_from_args())
    except TollgateInputError as exc:
        return Context(None, problem=str(exc),
                       hint="Start the dashboard in a project folder or with `tollgate dashboard --project PATH`; "
                            "`tollgate demo --dir tollgate-demo` writes a complete example project.")
    try:
        project = _project(str(path), project_version(path))
    except TollgateInputError as exc:
        return Context(path, problem=f"the project file has a problem: {exc}",
                       hint="`tollgate validate` checks it and names the line to fix.")
    from harness.traffic_parquet import project_store

    store = project_store(project, busy_timeout_s=BUSY_TIMEOUT_S)
    ctx = Context(path, project=project, store=store)
    from harness.errors import StoreBusyError

    try:
        ctx.status = _cached_status(str(store.path), store.traffic_parquet, store_version(store))
    except StoreBusyError:
        ctx.problem = (f"the store is busy: another Tollgate command has held {store.path} for more than "
                       f"{BUSY_TIMEOUT_S:.0f} s.")
        ctx.hint = "Nothing is lost: refresh the page in a moment."
        return ctx
    st_ = ctx.status
    if not st_.exists:
        ctx.problem = f"nothing is stored yet: {store.path} does not exist."
        ctx.hint = ("Run `tollgate demo` to see an example, or `tollgate run --model NAME` to evaluate a model of "
                    "this project.")
    elif st_.problem:
        ctx.problem = f"the store cannot be read: {st_.problem}"
        ctx.hint = "Run `tollgate demo` to see an example with a fresh store."
    elif st_.schema_version < st_.expected_version:
        ctx.problem = (f"the store was written by an older Tollgate (schema version {st_.schema_version}; this one "
                       f"reads version {st_.expected_version}). The dashboard only reads, so it does not upgrade it.")
        ctx.hint = ("Run any Tollgate command on this project once (e.g. `tollgate results`) to upgrade the store "
                    "in place, then refresh; or run `tollgate demo` to see an example.")
    elif st_.empty:
        ctx.problem = "the store holds no runs and no traffic yet."
        ctx.hint = "Run `tollgate demo` to see an example, or `tollgate run --model NAME` to evaluate a model."
    return ctx


def _resolve(fn: str) -> Any:
    module, _, name = fn.partition(":")
    if not module.startswith(("harness.", "rollout.", "dashboard.")):
        raise ValueError(f"not a Tollgate query function: {fn}")
    return getattr(importlib.import_module(module), name)


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _st() -> Any:
    import streamlit as st

    return st


def _cache_data(**kw: Any) -> Any:
    return _st().cache_data(show_spinner=False, **kw)


@_cache_data(max_entries=512)
def _cached_read(store_path: str, traffic_parquet: str | None, version: tuple[int, ...], fn: str, args: tuple,
                 kwargs: tuple) -> tuple[Any, datetime]:
    from harness.store import Store

    # load() has checked the schema version, so this read never upgrades the store
    with Store(Path(store_path), busy_timeout_s=BUSY_TIMEOUT_S, traffic_parquet=traffic_parquet).read() as con:
        return _resolve(fn)(con, *args, **dict(kwargs)), _now()


@_cache_data(max_entries=128)
def _cached_compute(project_path: str, store_path: str, version: tuple[int, ...], fn: str, args: tuple,
                    kwargs: tuple) -> tuple[Any, datetime]:
    ctx = load_for(project_path)
    return _resolve(fn)(ctx, *args, **dict(kwargs)), _now()


def load_for(project_path: str) -> Context:
    from harness.traffic_parquet import project_store

    path = Path(project_path)
    project = _project(str(path), project_version(path))
    store = project_store(project, busy_timeout_s=BUSY_TIMEOUT_S)
    return Context(path, project=project, store=store)


@_cache_data(max_entries=32)
def _cached_status(store_path: str, traffic_parquet: str | None, version: tuple[int, ...]) -> Any:
    from harness.queries import store_status
    from harness.store import Store

    return store_status(Store(Path(store_path), busy_timeout_s=BUSY_TIMEOUT_S, traffic_parquet=traffic_parquet))


def project_version(path: Path) -> tuple[int, int]:
    """What the parsed project depends on: tollgate.yaml, and the folder of models registered by
    commands (``tollgate sweep select`` adds a file there while the dashboard runs)."""
    from harness.project import REGISTERED_DIR

    registered = path.parent / REGISTERED_DIR
    return path.stat().st_mtime_ns, registered.stat().st_mtime_ns if registered.is_dir() else 0


@_st().cache_resource(show_spinner=False, max_entries=8)
def _project(path: str, version: tuple[int, int]) -> Any:
    """The parsed project, re-read whenever tollgate.yaml changes (a new release manager, a new policy)
    or a model is registered."""
    from harness.project import load_project

    return load_project(Path(path))


