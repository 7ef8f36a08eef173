"""Row 7: the live router's added latency at 200 requests/s with shadow on, and requests lost.

An OpenAI-compatible upstream that answers at once (``bench/upstream_stub.py``, uvicorn on
127.0.0.1) serves both models of a project (``adapter: openai``, completions API); the candidate
is put in shadow with a stage event (``rollout.stages.record``), so every production request is
also mirrored to it. In each repetition, open-loop load (requests sent on a fixed schedule,
latency counted from the scheduled time, so a stall is never hidden) for ~20 s:
- directly against the upstream;
- through ``tollgate serve --port 0`` on a fresh store, stopped with SIGTERM afterwards.
Added latency = router minus direct at the same percentile (bars: p50 under 5 ms, p99 under
25 ms); requests lost = requests sent minus production rows in the store after shutdown (bar: 0),
and requests not answered 200. Shadow rows written are reported too (under load a shadow copy may
be dropped, by design).

    python bench/bench_router.py [--smoke] [--repeat N] [--rate R] [--seconds S]
"""

from __future__ import annotations

import asyncio
import re
import selectors
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import workloads
from common import BENCH, Report, env, parse, parser, tool

PROMPT = "Extract the claim fields as JSON.\nPOLICE INCIDENT REPORT filed 3 March 2024 by Sgt. Hale.\nJSON:"
WARMUP = 20


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0], repeat=3)
    p.add_argument("--rate", type=float, help="requests per second (default 200; 50 with --smoke)")
    p.add_argument("--seconds", type=float, help="length of each load phase (default 20; 1 with --smoke)")
    args = parse(p, argv)
    rate = args.rate or (50.0 if args.smoke else 200.0)
    seconds = args.seconds or (1.0 if args.smoke else 20.0)
    root = args.cache / "router"

    upstream, m = start("upstream", [sys.executable, str(BENCH / "upstream_stub.py")], root, r"listening on (\d+)")
    up_url = f"http://127.0.0.1:{m.group(1)}"
    reps: list[dict[str, Any]] = []
    try:
        for _ in range(args.repeat):
            direct = load(f"{up_url}/v1/completions", {"model": "stub", "prompt": PROMPT, "max_tokens": 16},
                          rate, seconds)
            reps.append({"direct": direct, **through_router(root, up_url, rate, seconds)})
    finally:
        stop(upstream)

    def pct(side: str, q: int) -> list[float]:
        return [percentile(r[side]["latency_ms"], q) for r in reps]

    r = Report("bench_router", args, params={"rate_per_s": rate, "seconds": seconds, "shadow": True,
                                             "requests_per_phase": int(rate * seconds)})
    r.add("direct p50", pct("direct", 50), "ms")
    r.add("direct p99", pct("direct", 99), "ms")
    r.add("router p50", pct("router", 50), "ms")
    r.add("router p99", pct("router", 99), "ms")
    r.add("added latency p50", [a - b for a, b in zip(pct("router", 50), pct("direct", 50), strict=True)], "ms",
          bar="< 5")
    r.add("added latency p99", [a - b for a, b in zip(pct("router", 99), pct("direct", 99), strict=True)], "ms",
          bar="< 25")
    r.add("achieved rate through the router", [x["router"]["rate"] for x in reps], "req/s")
    r.add("requests lost (sent, no production row)", [x["lost"] for x in reps], "requests", bar="== 0")
    r.add("requests not answered 200", [x["router"]["failed"] for x in reps], "requests", bar="== 0")
    r.add("shadow rows / production requests", [x["shadow_share"] for x in reps], "",
          note="below 1: shadow copies dropped under load")
    r.finish()
    return 0


# -- the router ---------------------------------------------------------------------------------------
def through_router(root: Path, upstream: str, rate: float, seconds: float) -> dict[str, Any]:
    """One load phase through ``tollgate serve`` on a fresh store; then SIGTERM, and count the rows."""
    from harness.store import Store
    from rollout.stages import Stage, record

    def openai(model: str, role: str) -> dict[str, Any]:
        return {"adapter": "openai", "url": f"{upstream}/v1", "role": role,
                "options": {"model": model, "api": "completions", "max_retries": 0}}

    project = workloads.write_project(root, {"prod": openai("stub-prod", "production"),
                                             "cand": openai("stub-cand", "candidate")})
    store = Store(project / ".tollgate" / "tollgate.duckdb")
    with store.write() as con:
        record(con, "cand", Stage("candidate"), Stage("shadow"), "bench", "router benchmark", None, True)
    router, m = start("router", [*tool("tollgate"), "serve", "--port", "0"], project, r"serving on (http://\S+)")
    try:
        measured = load(f"{m.group(1)}/v1/completions", {"model": "prod", "prompt": PROMPT, "max_tokens": 16},
                        rate, seconds)
    finally:
        stop(router)
    with store.read() as con:
        rows = dict(con.execute("SELECT arm, count(*) FROM traffic GROUP BY arm").fetchall())
    sent = len(measured["latency_ms"]) + WARMUP
    return {"router": measured, "lost": sent - rows.get("production", 0),
            "shadow_share": rows.get("shadow", 0) / max(1, rows.get("production", 0))}


# -- load ---------------------------------------------------------------------------------------------
def load(url: str, body: dict[str, Any], rate: float, seconds: float) -> dict[str, Any]:
    return asyncio.run(_drive(url, body, rate, seconds))


async def _drive(url: str, body: dict[str, Any], rate: float, seconds: float) -> dict[str, Any]:
    """Open loop: request i is sent at t0 + i / rate whether or not earlier ones were answered."""
    import httpx

    n = int(rate * seconds)
    latency = [0.0] * n
    status: Counter[int] = Counter()
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=1000)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        for _ in range(WARMUP):  # connections opened, code paths warm
            (await client.post(url, json=body)).raise_for_status()

        async def one(i: int, scheduled: float) -> None:
            try:
                code = (await client.post(url, json=body)).status_code
            except httpx.HTTPError:
                code = -1
            latency[i] = (time.perf_counter() - scheduled) * 1000
            status[code] += 1

        tasks = []
        t0 = time.perf_counter() + 0.05
        for i in range(n):
            scheduled = t0 + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i, scheduled)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - t0
    return {"latency_ms": latency, "answered": status[200], "failed": n - status[200], "rate": n / elapsed}


def percentile(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


# -- processes ----------------------------------------------------------------------------------------
def start(name: str, argv: list[str], cwd: Path, ready: str, timeout: float = 120) -> tuple[subprocess.Popen, re.Match]:
    """Start a server and wait for the line that says it accepts connections (its stderr: ``cwd/NAME.stderr``)."""
    cwd.mkdir(parents=True, exist_ok=True)
    log = cwd / f"{name}.stderr"
    with log.open("wb") as err:
        proc = subprocess.Popen(argv, cwd=cwd, env=env(), stdout=subprocess.PIPE, stderr=err,
                                stdin=subprocess.DEVNULL, text=True)
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        if sel.select(timeout=0.5):
            line = proc.stdout.readline()
            seen.append(line)
            if m := re.search(ready, line):
                return proc, m
    stop(proc)
    raise RuntimeError(f"{' '.join(argv)} did not start (exit {proc.returncode}): {''.join(seen)[-1000:]}; "
                       f"see {log}")


def stop(proc: subprocess.Popen, timeout: float = 120) -> None:
    """SIGTERM, as an orchestrator stops it, and wait for the drain."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    sys.exit(main())
