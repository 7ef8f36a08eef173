"""What every benchmark shares: its options, repetitions and their spread, the machine it ran on,
commands run as subprocesses with their wall time and peak memory, the printed table and the
results file (one JSON line per figure).

Benchmarks are run by hand; ``--smoke`` runs each on a tiny input so ``tests/test_bench.py`` can
keep them from rotting. Nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS_ENV = "TOLLGATE_BENCH_RESULTS"  # where figures are appended (default bench/results.jsonl)
CACHE_ENV = "TOLLGATE_BENCH_CACHE"  # where generated models and data are kept (default bench/.cache)


# -- options ---------------------------------------------------------------------------------------
def parser(description: str, *, repeat: int) -> argparse.ArgumentParser:
    """The options every benchmark takes; a script adds its own before calling :func:`parse`."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--smoke", action="store_true", help="a tiny input, one repetition: checks the script works")
    p.add_argument("--repeat", type=int, metavar="N", help=f"repetitions (default {repeat}; 1 with --smoke)")
    p.add_argument("--results", type=Path, metavar="PATH",
                   help=f"append figures here (default ${RESULTS_ENV} or bench/results.jsonl)")
    p.add_argument("--cache", type=Path, metavar="DIR",
                   help=f"generated models and data (default ${CACHE_ENV} or bench/.cache)")
    p.set_defaults(default_repeat=repeat)
    return p


def parse(p: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> argparse.Namespace:
    args = p.parse_args(argv)
    if args.repeat is None:
        args.repeat = 1 if args.smoke else args.default_repeat
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    args.results = args.results or Path(os.environ.get(RESULTS_ENV) or BENCH / "results.jsonl")
    root = args.cache or Path(os.environ.get(CACHE_ENV) or BENCH / ".cache")
    args.cache = (root / ("smoke" if args.smoke else "full")).resolve()  # tiny and full data never mix
    args.cache.mkdir(parents=True, exist_ok=True)
    return args


# -- the machine -----------------------------------------------------------------------------------
def _pkg(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def machine() -> dict[str, Any]:
    """CPU model, cores, RAM, load, Python and the versions that decide the figures (no heavy import)."""
    cpu = "unknown"
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ram_kb = 0
    with open("/proc/meminfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                ram_kb = int(line.split()[1])
    return {"cpu": cpu, "cores": os.cpu_count(), "cores_usable": len(os.sched_getaffinity(0)),
            "ram_gib": round(ram_kb / 2**20, 1), "load_avg_1m": round(os.getloadavg()[0], 2),
            "python": platform.python_version(), "torch": _pkg("torch"), "transformers": _pkg("transformers"),
            "lm_eval": _pkg("lm_eval"), "duckdb": _pkg("duckdb"), "pandas": _pkg("pandas"),
            "pandera": _pkg("pandera"), "tollgate": _pkg("tollgate"), "platform": platform.platform()}


# -- commands --------------------------------------------------------------------------------------
def tool(name: str) -> list[str]:
    """A console script of this environment (``tollgate``, ``lm_eval``), as a user runs it."""
    exe = Path(sys.executable).parent / name
    if exe.exists():
        return [str(exe)]
    modules = {"tollgate": "harness.cli", "lm_eval": "lm_eval"}
    return [sys.executable, "-m", modules[name]]


def env(**extra: str) -> dict[str, str]:
    """The environment of every measured command: offline, no tokenizer threads fighting the model's."""
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
            "PYTHONUNBUFFERED": "1", **extra}


@dataclass
class Proc:
    argv: list[str]
    returncode: int
    wall_s: float
    peak_rss_mib: float  # the child's (and its reaped children's) maximum resident set size
    stdout: str
    stderr: str


def run(argv: Sequence[str], *, cwd: Path | None = None, environ: dict[str, str] | None = None,
        timeout: float = 1800, ok: Sequence[int] = (0,)) -> Proc:
    """Run a command to its end; wall time from start to exit, peak RSS from ``wait4``'s rusage.

    Output goes to temporary files, not pipes, so a chatty command never blocks on a full pipe
    and reading it costs the measurement nothing.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        p = subprocess.Popen(list(argv), cwd=cwd, env=environ or env(), stdout=out, stderr=err,
                             stdin=subprocess.DEVNULL)
        timer = threading.Timer(timeout, p.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(p.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        proc = Proc(list(argv), p.returncode, wall, usage.ru_maxrss / 1024,
                    out.read().decode("utf-8", "replace"), err.read().decode("utf-8", "replace"))
    if proc.returncode not in ok:
        raise RuntimeError(f"{' '.join(proc.argv)} exited {proc.returncode} after {wall:.1f} s:\n"
                           f"{proc.stderr[-3000:]}\n{proc.stdout[-1000:]}")
    return proc


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    value = fn()
    return time.perf_counter() - t0, value


# -- figures ---------------------------------------------------------------------------------------
@dataclass
class Figure:
    name: str
    values: list[float]
    unit: str
    bar: str | None = None  # e.g. "< 2", ">= 1.5": compared with the median, shown, never asserted
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def quartiles(self) -> tuple[float, float]:
        if len(self.values) < 2:
            return self.values[0], self.values[0]
        q = statistics.quantiles(self.values, n=4, method="inclusive")
        return q[0], q[2]

    def meets_bar(self) -> bool | None:
        if not self.bar or not self.values:
            return None
        op, _, threshold = self.bar.partition(" ")
        x, t = self.median, float(threshold)
        return {"<": x < t, "<=": x <= t, ">": x > t, ">=": x >= t, "==": x == t}[op]

    def as_dict(self) -> dict[str, Any]:
        q1, q3 = self.quartiles()
        return {"figure": self.name, "unit": self.unit, "median": self.median, "min": min(self.values),
                "max": max(self.values), "q1": q1, "q3": q3, "n": len(self.values), "values": self.values,
                "bar": self.bar, "meets_bar": self.meets_bar(), "note": self.note or None}


def ratios(numerators: Sequence[float], denominators: Sequence[float]) -> list[float]:
    """Per-repetition ratios of two tools measured side by side (same repetition, same load)."""
    return [a / b if b else float("inf") for a, b in zip(numerators, denominators, strict=True)]


@dataclass
class Report:
    """The figures of one benchmark run: printed as a table and appended to the results file."""

    bench: str
    args: argparse.Namespace
    params: dict[str, Any] = field(default_factory=dict)
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    host: dict[str, Any] = field(default_factory=machine)  # taken at the start: the load it ran under

    def add(self, name: str, values: Sequence[float], unit: str, *, bar: str | None = None,
            note: str = "") -> Figure:
        fig = Figure(name, [float(v) for v in values], unit, bar, note)
        self.figures.append(fig)
        return fig

    def note(self, text: str) -> None:
        self.notes.append(text)

    def finish(self) -> None:
        self._print()
        self._append()

    def _append(self) -> None:
        path = Path(self.args.results)
        path.parent.mkdir(parents=True, exist_ok=True)
        stamp = self.started.isoformat(timespec="seconds")
        with path.open("a", encoding="utf-8") as f:
            for fig in self.figures:
                f.write(json.dumps({"date": stamp, "bench": self.bench, **fig.as_dict(), "smoke": self.args.smoke,
                                    "params": self.params, "machine": self.host}) + "\n")

    def _print(self) -> None:
        from rich.console import Console
        from rich.table import Table

        h = self.host
        t = Table(title=f"{self.bench}{' (smoke: tiny input, figures mean nothing)' if self.args.smoke else ''}",
                  title_justify="left", caption_justify="left",
                  caption=(f"{h['cpu']}, {h['cores_usable']} of {h['cores']} cores, {h['ram_gib']} GiB RAM, "
                           f"load {h['load_avg_1m']} at start; Python {h['python']}, torch {h['torch']}; "
                           f"{self.started:%Y-%m-%d %H:%M} UTC; results: {self.args.results}"))
        for col in ("figure", "median", "spread (min–max)", "IQR", "n", "bar", "note"):
            t.add_column(col, justify="left" if col in ("figure", "note") else "right",
                         overflow="fold", no_wrap=col not in ("figure", "note"))
        for fig in self.figures:
            q1, q3 = fig.quartiles()
            ok = fig.meets_bar()
            bar = "" if fig.bar is None else f"{fig.bar} {fig.unit} " + ("[green]✓[/]" if ok else "[red]✗[/]")
            t.add_row(fig.name, f"{_num(fig.median)} {fig.unit}", f"{_num(min(fig.values))}–{_num(max(fig.values))}",
                      f"{_num(q1)}–{_num(q3)}", str(len(fig.values)), bar, fig.note)
        console = Console(width=max(120, Console().width))
        console.print(t)
        if self.params:
            console.print("parameters: " + ", ".join(f"{k}={v}" for k, v in self.params.items()), highlight=False)
        for n in self.notes:
            console.print(f"note: {n}", highlight=False)


def _num(x: float) -> str:
    if x != x or x in (float("inf"), float("-inf")):
        return str(x)
    a = abs(x)
    if x == int(x) and a < 1e6:
        return f"{int(x):,}"
    if 0.01 <= a < 1e6:
        return f"{x:,.3f}" if a < 10 else (f"{x:,.2f}" if a < 100 else f"{x:,.0f}")
    return f"{x:.3g}"
