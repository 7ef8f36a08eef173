"""``tollgate demo``: the claims-extraction case end to end, one stage after another.

An insurance company fine-tuned a small model to pull five fields out of claim documents and
must decide whether it may replace the model in production. Each stage below is one step a
team would take; later parts of Tollgate (gates, baselines, QA suites, rollout, dashboard) add
their stage here.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from typing import Any

from demo.data import FIELDS, DemoData, generate, write_jsonl
from demo.train import PROMPT, Recipe

WEIGHTS = Path(__file__).parent / "weights"
MODELS = {  # name -> (role, training data file, what it is)
    "base": ("base", None, "pre-trained on claim documents only; never saw the extraction task"),
    "production": ("production", "data/train.jsonl", "last quarter's fine-tune: the same recipe, stopped early"),
    "candidate": ("candidate", "data/train.jsonl", "this quarter's fine-tune, best checkpoint on validation"),
    "overfit": ("other", "data/overfit_train.jsonl", "a fine-tune trained for many epochs on 200 examples"),
    "small": ("other", "data/train.jsonl", "a quarter-size model trained on the same data: the cheap option"),
}
# What serving costs: every demo model runs on the same CPU machine, so its price per request comes
# from its measured throughput (`tollgate compare --cost`); the figure is illustrative, the ratio is not.
PRICE_PER_HOUR = 0.40
GATE_POLICY = """\
# The release policy: what a candidate must show before it may replace production.
gate:
  alpha: 0.05                     # one-sided, Holm-corrected across the non-critical rules
  min_paired: 30
  overfit: {metric: json_fields, gap: 0.05}
  rules:
    - {suite: heldout, metric: json_fields, min: 0.90, critical: true}   # the interval's lower bound must clear it
    - {suite: heldout, metric: json_fields, non_inferior: 0.02}          # paired against the reference
    - {suite: heldout, metric: pass, non_inferior: 0.02}
    - {kind: edge, metric: json_fields, non_inferior: 0.05}
    - {suite: heldout, max_error_rate: 0.01}
    - no_overfitting: [gap, contamination, memorisation]
# The staged rollout: shadow (reviewers' corrections decide), then beta steps judged on users' thumbs.
rollout:
  suite: heldout                  # renders logged documents with its prompt; its checks score corrections
  beta_steps: [0.25, 0.5]
  shadow: {min_pairs: 300, min_corrections: 50, non_inferior: 0.02}
  beta: {min_feedback: 50, non_inferior: 0.03}
"""
SUITES = {  # name -> (kind, description)
    "train_sample": ("train_sample", "200 documents drawn from the training data"),
    "validation": ("validation", "the split the candidate's early stopping watched"),
    "heldout": ("heldout", "new documents, new claimant names"),
    "edge": ("edge", "legal wording, missing fields, two dates, OCR noise, non-ASCII names, long documents, "
                     "prompt injection"),
}


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- stage 1: data ------------------------------------------------------------------------------------
def write_data(root: Path, data: DemoData) -> None:
    """The training data, the raw export it came from, and the suites, as QA would keep them."""
    write_jsonl(root / "data" / "train.jsonl", data.train)
    write_jsonl(root / "data" / "raw_claims.jsonl", data.raw)
    write_jsonl(root / "data" / "overfit_train.jsonl", data.train_sample)
    rows = {"train_sample": data.train_sample, "validation": data.validation, "heldout": data.heldout,
            "edge": data.edge}
    for name, (kind, description) in SUITES.items():
        d = root / "suites" / name
        d.mkdir(parents=True, exist_ok=True)
        (d / "suite.yaml").write_text(
            f"name: {name}\nkind: {kind}\ntask: generate\ndescription: {description}\n"
            f"prompt: {PROMPT!r}\n".replace("'", '"')
            + "checks:\n  - json_valid\n  - json_fields:\n      fields: [" + ", ".join(FIELDS) + "]\n"
            + "tags: [claims]\n", encoding="utf-8")
        write_jsonl(d / "examples.jsonl", rows[name])


ADVERSARIAL = ["typos", "legalese", "unicode", "injection", "date_formats", "names"]


def write_adversarial(root: Path, sample: int, seed: int) -> int:
    """QA's generated edge cases: held-out documents rewritten six ways, each compared with its source
    (``tollgate suite perturb heldout --with ... --sample N --out edge-auto``)."""
    from harness.generate import perturb_suite
    from harness.suites import load_suite

    return perturb_suite(load_suite(root / "suites" / "heldout"), ADVERSARIAL, root / "suites" / "edge-auto",
                         seed=seed, force=True, sample=sample)


def copy_general_suites(root: Path) -> list[str]:
    """The shipped lm-eval general suites (suites/general/) join the demo project."""
    from demo.general import ROOT, TASKS

    for name in TASKS:
        shutil.copytree(ROOT / name, root / "suites" / name, dirs_exist_ok=True)
    return list(TASKS)


def write_project(root: Path) -> None:
    lines = ["# The claims-extraction demo, written by 'tollgate demo'.", "store: .tollgate/tollgate.duckdb",
             "models:"]
    for name, (role, training, what) in MODELS.items():
        lines += [f"  {name}:  # {what}", "    adapter: hf-causal", f"    path: models/{name}", f"    role: {role}"]
        if training:
            lines.append(f"    training_data: {training}")
        lines += ["    generation: {max_new_tokens: 96, temperature: 0}", "    options: {batch_size: 32}",
                  f"    cost: {{per_hour: {PRICE_PER_HOUR}}}"]
    lines += ["suites:", "  - suites/*", ""]
    (root / "tollgate.yaml").write_text("\n".join(lines) + GATE_POLICY, encoding="utf-8")


# -- stage 2: models ----------------------------------------------------------------------------------
def install_models(root: Path, rebuild: bool, scale: float, data: DemoData) -> float:
    """Copy the shipped weights, or train all four from scratch (``--rebuild``). Returns seconds spent."""
    t0 = time.perf_counter()
    target = root / "models"
    if rebuild:
        from demo.train import SmallRecipe, build_models, build_small

        recipe = Recipe() if scale == 1.0 else Recipe().scaled(scale)
        say(f"Training five models from scratch (recipe scale {scale}); at full scale this takes ~25 minutes.")
        shutil.rmtree(target, ignore_errors=True)
        build_models(data.train, data.validation, data.train_sample[: recipe.overfit_examples], target, recipe)
        build_small(data.train, target / "base", target / "small", SmallRecipe() if scale == 1.0
                    else SmallRecipe(steps=max(2, int(SmallRecipe().steps * scale))))
    elif not all((target / m / "model.safetensors").exists() for m in MODELS):
        if not all((WEIGHTS / m / "model.safetensors").exists() for m in MODELS):
            from harness.errors import TollgateInputError

            raise TollgateInputError("the shipped demo weights are missing; run 'tollgate demo --rebuild'.",
                                     file=WEIGHTS)
        for m in MODELS:
            shutil.copytree(WEIGHTS / m, target / m, dirs_exist_ok=True)
    return time.perf_counter() - t0


# -- stage 3: evaluate every model on every suite ------------------------------------------------------
def evaluate(root: Path, show_progress: bool = True) -> list[Any]:
    from harness.project import load_project
    from harness.report import stored_results
    from harness.runner import run_suites
    from harness.store import Store
    from harness.suites import load_suite

    project = load_project(root / "tollgate.yaml")
    suites = [load_suite(d) for d in project.suite_dirs]
    store = Store(project.store_path)
    for model in MODELS:  # base first: its runs are the pre-fine-tune baseline
        run_suites(project, model, suites, store, show_progress=show_progress)
    return stored_results(store)


def results_table(rows: list[Any]) -> Any:
    """Per model and suite: field accuracy and all-fields-right with 95% CIs, JSON validity, latency."""
    from rich.table import Table

    by = {(r.model, r.suite, r.metric): r for r in rows}
    t = Table(title="Claims extraction: every model on every suite (95% confidence intervals)",
              title_justify="left")
    for col in ("model", "suite", "field accuracy", "all 5 fields right", "valid JSON", "n", "ms/example"):
        t.add_column(col, justify="left" if col in ("model", "suite") else "right", no_wrap=True)
    for model in MODELS:
        for suite in [*SUITES, "edge-auto"]:
            fa, ok, js = (by.get((model, suite, m)) for m in ("json_fields", "pass", "json_valid"))
            lat = by.get((model, suite, "latency_ms"))
            if fa is None:
                continue
            t.add_row(model if suite == "train_sample" else "", suite, _ci(fa.estimate), _ci(ok.estimate),
                      f"{js.estimate.value:.2f}", str(fa.estimate.n),
                      f"{lat.estimate.value:.0f}" if lat else "—")
        t.add_section()
    return t


def general_table(rows: list[Any]) -> Any:
    """lm-eval accuracy per model: base is the "before" of every fine-tune."""
    from rich.table import Table

    from demo.general import TASKS

    by = {(r.model, r.suite, r.metric): r for r in rows}
    t = Table(title="General benchmarks through lm-eval (acc, 95% CI; chance is 0.25)", title_justify="left")
    t.add_column("model", no_wrap=True)
    for task in TASKS:
        t.add_column(task, justify="right", no_wrap=True)
    for model in MODELS:
        cells = [by.get((model, task, "acc")) for task in TASKS]
        t.add_row(model, *(_ci(c.estimate) if c else "—" for c in cells))
    return t


def _ci(e: Any) -> str:
    return f"{e.value:.2f} [{e.low:.2f}, {e.high:.2f}]"


def worst_tags(root: Path, model: str = "candidate", top: int = 8) -> Any:
    """Where the candidate breaks: pass rate per tag on the edge suites, worst first, as QA reads it
    (``tollgate failures candidate --by tag``); invariance is the share of answers a rewrite left alone."""
    from rich.table import Table

    from harness.failures import behaviour_rates, failure_report
    from harness.store import Store

    with Store(root / ".tollgate" / "tollgate.duckdb").read() as con:
        slices, _ = failure_report(con, model, ["edge", "edge-auto"], by="tag", limit=0)
        inv = behaviour_rates(con, model, "edge-auto")
    worst = sorted((s for s in slices if s.key not in ("(all)", "claims") and not s.key.startswith("source:")),
                   key=lambda s: (s.estimate.value, -s.estimate.n))[:top]
    t = Table(title=f"The {model}'s worst tags on the edge suites (pass = all fields right; 95% CI)",
              title_justify="left")
    for col in ("suite", "tag", "pass rate", "n", "same answer as on the source"):
        t.add_column(col, justify="left" if col in ("suite", "tag") else "right", no_wrap=True)
    for s in worst:
        e = s.estimate
        same = inv.get(s.key.split(":", 1)[1]) if s.key.startswith("perturbation:") else None
        t.add_row(s.suite, s.key, _ci(e), str(e.n), _ci(same) if same is not None else "")
    return t


# -- stage 4: the gate -----------------------------------------------------------------------------------
def gates(root: Path) -> list[tuple[str, str]]:
    """Judge the candidate, then the overfit model, against production; both decisions are recorded."""
    from harness.cli_gate import _context_for, judge, print_decision
    from harness.overfit import project_probes
    from harness.runner import run_suites

    project, store, kinds = _context_for(root / "tollgate.yaml")
    probes = [p for p, _ in project_probes(project.suite_dirs, project.gate.seed)]
    verdicts = []
    for model in ("candidate", "overfit"):
        run_suites(project, model, probes, store, show_progress=False)  # the memorisation probe (cached)
        decision, decision_id = judge(project, store, kinds, model, "production", "base", actor="tollgate-demo")
        print_decision(decision, decision_id)
        verdicts.append((model, decision.verdict))
    return verdicts


# -- stage 5: real traffic, the staged rollout, monitoring ------------------------------------------------
def tollgate(root: Path, *args: str) -> int:
    """A command exactly as a user would type it in the demo project (printed, then run)."""
    import os

    from harness.cli import main

    say(f"  $ tollgate {' '.join(args)}")
    here = os.getcwd()
    os.chdir(root)
    try:
        return main(list(args))
    finally:
        os.chdir(here)


def rollout_stage(root: Path, seed: int, show_progress: bool = True, scale: int = 1) -> dict[str, int]:
    """Three weeks of simulated production: shadow, two beta steps, promotion, then monitoring;
    the overfit model's rollout is refused at its first gate. Returns each command's exit code."""
    import random

    from demo.traffic import serve_days, write_logs
    from harness.project import load_project
    from harness.store import Store

    project = load_project(root / "tollgate.yaml")
    store = Store(project.store_path)
    with store.read() as con:
        if con.execute("SELECT count(*) FROM stage_events").fetchall()[0][0]:
            say("  the rollout already ran in this project (stage events are append-only); see below")
            tollgate(root, "rollout", "history")
            return {}
    rng = random.Random(seed * 1000 + 5)
    handles: dict[str, Any] = {}
    codes: dict[str, int] = {}
    quiet = [] if show_progress else ["--no-progress"]

    def period(name: str, days: range, per_day: int, **kw: Any) -> None:
        traffic, feedback = serve_days(project, store, rng, days, per_day // scale, 400, name, handles, **kw)
        write_logs(root / "logs" / f"{name}-traffic.jsonl", traffic)
        write_logs(root / "logs" / f"{name}-feedback.jsonl", feedback)
        tollgate(root, "traffic", "ingest", f"logs/{name}-traffic.jsonl")
        tollgate(root, "feedback", "ingest", f"logs/{name}-feedback.jsonl")

    say("  days 1-6: production serves; reviewers label a quarter of the requests")
    period("week1", range(0, 6), 70, review_share=0.25)
    codes["advance candidate -> shadow"] = tollgate(root, "rollout", "advance", "candidate", "--actor", "ana",
                                                    "--reason", "offline gate passed")
    tollgate(root, "shadow", "replay", "candidate", *quiet)
    codes["shadow report"] = tollgate(root, "shadow", "report", "candidate", "--actor", "ana")
    codes["advance candidate -> beta 25%"] = tollgate(root, "rollout", "advance", "candidate", "--actor", "ana",
                                                      "--reason", "shadow gate passed")
    say("  days 7-10: a quarter of the users (sticky) are served by the candidate")
    period("beta25", range(6, 10), 120)
    codes["advance candidate -> beta 50%"] = tollgate(root, "rollout", "advance", "candidate", "--actor", "ana",
                                                      "--reason", "beta 25% gate passed")
    say("  days 11-13: half of the users")
    period("beta50", range(10, 13), 150)
    codes["beta report"] = tollgate(root, "beta", "report", "candidate", "--actor", "ana")
    codes["advance candidate -> production"] = tollgate(root, "rollout", "advance", "candidate", "--actor", "ana",
                                                        "--reason", "beta gate passed at 50%")
    codes["advance overfit -> shadow"] = tollgate(root, "rollout", "advance", "overfit", "--actor", "ana",
                                                  "--reason", "try the overfit fine-tune")
    say("  days 14-19: the candidate serves everyone; from day 17 solicitors' letters arrive")
    period("after", range(13, 19), 80, legal_share={16: 0.5, 17: 0.7, 18: 0.9})
    codes["monitor"] = tollgate(root, "monitor")
    tollgate(root, "rollout", "history")
    tollgate(root, "rollout", "status")
    for h in handles.values():
        h.close()
    return codes


def run_demo(directory: Path, rebuild: bool = False, scale: float = 1.0, show_progress: bool = True,
             seed: int = 7, small: bool = False, sweep: bool = False) -> list[Any]:
    """All stages; returns the stored result rows (the printed table is made from them)."""
    from rich.console import Console

    t0 = time.perf_counter()
    root = directory.resolve()
    root.mkdir(parents=True, exist_ok=True)
    if rebuild:
        shutil.rmtree(root / ".tollgate", ignore_errors=True)
    sizes = dict(n_train=200, n_validation=16, n_heldout=16, n_train_sample=16, edge_per_kind=1) if small else {}
    data = generate(seed=seed, **sizes)
    say(f"[1/5] data: {len(data.train)} training documents, suites train_sample ({len(data.train_sample)}), "
        f"validation ({len(data.validation)}), heldout ({len(data.heldout)}), edge ({len(data.edge)}) in {root}")
    write_data(root, data)
    n_auto = write_adversarial(root, 4 if small else 30, seed)
    say(f"      + edge-auto ({n_auto}): 'tollgate suite perturb heldout --with {','.join(ADVERSARIAL)}', "
        f"each example compared with its source")
    copy_general_suites(root)
    write_project(root)
    spent = install_models(root, rebuild, scale, data)
    say(f"[2/5] models: {', '.join(MODELS)} ready in {spent:.0f} s")
    say("[3/5] evaluating every model on every suite (cached results are reused)")
    rows = evaluate(root, show_progress)
    Console(width=110).print(results_table(rows))
    Console(width=110).print(general_table(rows))
    Console(width=110).print(worst_tags(root))
    say("[4/5] the gate: may the candidate replace production? And the overfit model?")
    for model, verdict in gates(root):
        say(f"  gate {model} --against production: {verdict.upper()}")
    if sweep:
        from demo.sweep import STUDY, run_sweep

        say("  choosing a fine-tune by an Optuna study over learning rate and batch size, Tollgate as its objective "
            "(validation suite, scored in slices so the pruner can stop a trial early)")
        run_sweep(root, data.train, show_progress=show_progress, seed=seed)
        tollgate(root, "sweep", "report", STUDY)
        tollgate(root, "sweep", "select", STUDY, "--as", "swept", "--no-progress")
    say("  accuracy against cost (every model priced the same per hour of this machine; the frontier is what "
        "no other model beats on both):")
    tollgate(root, "compare", "--cost", "candidate", "production", "small", *(["swept"] if sweep else []),
             "--metric", "json_fields")
    say("[5/5] real traffic: shadow, beta, promotion and monitoring (three simulated weeks)")
    codes = rollout_stage(root, seed, show_progress, scale=10 if small else 1)
    for step, code in codes.items():
        say(f"  {step}: exit {code}")
    say(f"demo finished in {time.perf_counter() - t0:.0f} s; explore with: cd {directory} && tollgate results")
    say(f"open the dashboard on this store with: tollgate --project {directory} dashboard")
    return rows
