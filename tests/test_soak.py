"""A bounded soak of the live router: ``tollgate serve`` in its own process, shadow and beta both on,
a steady open-loop request rate for ``TOLLGATE_SOAK_SECONDS``.

The default run is short (12 s, CI); ``pytest -m soak`` runs the same for 60 s (or the variable's
value). Checked: every user request is answered by the right arm and is in the traffic log after
shutdown (no row lost); the shadow, slower than its share of the traffic on purpose, drops copies,
and every drop is counted in ``/metrics`` (shadow rows stored = selected - dropped, exactly); the
router's resident memory after the run is within a small margin of its memory after warm-up.

Shadow and beta are on together through raw stage events: ``tollgate rollout advance`` allows one
model at a time in shadow or beta, the router serves both at once, and the soak exercises both
paths together.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from conftest import write_project

from harness.store import Store
from rollout.stages import Stage, beta_bucket, record

REPO = Path(__file__).resolve().parent.parent
RATE = float(os.environ.get("TOLLGATE_SOAK_RATE", "60"))  # requests per second
BETA_SHARE = 0.25
SHADOW_MS = 25  # the shadow answers 40 copies/s; production sends it ~45/s at 60 req/s: it must drop some
SHADOW_QUEUE = 16  # shadow copies waiting for the shadow model (the log queue keeps its default, 10,000)
RSS_MARGIN_MB = 16.0  # allowed growth after warm-up (allocator arenas, DuckDB's caches settling)

# serve() as `tollgate serve` runs it, with a small shadow queue (the CLI's --queue sizes the log queue too,
# and a small log queue makes users wait on every store transaction instead)
SERVE = textwrap.dedent("""\
    import sys
    from pathlib import Path
    import rollout.router as router
    from harness.project import load_project
    create_app = router.create_app
    router.create_app = lambda *a, **kw: create_app(*a, **kw, shadow_queue_size=int(sys.argv[2]))
    router.serve(load_project(Path(sys.argv[1])), port=0)
    """)

MODELS = """\
  prod:
    adapter: python
    role: production
    options: {callable: "soakmodels:prod"}
  cand:
    adapter: python
    options: {callable: "soakmodels:cand"}
  shadowed:
    adapter: python
    options: {callable: "soakmodels:shadowed"}
"""


@dataclass
class Soak:
    seconds: float
    sent: int = 0
    timed: list[tuple[int, float]] = field(default_factory=list)  # (request number, latency ms)
    failures: list[str] = field(default_factory=list)
    arms: dict[str, int] = field(default_factory=dict)
    ids: set[str] = field(default_factory=set)
    rss_mb: list[tuple[float, float]] = field(default_factory=list)  # (seconds since start, MB)
    cpu_s: list[tuple[int, float]] = field(default_factory=list)  # (requests sent, router CPU seconds)

    def pct(self, q: float, part: slice = slice(None)) -> float:
        xs = sorted(ms for _, ms in sorted(self.timed)[part])
        return round(xs[min(len(xs) - 1, int(q * len(xs)))], 1)


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def _drive(url: str, pid: int, soak: Soak) -> None:
    """Open loop: request i leaves at start + i / RATE whatever the earlier ones are doing."""
    n = int(soak.seconds * RATE)
    start = time.monotonic()

    async def one(client: httpx.AsyncClient, i: int) -> None:
        user, prompt = f"user-{i % 500}", f"p{i}"
        t0 = time.perf_counter()
        try:
            r = await client.post("/v1/completions", json={"prompt": prompt, "user": user})
        except httpx.HTTPError as exc:
            soak.failures.append(f"{i}: {type(exc).__name__}: {exc}")
            return
        soak.timed.append((i, (time.perf_counter() - t0) * 1000))
        arm = r.headers.get("x-tollgate-arm", "?")
        want_arm = "beta" if beta_bucket(user, "tollgate") < BETA_SHARE else "production"
        want = f"{'cand' if want_arm == 'beta' else 'prod'}:{prompt}"
        if r.status_code != 200 or arm != want_arm or r.json()["choices"][0]["text"] != want:
            soak.failures.append(f"{i}: {r.status_code} {arm} {r.text[:200]}")
            return
        soak.arms[arm] = soak.arms.get(arm, 0) + 1
        soak.ids.add(r.json()["id"])

    async def sample_rss() -> None:
        while True:
            soak.rss_mb.append((time.monotonic() - start, _rss_mb(pid)))
            soak.cpu_s.append((soak.sent, _cpu_s(pid)))
            await asyncio.sleep(0.25)

    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        sampler = asyncio.create_task(sample_rss())
        tasks = []
        for i in range(n):
            delay = start + i / RATE - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(client, i)))
            soak.sent += 1
        await asyncio.gather(*tasks)
        sampler.cancel()
        soak.rss_mb.append((time.monotonic() - start, _rss_mb(pid)))


def run_soak(root: Path, seconds: float) -> tuple[Soak, dict, dict]:
    (root / "soakmodels.py").write_text(textwrap.dedent(f"""\
        import time
        def prod(prompt):
            return "prod:" + prompt
        def cand(prompt):
            return "cand:" + prompt
        def shadowed(prompt):
            time.sleep({SHADOW_MS / 1000})
            return "shadow:" + prompt
        """))
    write_project(root, MODELS)
    store = root / ".tollgate" / "tollgate.duckdb"
    with Store(store).write() as con:
        record(con, "shadowed", Stage("candidate"), Stage("shadow"), "soak", "soak", None, False)
        record(con, "cand", Stage("candidate"), Stage("beta", BETA_SHARE), "soak", "soak", None, False)
    proc = subprocess.Popen([sys.executable, "-c", SERVE, str(root / "tollgate.yaml"), str(SHADOW_QUEUE)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    soak = Soak(seconds)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("serving on http://127.0.0.1:"), line + proc.stderr.read()
        url = line.split()[-1]
        asyncio.run(_drive(url, proc.pid, soak))
        deadline = time.monotonic() + 30
        while (metrics := httpx.get(url + "/metrics").json())["shadow"]["pending"] and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    with Store(store).read() as con:
        rows = dict(con.execute("SELECT arm, count(*) FROM traffic GROUP BY arm").fetchall())
        rows["ids"] = {r[0] for r in con.execute("SELECT request_id FROM traffic WHERE arm <> 'shadow'").fetchall()}
    return soak, metrics, rows


def check_soak(soak: Soak, metrics: dict, rows: dict) -> dict:
    served = sum(soak.arms.values())
    figures = {
        "seconds": soak.seconds, "rate": RATE, "requests": soak.sent, "answered": served,
        "beta": soak.arms.get("beta", 0), "rows_lost": len(soak.ids - rows["ids"]),
        "shadow_selected": metrics["shadow"]["selected"], "shadow_dropped": metrics["shadow"]["dropped"],
        "shadow_rows": rows.get("shadow", 0), "backpressure_waits": metrics["log"]["backpressure_waits"],
        "p50_ms": soak.pct(0.5), "p99_ms": soak.pct(0.99),
        # the first and the last fifth of the requests: a router that slows down as its log grows shows here
        "p50_ms_first_fifth": soak.pct(0.5, slice(None, soak.sent // 5)),
        "p50_ms_last_fifth": soak.pct(0.5, slice(-(soak.sent // 5), None)),
    }
    half = next(k for k, (n, _) in enumerate(soak.cpu_s) if n >= soak.sent // 2)
    (n0, c0), (n1, c1), (n2, c2) = soak.cpu_s[0], soak.cpu_s[half], soak.cpu_s[-1]
    figures.update(router_cpu_ms_per_request_first_half=round(1000 * (c1 - c0) / max(1, n1 - n0), 2),
                   router_cpu_ms_per_request_second_half=round(1000 * (c2 - c1) / max(1, n2 - n1), 2))
    # RSS: the median of the samples in the second after warm-up (a quarter of the run) vs of the last second
    warm_at = max(2.0, 0.25 * soak.seconds)
    warm = statistics.median(mb for t, mb in soak.rss_mb if warm_at <= t <= warm_at + 1)
    end = statistics.median(mb for _, mb in soak.rss_mb[-4:])
    figures.update(rss_warm_mb=round(warm, 1), rss_end_mb=round(end, 1),
                   rss_max_mb=round(max(mb for _, mb in soak.rss_mb), 1))
    print("\nsoak:", json.dumps(figures))
    # every user answered by the right arm, and every answer in the traffic log
    assert soak.failures == [], soak.failures[:5]
    assert served == soak.sent == len(soak.ids) == len(soak.timed) and soak.arms.get("beta", 0) > 0
    assert metrics["requests"]["production"] + metrics["requests"]["beta"] == soak.sent
    assert figures["rows_lost"] == 0 and rows.get("production", 0) + rows.get("beta", 0) == soak.sent
    # the overloaded shadow dropped copies, and each drop is counted: stored = selected - dropped
    assert metrics["shadow"]["selected"] == soak.arms["production"]
    assert 0 < metrics["shadow"]["dropped"] < metrics["shadow"]["selected"]
    assert rows["shadow"] == metrics["shadow"]["selected"] - metrics["shadow"]["dropped"]
    # memory stays flat once warm
    assert end - warm <= RSS_MARGIN_MB, figures
    return figures


def _seconds(default: float) -> float:
    return float(os.environ.get("TOLLGATE_SOAK_SECONDS", default))


def test_router_soak_short(tmp_path: Path) -> None:
    check_soak(*run_soak(tmp_path, _seconds(12)))


@pytest.mark.soak
def test_router_soak_long(tmp_path: Path) -> None:
    check_soak(*run_soak(tmp_path, _seconds(60)))
