"""The pytest plugin, tested the way pytest tests plugins: by running pytest itself (pytester)."""

from __future__ import annotations

import json
import textwrap

import duckdb

pytest_plugins = ["pytester"]

PROJECT = """\
store: .tollgate/tollgate.duckdb
models:
  rules:
    adapter: python
    options: {callable: "qamodel:answer"}
suites:
  - suites/*
"""
QAMODEL = textwrap.dedent("""\
    import json
    def answer(prompt):
        if "boom" in prompt:
            raise RuntimeError("endpoint down")
        if "two dates" in prompt:
            return json.dumps({"accident_date": "1899-04-03"})
        return json.dumps({"accident_date": "1899-03-04"})
""")
QA_TESTS = textwrap.dedent("""\
    import pytest

    def test_one_date(tollgate_model):
        out = tollgate_model.generate("accident on 4 March 1899")
        assert out["accident_date"] == "1899-03-04"

    def test_two_dates(tollgate_model):
        out = tollgate_model.generate("two dates: 4 March 1899 and 3 April 1899")
        assert out["accident_date"] == "1899-03-04", "picked the report date"

    @pytest.mark.xfail(reason="known: two dates confuse it")
    def test_two_dates_known(tollgate_model):
        assert tollgate_model.generate("two dates again")["accident_date"] == "1899-03-04"

    def test_model_down(tollgate_model):
        tollgate_model.generate("boom")

    def test_without_the_model():
        assert True
""")


def test_qa_tests_run_against_the_model_and_are_stored_like_a_suite(pytester):
    pytester.makefile(".yaml", tollgate=PROJECT)
    (pytester.path / "suites").mkdir()
    pytester.makepyfile(qamodel=QAMODEL, test_qa_dates=QA_TESTS)
    result = pytester.runpytest_subprocess("--tollgate-model", "rules", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=2, xfailed=1)
    con = duckdb.connect(str(pytester.path / ".tollgate" / "tollgate.duckdb"), read_only=True)
    runs = con.execute("SELECT suite, suite_kind, status, n_examples FROM runs").fetchall()
    rows = dict(con.execute("SELECT example_id, json_object('passed', passed, 'error', error, 'reason', reason, "
                            "'output', output) FROM results").fetchall())
    con.close()
    assert runs == [("qa-test_qa_dates", "edge", "completed", 4)]  # the test without the model is not stored
    got = {k.split("::")[1]: json.loads(v) for k, v in rows.items()}
    assert got["test_one_date"]["passed"] is True
    assert got["test_two_dates"]["passed"] is False and "picked the report date" in got["test_two_dates"]["reason"]
    assert got["test_two_dates_known"]["passed"] is False and "xfail" in got["test_two_dates_known"]["reason"]
    assert got["test_model_down"]["error"].startswith("RuntimeError")  # an errored test is an error, not a fail


def test_without_a_model_option_the_fixture_skips(pytester):
    pytester.makepyfile(test_x="def test_a(tollgate_model):\n    pass\n")
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(skipped=1)
