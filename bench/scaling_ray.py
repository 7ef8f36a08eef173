"""By hand, for docs/scaling.md: ``tollgate run --executor ray --replicas 2`` against the local executor.

Two workloads on a cold store each time, whole ``tollgate run`` process (Ray's start included) and
the run as stored (``duration_s``, which includes starting the replicas):
- ``python``: a pure-Python model that burns ~``--ms`` ms of CPU per prompt (one core locally: the GIL);
- ``hf``: the ~5M-parameter GPT-2 of bench row 2 (500 claim documents, greedy, 16 new tokens, batch 32),
  which torch already spreads over both cores locally.

    python bench/scaling_ray.py [--smoke] [--repeat N] [--only python|hf]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import workloads

BENCH = Path(__file__).parent

BUSY = """\
import time

def busy(prompt):
    end = time.process_time() + {seconds}
    x = 0
    while time.process_time() < end:
        x += 1
    return prompt.split()[-1]
"""


def tollgate(project: Path, *args: str) -> tuple[float, float]:
    """(wall seconds of the whole process, the run's stored duration_s)."""
    workloads.fresh_store(project)
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "harness.cli", "run", "--no-progress", "--format", "json", *args],
                         cwd=project, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"tollgate run {' '.join(args)} failed:\n{out.stderr[-3000:]}")
    rows = json.loads(out.stdout)
    return wall, max(r["duration_s"] for r in rows)


def python_project(root: Path, n: int, ms: float) -> tuple[Path, list[str]]:
    workloads.write_project(root, {"busy": {"adapter": "python", "options": {"callable": "busymodel:busy"}}})
    (root / "busymodel.py").write_text(BUSY.format(seconds=ms / 1000))
    workloads.write_suite(root, "words", "kind: heldout\ntask: generate\nprompt: \"{{ text }}\"\n"
                          "checks: [exact_match]\n",
                          [{"id": f"e{i}", "input": {"text": f"say w{i}"}, "expected": f"w{i}"} for i in range(n)])
    return root, ["--model", "busy", "--commit-every", "8"]


def hf_project(root: Path, n: int, smoke: bool, cache: Path) -> tuple[Path, list[str]]:
    model = workloads.gpt2(cache, smoke=smoke)
    workloads.write_project(root, {"gpt2": workloads.hf_model(model, batch_size=32)})
    workloads.generate_suite(root, n, 4 if smoke else 16)
    return root, ["--model", "gpt2", "--commit-every", "32"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--ms", type=float, default=20.0, help="CPU ms per prompt of the python model")
    p.add_argument("--only", choices=("python", "hf"))
    p.add_argument("--cache", type=Path, default=Path(os.environ.get("TOLLGATE_BENCH_CACHE", BENCH / ".cache")))
    args = p.parse_args()
    cache = args.cache / ("smoke" if args.smoke else "full")
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmp:
        cases = []
        if args.only in (None, "python"):
            cases.append(("python", *python_project(Path(tmp) / "python", 20 if args.smoke else 800, args.ms)))
        if args.only in (None, "hf"):
            cases.append(("hf", *hf_project(Path(tmp) / "hf", 16 if args.smoke else 500, args.smoke, cache)))
        for name, project, base in cases:
            local = [tollgate(project, *base) for _ in range(args.repeat)]
            ray = [tollgate(project, *base, "--executor", "ray", "--replicas", "2") for _ in range(args.repeat)]
            lw, lr = statistics.median(w for w, _ in local), statistics.median(r for _, r in local)
            rw, rr = statistics.median(w for w, _ in ray), statistics.median(r for _, r in ray)
            print(f"{name:<7} local: wall {lw:6.1f} s, run {lr:6.1f} s | ray x2: wall {rw:6.1f} s, run {rr:6.1f} s | "
                  f"speed-up wall {lw / rw:4.2f}x, run {lr / rr:4.2f}x   (all: local {local}, ray {ray})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
