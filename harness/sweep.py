"""Tollgate as the objective of an Optuna study: it trains nothing, it judges and keeps the books.

For each trial the user's training function makes a checkpoint; Tollgate evaluates it on a
``validation`` suite (never a ``heldout`` one: choosing among many trials on a suite makes its
score optimistic, so the held-out suites stay for the one trial that is finally selected) and
returns the metric. The suite is scored in growing slices of one fixed random order, and each
slice's value is reported to Optuna, so a pruner stops a hopeless trial after a quarter of the
examples instead of all of them. Slices cost nothing twice: each answer is cached by the runner.

Every trial is recorded (parameters, state, intermediate values, the validation value with its
95% interval, the run that holds the evidence) in the store's ``sweeps``/``sweep_trials`` tables,
so ``tollgate sweep report`` and the dashboard show a study without Optuna's storage.

    objective = TollgateObjective(project="tollgate.yaml", suite="validation", metric="field_f1",
                                  train=my_train_fn)
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.SuccessiveHalvingPruner())
    study.optimize(objective, n_trials=12)
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from harness import store as st
from harness import sweep_books as books
from harness.errors import TollgateInputError
from harness.project import Project, check_model_paths, load_project
from harness.suites import Suite, load_suite, suite_headers

SWEEP_STAGE = "sweep"


def trial_model_name(study: str, trial: int) -> str:
    """The name a trial's checkpoint is stored under: it says which study and trial it came from."""
    return f"{study}:trial-{trial}"


@dataclass
class TollgateObjective:
    """A callable for ``study.optimize``: train (the user's function), evaluate, report, prune, record.

    ``train`` receives the trial's parameters as a dict when ``space`` (name -> Optuna distribution)
    is given, or else the Optuna trial itself, to call ``trial.suggest_*``; it returns the folder of
    the trained checkpoint. That folder is evaluated as a copy of the project model ``model``
    (default: the project's candidate, else its base model): same adapter, options and generation
    settings, new weights. A training function that raises fails its trial (stored with the error)
    and the study goes on.
    """

    project: str | Path | Project
    train: Callable[[Any], str | Path]
    suite: str = "validation"
    metric: str = "pass"
    model: str | None = None
    space: Mapping[str, Any] | None = None
    slices: tuple[float, ...] = (0.25, 0.5, 1.0)
    seed: int = 0
    show_progress: bool = False
    log: Callable[[str], None] | None = None
    _project: Project = field(init=False, repr=False)
    _suite: Suite = field(init=False, repr=False)
    _order: list[Any] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._project = self.project if isinstance(self.project, Project) else load_project(_project_file(self.project))
        headers = suite_headers(self._project.suite_dirs)
        if self.suite not in headers:
            raise TollgateInputError(f"unknown suite '{self.suite}'; the project has: "
                                     f"{', '.join(sorted(headers)) or 'none'}.", file=self._project.path,
                                     field="suite")
        self._suite = load_suite(headers[self.suite])
        if self._suite.kind != "validation":
            hint = ("Choosing among trials on a held-out suite makes its score optimistic (the winner's curse); "
                    "keep held-out suites for the selected trial (`tollgate sweep select`).")
            raise TollgateInputError(f"suite '{self.suite}' is of kind '{self._suite.kind}'; a sweep is judged on a "
                                     f"suite of kind 'validation'.", file=self._suite.path / "suite.yaml",
                                     field="kind", hint=hint)
        if self._suite.task == "lm-eval":
            raise TollgateInputError(f"suite '{self.suite}' runs lm-eval tasks, which are not scored in slices; "
                                     f"judge a sweep on a generate or choice suite.",
                                     file=self._suite.path / "suite.yaml", field="lm_eval")
        self.model = self.model or _template_model(self._project)
        self._project.model(self.model)  # an unknown name is said now, not after the first training run
        if not self.slices or any(not 0 < s <= 1 for s in self.slices) or list(self.slices) != sorted(self.slices):
            raise TollgateInputError(f"slices must be increasing shares in (0, 1], got {list(self.slices)}.",
                                     field="slices")
        if self.slices[-1] != 1:
            self.slices = (*self.slices, 1.0)
        self._order = list(self._suite.examples)
        random.Random(self.seed).shuffle(self._order)  # one order for every trial: slices compare across trials

    def __call__(self, trial: Any) -> float:
        import optuna

        if len(trial.study.directions) != 1:
            raise TollgateInputError("a Tollgate objective has one value; create the study with one direction.")
        name = trial.study.study_name
        direction = "maximize" if trial.study.direction == optuna.study.StudyDirection.MAXIMIZE else "minimize"
        store = st.Store(self._project.store_path)
        model_name = trial_model_name(name, trial.number)
        with store.write() as con:
            books.open_study(con, study=name, suite=self.suite, metric=self.metric, direction=direction,
                             template_model=self.model, settings={"slices": list(self.slices), "seed": self.seed,
                                                                  "space": sorted(self.space or {})})
            books.start_trial(con, study=name, trial=trial.number, model=model_name, params={})
        t0 = time.perf_counter()
        steps: list[dict[str, Any]] = []
        checkpoint: str | None = None

        def close(state: str, **kw: Any) -> None:
            with store.write() as con:
                books.finish_trial(con, study=name, trial=trial.number, state=state, params=dict(trial.params),
                                   intermediate=steps, duration_s=time.perf_counter() - t0,
                                   checkpoint=checkpoint, **kw)

        try:
            checkpoint = str(Path(self._call_train(trial)).resolve())
        except KeyboardInterrupt:
            close("FAIL", error="interrupted")
            raise
        except Exception as exc:  # the user's training code failed: this trial fails, the study goes on
            close("FAIL", error=_short(exc))
            self._say(f"trial {trial.number}: training failed: {_short(exc)}")
            return float("nan")
        try:
            self._add_trial_model(model_name, Path(checkpoint))
            for i, share in enumerate(self.slices):
                n = max(1, round(share * len(self._order)))
                run_id, values = self._evaluate(model_name, n)
                if not values:
                    raise TollgateInputError(self._no_metric_message(store, run_id), file=self._suite.path,
                                             field="metric")
                value = sum(values) / len(values)
                steps.append({"step": i, "n": n, "value": value, "run_id": run_id})
                if n < len(self._order):
                    trial.report(value, step=n)
                    if trial.should_prune():
                        close("PRUNED", value=value, n=n, run_id=run_id)
                        self._say(f"trial {trial.number}: pruned after {n} of {len(self._order)} examples "
                                  f"({self.metric} {value:.3f})")
                        raise optuna.TrialPruned(f"{self.metric} {value:.3f} after {n} examples")
        except optuna.TrialPruned:
            raise
        except TollgateInputError as exc:
            close("FAIL", error=_short(exc))
            if exc.field == "metric":  # the objective's own setting is wrong: every trial would fail, stop
                raise
            # the checkpoint is not a model Tollgate will load (missing, unsafe, wrong shape): this trial only
            self._say(f"trial {trial.number}: failed: {_short(exc)}")
            return float("nan")
        except BaseException as exc:  # interrupted, or a bug: recorded, then raised
            close("FAIL", error="interrupted" if isinstance(exc, KeyboardInterrupt) else _short(exc))
            raise
        from harness.intervals import estimate

        est = estimate(values)
        close("COMPLETE", value=est.value, low=est.low, high=est.high, n=est.n, run_id=run_id)
        self._say(f"trial {trial.number}: {self.metric} {est.value:.3f} [{est.low:.3f}, {est.high:.3f}] on "
                  f"{est.n} examples, {time.perf_counter() - t0:.0f} s, params {dict(trial.params)}")
        return est.value

    # -- the parts of one trial ----------------------------------------------------------------
    def _call_train(self, trial: Any) -> str | Path:
        if self.space is None:
            out = self.train(trial)
        else:
            out = self.train({k: _suggest(trial, k, dist) for k, dist in self.space.items()})
        if out is None or not Path(out).is_dir():
            raise TollgateInputError(f"the training function returned {out!r}, not a checkpoint folder.",
                                     field="checkpoint")
        return out

    def _add_trial_model(self, name: str, checkpoint: Path) -> None:
        """The trial's checkpoint as a model of this (in-memory) project: the template with new weights."""
        template = self._project.model(self.model)
        if template.path is None:
            raise TollgateInputError(f"model '{self.model}' (adapter '{template.adapter}') has no weights folder "
                                     f"to replace with a checkpoint; name an hf-causal or hf-classifier model "
                                     f"with model=...", file=self._project.path, field="model")
        self._project.models[name] = replace(template, name=name, path=checkpoint, role="candidate",
                                             version=None)
        check_model_paths(self._project, only=name)

    def _evaluate(self, model_name: str, n: int) -> tuple[str, list[float]]:
        """Run the first ``n`` examples of the fixed order; the run's id and its per-example values."""
        from harness.runner import run_suites

        part = replace(self._suite, examples=self._order[:n])
        part.__dict__["content_hash"] = self._suite.content_hash  # a slice of this suite version, not a new one
        store = st.Store(self._project.store_path)
        (outcome,) = run_suites(self._project, model_name, [part], store, stage=SWEEP_STAGE,
                                show_progress=self.show_progress)
        if outcome.status != "completed":
            raise RuntimeError(f"the evaluation run {outcome.run_id} ended {outcome.status}")
        with store.read() as con:
            values = st.example_values(con, outcome.run_id, self.metric, errors_count=True)
        return outcome.run_id, list(values.values())

    def _no_metric_message(self, store: st.Store, run_id: str) -> str:
        with store.read() as con:
            names = st.run_metric_names(con, run_id)
        return f"suite '{self.suite}' produces no metric '{self.metric}'; it has: {', '.join(names)}."

    def _say(self, message: str) -> None:
        (self.log or (lambda m: print(m, file=sys.stderr, flush=True)))(message)


def _project_file(path: str | Path) -> Path:
    from harness.project import find_project

    return find_project(explicit=path)


def _template_model(project: Project) -> str:
    for role in ("candidate", "base"):
        names = [n for n, m in project.models.items() if m.role == role and m.path is not None]
        if names:
            return names[0]
    raise TollgateInputError("the project has no candidate or base model with a weights folder to use as the "
                             "template of the trials' checkpoints; pass model=NAME.", file=project.path,
                             field="models")


def _suggest(trial: Any, name: str, dist: Any) -> Any:
    """A parameter from a distribution, through the public ``suggest_*`` API."""
    import optuna.distributions as d

    if isinstance(dist, d.FloatDistribution):
        return trial.suggest_float(name, dist.low, dist.high, log=dist.log, step=dist.step)
    if isinstance(dist, d.IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, log=dist.log, step=dist.step)
    if isinstance(dist, d.CategoricalDistribution):
        return trial.suggest_categorical(name, list(dist.choices))
    if isinstance(dist, list | tuple):
        return trial.suggest_categorical(name, list(dist))
    raise TollgateInputError(f"space['{name}'] is a {type(dist).__name__}; use an optuna.distributions "
                             f"FloatDistribution, IntDistribution, CategoricalDistribution or a list of choices.",
                             field="space")


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:500]

