"""Traffic as hive-partitioned Parquet (``date=YYYY-MM-DD/part-*.parquet``), queried in place.

With ``rollout.traffic.parquet`` set in tollgate.yaml (a folder, or an ``s3://`` URL read through
DuckDB's httpfs extension), new traffic rows go to Parquet files under that root instead of the
store's ``traffic`` table; feedback, stage events and everything else stay in the DuckDB file.
Every connection the store opens gets a TEMP view named ``traffic`` that reads the Parquet files
in place, UNION ALL the table (rows stored before the switch), so every query that reads
``traffic`` runs unchanged and nothing is copied into the database file.

Each write (one ingest, one router batch) adds new files and never rewrites an old one. Locally a
file is written under a ``.tmp`` name and renamed, so a kill leaves a whole file or none (readers
only see ``*.parquet``). On s3 an object becomes visible only when its upload completes, so the
same holds; an interrupted multipart upload leaves no object (a bucket lifecycle rule clears its
parts). A write that spans several dates is one file per date: a kill between them keeps the
dates already renamed, and running the same ingest again adds only the rest.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

from harness.errors import TollgateInputError

# the traffic table's columns and types, in its order (harness.store, migration v4)
COLUMNS: tuple[tuple[str, str], ...] = (
    ("request_id", "VARCHAR"), ("model", "VARCHAR"), ("arm", "VARCHAR"), ("ts", "TIMESTAMP"),
    ("user_id", "VARCHAR"), ("input", "JSON"), ("output", "VARCHAR"), ("latency_ms", "DOUBLE"),
    ("prompt_tokens", "INTEGER"), ("completion_tokens", "INTEGER"), ("error", "VARCHAR"), ("source", "VARCHAR"),
    ("ingested_at", "TIMESTAMP"))
NAMES = ", ".join(c for c, _ in COLUMNS)
REMOTE_SCHEMES = ("s3://", "s3a://", "s3n://", "gs://", "gcs://", "r2://")
TMP_EXT = "parquet.tmp"


def is_remote(root: str) -> bool:
    return root.lower().startswith(REMOTE_SCHEMES)


def resolve(root_text: str, base: Path) -> str:
    """The setting as the store uses it: a URL as written, a folder relative to the project folder."""
    if is_remote(root_text):
        return root_text.rstrip("/")
    if "://" in root_text:
        raise TollgateInputError(f"rollout.traffic.parquet: unsupported URL scheme in '{root_text}'; use a folder "
                                 f"or s3://bucket/prefix.", field="rollout.traffic.parquet")
    return str((base / root_text).resolve())


def project_store(project: Any, **kw: Any) -> Any:
    """The project's store, with its Parquet traffic root when the project sets one."""
    from harness.store import Store

    return Store(project.store_path, traffic_parquet=project_root(project), **kw)


def project_root(project: Any) -> str | None:
    settings = getattr(getattr(project, "rollout", None), "traffic", None)
    text = getattr(settings, "parquet", None)
    return resolve(text, project.root) if text else None


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def pattern(root: str) -> str:
    return f"{root.rstrip('/')}/**/*.parquet"


def prepare(con: Any, root: str) -> None:
    """Make ``root`` readable and writable on ``con``: for an object store, DuckDB's httpfs extension
    and credentials from the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN,
    AWS_REGION or AWS_DEFAULT_REGION, AWS_ENDPOINT_URL for an S3-compatible store)."""
    if not is_remote(root):
        return
    try:
        con.execute("LOAD httpfs")
    except Exception:
        try:
            con.execute("INSTALL httpfs")
            con.execute("LOAD httpfs")
        except Exception as exc:
            raise TollgateInputError(
                f"rollout.traffic.parquet is {root}, which needs DuckDB's httpfs extension, and it is not installed "
                f"and could not be downloaded ({str(exc).splitlines()[0]}).", field="rollout.traffic.parquet",
                hint="Install it once where the network allows: python -c \"import duckdb; "
                     "duckdb.connect().execute('INSTALL httpfs')\" (or copy httpfs.duckdb_extension into "
                     "~/.duckdb/extensions/), or set rollout.traffic.parquet to a local folder.") from None
    env = os.environ
    if root.lower().startswith(("s3://", "s3a://", "s3n://")) and env.get("AWS_ACCESS_KEY_ID"):
        opts = {"KEY_ID": env["AWS_ACCESS_KEY_ID"], "SECRET": env.get("AWS_SECRET_ACCESS_KEY", "")}
        if env.get("AWS_SESSION_TOKEN"):
            opts["SESSION_TOKEN"] = env["AWS_SESSION_TOKEN"]
        if env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION"):
            opts["REGION"] = env.get("AWS_REGION") or env["AWS_DEFAULT_REGION"]
        if env.get("AWS_ENDPOINT_URL"):
            endpoint = env["AWS_ENDPOINT_URL"]
            opts["ENDPOINT"] = endpoint.split("://", 1)[-1]
            opts["USE_SSL"] = "false" if endpoint.startswith("http://") else "true"
            opts["URL_STYLE"] = "path"
        body = ", ".join(f"{k} {v if k == 'USE_SSL' else _lit(v)}" for k, v in opts.items())
        con.execute(f"CREATE OR REPLACE TEMP SECRET tollgate_traffic (TYPE s3, {body})")


def has_files(con: Any, root: str) -> bool:
    if not is_remote(root):
        base = Path(root)
        return base.is_dir() and any(base.glob("*/*.parquet"))
    return bool(con.execute("SELECT 1 FROM glob(?) LIMIT 1", [pattern(root)]).fetchall())


def relation(con: Any, root: str, table: str, *, dates: list[str] | None = None) -> str:
    """SQL for every traffic row: the Parquet files (only the partitions of ``dates`` when given)
    UNION ALL ``table`` (the store's traffic table, qualified)."""
    typed = ", ".join(f"CAST({c} AS {t}) AS {c}" for c, t in COLUMNS)
    parts = []
    if has_files(con, root):
        where = ""
        if dates is not None:
            where = " WHERE date IN (" + (", ".join(f"DATE {_lit(d)}" for d in dates) or "NULL") + ")"
        parts.append(f"SELECT {typed} FROM read_parquet({_lit(pattern(root))}, hive_partitioning = true){where}")
    parts.append(f"SELECT {NAMES} FROM {table}")
    return " UNION ALL ".join(parts)


def create_view(con: Any, root: str, table: str) -> None:
    """The TEMP view ``traffic`` on this connection (it hides the table of the same name)."""
    prepare(con, root)
    con.execute(f"CREATE OR REPLACE TEMP VIEW traffic AS {relation(con, root, table)}")


def write_rows(con: Any, source: str, root: str, table: str) -> int:
    """Add the rows of relation ``source`` (the traffic columns) not yet stored, deduplicated on
    (request_id, model) against the same partitions and the table, as new files; returns how many."""
    prepare(con, root)
    dates = [str(d) for (d,) in con.execute(f"SELECT DISTINCT CAST(CAST(ts AS DATE) AS VARCHAR) FROM {source}")
             .fetchall()]
    if not dates:
        return 0
    typed = ", ".join(f"CAST({c} AS {t}) AS {c}" for c, t in COLUMNS)
    con.execute(f"""CREATE OR REPLACE TEMP TABLE _tg_new AS
        SELECT * FROM (SELECT DISTINCT ON (request_id, model) {typed} FROM {source} ORDER BY request_id, model, ts) n
        WHERE NOT EXISTS (SELECT 1 FROM ({relation(con, root, table, dates=dates)}) e
                          WHERE e.request_id = n.request_id AND e.model = n.model)""")
    try:
        n = con.execute("SELECT count(*) FROM _tg_new").fetchall()[0][0]
        if n:
            _copy(con, root)
    finally:
        con.execute("DROP TABLE IF EXISTS _tg_new")
    return n


def _copy(con: Any, root: str) -> None:
    batch = uuid.uuid4().hex
    select = (f"SELECT {', '.join(c if t != 'JSON' else f'CAST({c} AS VARCHAR) AS {c}' for c, t in COLUMNS)}, "
              f"CAST(ts AS DATE) AS date FROM _tg_new ORDER BY ts")
    remote = is_remote(root)
    if not remote:
        Path(root).mkdir(parents=True, exist_ok=True)
    ext = "parquet" if remote else TMP_EXT
    con.execute(f"COPY ({select}) TO {_lit(root)} (FORMAT parquet, PARTITION_BY (date), APPEND, "
                f"FILENAME_PATTERN 'part-{batch}-{{uuid}}', FILE_EXTENSION '{ext}')")
    if remote:
        return
    for tmp in sorted(Path(root).glob(f"date=*/part-{batch}-*.{TMP_EXT}")):
        final = tmp.with_name(tmp.name[: -len(".tmp")])
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        tmp.replace(final)  # atomic: readers see the whole file or none


def local_version(root: str | None) -> tuple[int, ...]:
    """(files, newest mtime) of a local root: changes when a write adds a file; () otherwise."""
    if root is None or is_remote(root):
        return ()
    files = list(Path(root).glob("*/*.parquet")) if Path(root).is_dir() else []
    newest = 0
    for f in files:
        try:
            newest = max(newest, f.stat().st_mtime_ns)
        except FileNotFoundError:
            pass
    return (len(files), newest)
