"""The pytest plugin: QA tests in Python against a real model, stored like any suite.

    pytest qa/ --tollgate-model candidate

``tollgate_model`` is the project's model, loaded once per session; ``tollgate_model.generate(x)``
returns the answer (a dict when it is a JSON object). Every test that used it becomes an example of
a suite named after its module (``qa-<module>``, kind ``edge``): passed, failed, errored (stored as
an error) or xfail (a known failure, never a pass), with the input and the output, so the gate and
``tollgate failures`` see QA's tests like any other suite.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

_RECORDS = pytest.StashKey[list[dict[str, Any]]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("tollgate")
    group.addoption("--tollgate-model", help="a model name from tollgate.yaml to test")
    group.addoption("--tollgate-project", help="tollgate.yaml (default: found from the working directory)")


class ModelUnderTest:
    """A model of the project, with the suites' prompt templates at hand."""

    def __init__(self, project: Any, name: str) -> None:
        from harness.runner import ModelHandle

        self.project, self.name = project, name
        self.handle = ModelHandle(project.model(name))
        self.calls: list[dict[str, Any]] = []

    def generate(self, input: Any, *, suite: str | None = None) -> Any:
        """The model's answer to ``input``; with ``suite``, the input goes through that suite's template."""
        from harness.checks import parse_json_output
        from harness.runner import settings_for
        from harness.suites import load_suite, suite_headers

        prompt, settings = input if isinstance(input, str) else json.dumps(input), self.handle.cfg.generation
        if suite is not None:
            s = load_suite(suite_headers(self.project.suite_dirs)[suite])
            from harness.examples import Example

            prompt = s.render(Example("qa", input, None, (), 0, ""))
            settings = settings_for(self.handle.cfg, s)
        gen = self.handle.get().generate([prompt], settings)[0]
        if gen.error:
            raise RuntimeError(f"the model failed: {gen.error}")
        obj, err = parse_json_output(gen.text or "", strict=True)
        answer = obj if err is None and isinstance(obj, dict) else gen.text
        self.calls.append({"input": input, "output": gen.text, "latency_ms": gen.latency_ms})
        return answer


@pytest.fixture(scope="session")
def _tollgate_session(request: pytest.FixtureRequest) -> ModelUnderTest:
    from harness.project import find_project, load_project

    name = request.config.getoption("--tollgate-model")
    if not name:
        pytest.skip("no --tollgate-model given")
    project = load_project(find_project(explicit=request.config.getoption("--tollgate-project")))
    model = ModelUnderTest(project, name)
    request.config.stash[_RECORDS] = []
    return model


@pytest.fixture
def tollgate_model(_tollgate_session: ModelUnderTest, request: pytest.FixtureRequest) -> ModelUnderTest:
    _tollgate_session.calls = []
    request.node.stash[_RECORDS] = _tollgate_session.calls
    return _tollgate_session


@pytest.fixture
def tollgate_record(request: pytest.FixtureRequest) -> Any:
    """``tollgate_record(input, output)`` for a test that calls a model some other way."""
    calls = request.node.stash.setdefault(_RECORDS, [])

    def record(input: Any, output: Any) -> None:
        calls.append({"input": input, "output": output if isinstance(output, str) else json.dumps(output),
                      "latency_ms": None})

    return record


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    outcome = yield
    report = outcome.get_result()
    calls = item.stash.get(_RECORDS, None)
    if calls is None or (report.when != "call" and not report.failed):
        return
    if report.when == "call" or report.failed:
        if hasattr(report, "wasxfail"):
            status, reason = "xfail", f"known failure (xfail): {report.wasxfail}"
        elif report.when != "call":
            status, reason = "error", f"the test errored in {report.when}"
        elif report.passed:
            status, reason = "passed", None
        elif call.excinfo is not None and not call.excinfo.errisinstance(AssertionError):
            status, reason = "error", f"{call.excinfo.typename}: {call.excinfo.value}"
        else:
            status, reason = "failed", (str(call.excinfo.value).splitlines() or ["assertion failed"])[0][:300]
        item.config.stash.setdefault(_RECORDS, []).append({
            "module": Path(str(item.fspath)).stem, "test": item.nodeid, "status": status, "reason": reason,
            "calls": list(calls)})


def pytest_sessionfinish(session: pytest.Session) -> None:
    records = session.config.stash.get(_RECORDS, [])
    name = session.config.getoption("--tollgate-model", default=None)
    if not records or not name:
        return
    from harness.project import find_project, load_project

    project = load_project(find_project(explicit=session.config.getoption("--tollgate-project")))
    store_results(project, name, records)


def store_results(project: Any, model: str, records: list[dict[str, Any]]) -> list[str]:
    """One run per test module, in one transaction each; returns the run ids."""
    from harness import store as st
    from harness.adapters import adapters
    from harness.hashing import hash_obj
    from harness.report import finish_run
    from harness.version import code_version

    cfg = project.model(model)
    fingerprint = adapters.get(cfg.adapter).fingerprint(cfg)
    store = st.Store(project.store_path)
    by_module: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_module.setdefault(r["module"], []).append(r)
    run_ids = []
    for module, recs in sorted(by_module.items()):
        suite = f"qa-{module}"
        examples, rows, now = [], [], st.utcnow()
        for r in recs:
            first = r["calls"][0] if r["calls"] else {"input": None, "output": None, "latency_ms": None}
            examples.append({"id": r["test"], "input": first["input"], "expected": None,
                             "tags": ["pytest", r["status"]], "hash": hash_obj(r["test"], first["input"]), "line": 0})
            rows.append({"example_id": r["test"], "output_key": hash_obj(fingerprint, r["test"], first["output"]),
                         "result_key": uuid.uuid4().hex, "output": first["output"],
                         "details": json.dumps({"calls": r["calls"]}, default=str),
                         "score": 1.0 if r["status"] == "passed" else 0.0, "passed": r["status"] == "passed",
                         "reason": r["reason"], "latency_ms": first["latency_ms"], "prompt_tokens": None,
                         "completion_tokens": None, "error": r["reason"] if r["status"] == "error" else None,
                         "cached": False, "created_at": now})
        suite_hash = hash_obj(suite, sorted(e["hash"] for e in examples))
        run_id = uuid.uuid4().hex
        t0 = time.perf_counter()
        with store.write() as con:
            st.register_model(con, name=cfg.name, fingerprint=fingerprint, adapter=cfg.adapter,
                              uri=str(cfg.path or cfg.url or ""), role=cfg.role, version=cfg.version,
                              settings=cfg.generation.as_dict())
            st.register_suite(con, name=suite, content_hash=suite_hash, kind="edge", task="pytest",
                              spec={"source": "pytest", "module": module}, path=module, examples=examples)
            st.start_run(con, run_id=run_id, model=cfg.name, fingerprint=fingerprint, suite=suite,
                         suite_hash=suite_hash, suite_kind="edge", stage="post-finetune",
                         config={"source": "pytest"}, code_version=code_version(), n_examples=len(rows))
            for row in rows:
                row["run_id"] = run_id
            scores = [{"run_id": run_id, "example_id": r["example_id"], "metric": "pytest", "value": r["score"],
                       "passed": r["passed"], "reason": r["reason"], "counts": None} for r in rows if not r["error"]]
            st.insert_results(con, rows, scores)
            finish_run(con, run_id, "completed", time.perf_counter() - t0)
        run_ids.append(run_id)
    return run_ids
