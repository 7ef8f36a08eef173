"""Shared fixtures: offline mode, tiny real models, throw-away projects, the CLI as a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if os.environ.get("PYTEST_XDIST_WORKER"):  # two workers on two cores: one math thread each (and in every
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # child they start), or torch's spinning threads
        os.environ.setdefault(_var, "1")  # fight and the demo runs three times slower

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def tiny_causal_dir(tmp_path_factory) -> Path:
    from tiny_models import build_causal

    return build_causal(tmp_path_factory.mktemp("models") / "causal")


@pytest.fixture(scope="session")
def tiny_classifier_dir(tmp_path_factory) -> Path:
    from tiny_models import build_classifier

    return build_classifier(tmp_path_factory.mktemp("models") / "classifier")


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


def run_cli(*args: str, cwd: Path, timeout: float = 300) -> CliResult:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    p = subprocess.run([sys.executable, "-m", "harness.cli", *args], cwd=cwd, capture_output=True, text=True,
                       timeout=timeout, env=env, stdin=subprocess.DEVNULL)
    return CliResult(p.returncode, p.stdout, p.stderr)


_children: list[subprocess.Popen[str]] = []


def tollgate_child(root: Path, *args: str, preexec_fn=None, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """``python -m harness.cli --project ROOT/tollgate.yaml ARGS`` as a child process that the test
    drives (kills, runs beside others); any child still running when its test ends is killed."""
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "--project", str(root / "tollgate.yaml"), *args],
                            cwd=root, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
                            preexec_fn=preexec_fn)
    _children.append(proc)
    return proc


@pytest.fixture(autouse=True)
def _no_child_outlives_its_test():
    yield
    while _children:
        proc = _children.pop()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def write_suite(root: Path, name: str, examples: list[dict], *, kind: str = "heldout", task: str = "generate",
                extra: str = "", prompt: str = "{{ input }}") -> Path:
    d = root / "suites" / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "suite.yaml").write_text(f"name: {name}\nkind: {kind}\ntask: {task}\nprompt: {json.dumps(prompt)}\n"
                                  + textwrap.dedent(extra))
    (d / "examples.jsonl").write_text("".join(json.dumps(e) + "\n" for e in examples))
    return d


def write_project(root: Path, models: str, suites: str = "  - suites/*\n") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    p = root / "tollgate.yaml"
    p.write_text("store: .tollgate/tollgate.duckdb\nmodels:\n" + models + "suites:\n" + suites)
    return p


ECHO_MODEL = """\
  echo:
    adapter: python
    options: {callable: "mymodels:echo"}
"""


@pytest.fixture(scope="session")
def full_demo(tmp_path_factory):
    """The README's demo on the shipped weights, run once per session: (CLI result, results by
    (model, suite, metric), project folder). Tests that change the project work on a copy."""
    d = tmp_path_factory.mktemp("demo") / "tollgate-demo"
    res = run_cli("demo", "--dir", str(d), "--no-progress", cwd=d.parent, timeout=900)
    assert res.returncode == 0, res.stderr[-2000:]
    rows = json.loads(run_cli("results", "--format", "json", cwd=d).stdout)
    return res, {(r["model"], r["suite"], r["metric"]): r for r in rows}, d


@pytest.fixture
def echo_project(tmp_path) -> Path:
    """A project with a python 'echo' model (answers the last word of the prompt) and one suite."""
    (tmp_path / "mymodels.py").write_text(textwrap.dedent("""\
        import os, time
        def echo(prompt):
            delay = float(os.environ.get("ECHO_DELAY", "0"))
            if delay:
                time.sleep(delay)
            if "FAIL" in prompt:
                raise RuntimeError("endpoint timed out")
            return prompt.split()[-1]
        """))
    write_project(tmp_path, ECHO_MODEL)
    write_suite(tmp_path, "words", [{"id": f"e{i}", "input": f"say w{i}", "expected": f"w{i}" if i % 4 else "x"}
                                    for i in range(20)], extra="checks: [exact_match]\n")
    return tmp_path


@pytest.fixture(autouse=True)
def _isolate_project_imports():
    """Projects put their folder on sys.path and import their own modules (mymodels, mychecks);
    forget them after each test so the next project's same-named module is really imported."""
    path, modules = list(sys.path), set(sys.modules)
    yield
    sys.path[:] = path
    for name in set(sys.modules) - modules:
        mod = sys.modules[name]
        if name.startswith("my") or "pytest-of" in str(getattr(mod, "__file__", "") or ""):
            del sys.modules[name]


# -- running in parallel (make test: pytest -n 2 --dist loadgroup --no-loadscope-reorder) ----------------
# The demo is run once per session and shared by several modules, so everything that uses it goes to
# one worker, first, while the other worker takes the rest module by module (module fixtures, such as
# a started router, are then built once).
DEMO_GROUP = "demo"
_DEMO_MODULES = {"test_dashboard_browser"}  # asks for full_demo at run time (getfixturevalue)


def _group(item: pytest.Item) -> str:
    if "full_demo" in getattr(item, "fixturenames", ()) or item.module.__name__ in _DEMO_MODULES:
        return DEMO_GROUP
    return item.module.__name__


def pytest_itemcollected(item):
    """Mark each test's group as it is collected: xdist reads the marks in its own
    pytest_collection_modifyitems, which runs before any conftest's."""
    if item.get_closest_marker("xdist_group") is None:
        item.add_marker(pytest.mark.xdist_group(_group(item)))


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: _group(item) != DEMO_GROUP)  # stable: the demo's group is handed out first
