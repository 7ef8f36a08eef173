"""Suites' content hashes, remembered by their files' size and times.

The gate must know each suite's current content hash so that results made on an older version never
decide it, but loading a 100,000-example suite to learn that hash (validating, rendering, hashing
every example) took most of a gate's time. A suite whose files have the same path, size and
modification and change times (to the nanosecond) and inode as when it was last loaded in full has
the same content (the change time cannot be set back by ``touch`` or ``rsync -t``, and an editor
that saves by renaming makes a new inode), so its hash is kept in a small JSON file beside the store
and reused. Anything else (a changed file,
a different data file, different Tollgate hashing code, an unreadable cache) loads the suite in
full, which also re-validates it.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from harness.suites import SUITE_FILE, load_suite, read_suite_header

CACHE_FILE = "suite-hashes.json"
_SCHEME_SOURCES = ("hashing.py", "examples.py", "suites.py")  # the code that defines a content hash


def _scheme() -> str:
    h = hashlib.sha256()
    for name in _SCHEME_SOURCES:
        h.update((Path(__file__).parent / name).read_bytes())
    return h.hexdigest()[:16]


def _stamp(paths: list[Path]) -> list[list[object]]:
    out: list[list[object]] = []
    for p in paths:
        st = p.stat()
        out.append([str(p.resolve()), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino])
    return out


def _read(cache: Path) -> dict[str, dict[str, object]]:
    try:
        data = json.loads(cache.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write(cache: Path, data: dict[str, dict[str, object]]) -> None:
    """Atomically (write, then rename), so a reader never sees half a file; a failure only loses the speed-up."""
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cache.parent, prefix=".suite-hashes.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f)
        os.replace(tmp, cache)
    except OSError:
        pass


def suite_hashes(suite_dirs: list[Path], cache: Path) -> dict[str, str]:
    """Suite name -> content hash for every suite folder, loading in full only the suites that changed."""
    known = _read(cache)
    scheme = _scheme()
    out: dict[str, str] = {}
    changed = False
    for d in suite_dirs:
        entry, _ = read_suite_header(d)
        if entry.lm_eval is not None:  # its content is a folder of task files: always hashed afresh
            out[entry.name] = load_suite(d).content_hash
            continue
        try:
            stamp = {"scheme": scheme, "files": _stamp([d / SUITE_FILE, d / entry.data])}
        except OSError:
            stamp = None  # a missing data file: load_suite says so properly
        hit = known.get(str(d.resolve()))
        if stamp is not None and hit is not None and hit.get("stamp") == stamp:
            out[entry.name] = str(hit["hash"])
            continue
        suite = load_suite(d)
        out[suite.name] = suite.content_hash
        if stamp is not None:
            known[str(d.resolve())] = {"stamp": stamp, "hash": suite.content_hash}
            changed = True
    if changed:
        _write(cache, known)
    return out
