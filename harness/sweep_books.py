"""The books of a hyperparameter study in the store: one row per study, one per trial.

Optuna's own storage is for resuming a study; these rows are what Tollgate reports, the dashboard
shows and a release manager audits (which trials ran, with what parameters, what each scored on
the validation suite with its interval, which were pruned or failed, and which run holds the
evidence), so they live beside the runs they point to. All SQL takes its values as parameters.
"""

from __future__ import annotations

import json
from typing import Any

from harness.errors import TollgateInputError
from harness.store import utcnow

STATES = ("RUNNING", "COMPLETE", "PRUNED", "FAIL")
TRIAL_COLUMNS = ("study", "trial", "model", "params", "state", "value", "low", "high", "n", "intermediate",
                 "run_id", "checkpoint", "error", "started_at", "finished_at", "duration_s")


def open_study(con: Any, *, study: str, suite: str, metric: str, direction: str, template_model: str,
               settings: dict[str, Any]) -> None:
    """Record the study once; a study name keeps its suite and metric for good, so its trials compare."""
    row = con.execute("SELECT suite, metric, direction FROM sweeps WHERE study = ?", [study]).fetchone()
    if row is None:
        con.execute("INSERT INTO sweeps (study, suite, metric, direction, template_model, settings, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [study, suite, metric, direction, template_model, json.dumps(settings), utcnow()])
        return
    if tuple(row) != (suite, metric, direction):
        raise TollgateInputError(
            f"study '{study}' is already recorded with suite '{row[0]}', metric '{row[1]}' ({row[2]}); this "
            f"objective uses suite '{suite}', metric '{metric}' ({direction}). Trials judged on different "
            f"measures cannot be compared.", hint="Give the new search its own study_name.")


def start_trial(con: Any, *, study: str, trial: int, model: str, params: dict[str, Any]) -> None:
    if con.execute("SELECT 1 FROM sweep_trials WHERE study = ? AND trial = ?", [study, trial]).fetchone():
        raise TollgateInputError(
            f"study '{study}' already has a trial {trial} in the store: this looks like a new study under an "
            f"old name.", hint="Use a new study_name, or resume the old study from Optuna's storage "
                               "(optuna.create_study(storage=..., load_if_exists=True)), which numbers new "
                               "trials after the old ones (docs/sweeps.md).")
    con.execute("INSERT INTO sweep_trials (study, trial, model, params, state, started_at) "
                "VALUES (?, ?, ?, ?, 'RUNNING', ?)", [study, trial, model, json.dumps(params, default=str), utcnow()])


def finish_trial(con: Any, *, study: str, trial: int, state: str, params: dict[str, Any],
                 intermediate: list[dict[str, Any]], duration_s: float, value: float | None = None,
                 low: float | None = None, high: float | None = None, n: int | None = None,
                 run_id: str | None = None, checkpoint: str | None = None, error: str | None = None) -> None:
    if state not in STATES:
        raise ValueError(f"unknown trial state {state!r}")
    con.execute(
        "UPDATE sweep_trials SET state = ?, params = ?, value = ?, low = ?, high = ?, n = ?, intermediate = ?, "
        "run_id = ?, checkpoint = ?, error = ?, finished_at = ?, duration_s = ? WHERE study = ? AND trial = ?",
        [state, json.dumps(params, default=str), value, low, high, n, json.dumps(intermediate), run_id, checkpoint,
         error, utcnow(), duration_s, study, trial])


def studies(con: Any) -> list[dict[str, Any]]:
    """Every recorded study with its trial counts by state and its best value."""
    cur = con.execute("""
        SELECT s.study, s.suite, s.metric, s.direction, s.template_model, s.created_at,
               count(t.trial) AS trials,
               count(*) FILTER (WHERE t.state = 'COMPLETE') AS complete,
               count(*) FILTER (WHERE t.state = 'PRUNED') AS pruned,
               count(*) FILTER (WHERE t.state = 'FAIL') AS failed,
               CASE WHEN s.direction = 'maximize' THEN max(t.value) FILTER (WHERE t.state = 'COMPLETE')
                    ELSE min(t.value) FILTER (WHERE t.state = 'COMPLETE') END AS best
        FROM sweeps s LEFT JOIN sweep_trials t USING (study)
        GROUP BY s.study, s.suite, s.metric, s.direction, s.template_model, s.created_at
        ORDER BY s.created_at""")
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def study(con: Any, name: str) -> dict[str, Any]:
    """One study's settings; an unknown name is the user's mistake, said with the names that exist."""
    cur = con.execute("SELECT study, suite, metric, direction, template_model, settings, created_at FROM sweeps "
                      "WHERE study = ?", [name])
    row = cur.fetchone()
    if row is None:
        known = [r[0] for r in con.execute("SELECT study FROM sweeps ORDER BY created_at").fetchall()]
        raise TollgateInputError(f"no study named '{name}' in the store; recorded studies: "
                                 f"{', '.join(known) or 'none'}.", field="STUDY",
                                 hint="A study is recorded when harness.sweep.TollgateObjective judges its "
                                      "first trial (docs/sweeps.md).")
    d = dict(zip([c[0] for c in cur.description], row, strict=True))
    d["settings"] = json.loads(d["settings"]) if d["settings"] else {}
    return d


def trials(con: Any, name: str) -> list[dict[str, Any]]:
    rows = con.execute(f"SELECT {', '.join(TRIAL_COLUMNS)} FROM sweep_trials WHERE study = ? ORDER BY trial",
                       [name]).fetchall()
    out = []
    for r in rows:
        d = dict(zip(TRIAL_COLUMNS, r, strict=True))
        d["params"] = json.loads(d["params"]) if d["params"] else {}
        d["intermediate"] = json.loads(d["intermediate"]) if d["intermediate"] else []
        out.append(d)
    return out


def best_trial(rows: list[dict[str, Any]], direction: str) -> dict[str, Any] | None:
    """The completed trial with the best value (the lowest trial number on a tie, as Optuna picks)."""
    done = [t for t in rows if t["state"] == "COMPLETE" and t["value"] is not None]
    if not done:
        return None
    sign = -1.0 if direction == "maximize" else 1.0
    return min(done, key=lambda t: (sign * t["value"], t["trial"]))
