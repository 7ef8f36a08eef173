"""Running a markdown guide as a script: every file it shows is written and every ``$`` command it
shows is run, in order, with the exit code the guide states (``# exit N``, default 0)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```\s*$", re.S | re.M)


def steps(text: str) -> list[tuple[str, str, str]]:
    """("file", path, content) and ("run", command, expected exit code) in the guide's order."""
    out = []
    for info, body in FENCE.findall(text):
        lang, _, rest = info.partition(" ")
        target = re.search(r"file=(\S+)", rest)
        if target:
            out.append(("file", target.group(1), body))
        elif lang == "console":
            for line in body.splitlines():
                if line.startswith("$ "):
                    cmd, _, comment = line[2:].partition("#")
                    code = re.search(r"exit (\d+)", comment)
                    out.append(("run", cmd.strip(), code.group(1) if code else "0"))
    return out


def run_guide(guide: Path, project: Path, work: Path) -> list[tuple[str, subprocess.CompletedProcess]]:
    """Copy ``project`` to ``work`` and play the guide there; fails on the first step that disagrees."""
    shutil.copytree(project, work, ignore=shutil.ignore_patterns("*.wal"))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "COLUMNS": "160"}
    log = []
    for kind, what, extra in steps(guide.read_text(encoding="utf-8")):
        if kind == "file":
            path = work / what
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(extra, encoding="utf-8")
            continue
        p = subprocess.run(["bash", "-c", what], cwd=work, env=env, capture_output=True, text=True, timeout=600,
                           stdin=subprocess.DEVNULL)
        log.append((what, p))
        assert p.returncode == int(extra), f"{guide.name}: {what!r} exited {p.returncode}, the guide says " \
                                           f"{extra}:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
        if extra == "2":
            assert ("line" in p.stderr or "row" in p.stderr) and "error" in p.stderr.lower(), p.stderr
    return log
