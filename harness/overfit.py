"""Overfitting flags: evidence that a model learned its data rather than its task.

Each flag carries its numbers and a sentence a release manager can read aloud:
- gap: ``train_sample`` scores above ``heldout`` by more than a threshold (the interval says so);
- optimism: ``heldout`` above ``edge`` by more than a threshold (the clean split flatters it);
- forgetting: a ``general``/``baseline`` suite where the model is worse than its base model;
- contamination: eval examples that occur in the model's training data (``overlap.py``), with
  the score on the clean subset beside the score on all.
- memorisation: on counterfactual copies of training examples (one field's value in the document
  replaced by another training value, the expected answer following it), the model still
  returns the original training target.
Suites are different examples, so gap and optimism are unpaired comparisons (and say so);
forgetting compares the same examples, so it is paired.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness import store as st
from harness.checks import normalize_text, parse_json_output
from harness.examples import Example
from harness.hashing import hash_obj
from harness.overlap import TrainingIndex, text_of
from harness.policy import OverfitSettings
from harness.stats import paired_compare, unpaired_compare


@dataclass
class Flag:
    name: str
    raised: bool | None  # None: not enough evidence to say
    explanation: str
    evidence: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _verdict(raised: bool, cleared: bool) -> bool | None:
    """A flag is down only when the evidence clears the threshold; otherwise it is unknown, not fine."""
    return True if raised else (False if cleared else None)


def _latest(con: Any, model: str, kinds: tuple[str, ...]) -> list[dict]:
    runs = st.latest_runs(con, model=model)
    return [r for r in runs if r["suite_kind"] in kinds]


def _values(con: Any, runs: list[dict], metric: str) -> list[float]:
    out: list[float] = []
    for r in runs:
        out.extend(st.example_values(con, r["run_id"], metric).values())
    return out


def _difference_flag(con: Any, name: str, model: str, high_kind: str, low_kind: str, threshold: float,
                     settings: OverfitSettings, seed: int, resamples: int) -> Flag:
    high = _latest(con, model, (high_kind,))
    low = _latest(con, model, (low_kind,))
    if not high or not low:
        missing = high_kind if not high else low_kind
        return Flag(name, None, f"no completed run of {model} on a '{missing}' suite; run it to check this flag.")
    a, b = _values(con, high, settings.metric), _values(con, low, settings.metric)
    if not a or not b:
        return Flag(name, None, f"the metric '{settings.metric}' has no values on the {high_kind} or {low_kind} "
                                f"suites of {model}; set gate.overfit.metric to a metric those suites produce.")
    comp, _ = unpaired_compare(settings.metric, a, b, seed=seed, resamples=resamples)
    raised = _verdict(comp.ci_low > threshold, comp.ci_high <= threshold)
    hs, ls = ", ".join(r["suite"] for r in high), ", ".join(r["suite"] for r in low)
    verb = {True: "exceeds", False: "stays below", None: "may or may not exceed"}[raised]
    text = (f"{settings.metric} on {high_kind} ({hs}) {comp.candidate:.3f} vs {low_kind} ({ls}) "
            f"{comp.reference:.3f}: the difference {comp.difference:+.3f} [{comp.ci_low:+.3f}, {comp.ci_high:+.3f}] "
            f"{verb} the tolerated {threshold:.3f} (unpaired: different examples).")
    return Flag(name, raised, text, {"comparison": comp.as_dict(), "threshold": threshold,
                                           "runs": [r["run_id"] for r in high + low]})


def _forgetting(con: Any, model: str, base: str | None, settings: OverfitSettings, seed: int,
                resamples: int) -> Flag:
    if base is None:
        return Flag("forgetting", None, "no base model given (--base, or a model with role: base).")
    mine = {r["suite"]: r for r in _latest(con, model, ("general", "baseline"))}
    theirs = {r["suite"]: r for r in _latest(con, base, ("general", "baseline"))}
    common = sorted(set(mine) & set(theirs))
    if not common:
        return Flag("forgetting", None, f"no general or baseline suite was run on both {model} and {base}.")
    worst, details = None, []
    for suite in common:
        if mine[suite]["suite_hash"] != theirs[suite]["suite_hash"]:
            continue  # different versions of the suite: their examples do not pair
        names = st.run_metric_names(con, mine[suite]["run_id"])
        metric = settings.metric if settings.metric in names else "pass"  # lm-eval suites: pass = acc
        a = st.example_values(con, mine[suite]["run_id"], metric)
        b = st.example_values(con, theirs[suite]["run_id"], metric)
        ids = sorted(set(a) & set(b))
        if not ids:
            continue
        comp, _ = paired_compare(metric, [a[i] for i in ids], [b[i] for i in ids], seed=seed,
                                 resamples=resamples)
        details.append({"suite": suite, "comparison": comp.as_dict()})
        if worst is None or comp.ci_high < worst[1].ci_high:
            worst = (suite, comp)
    if worst is None:
        return Flag("forgetting", None, f"{model} and {base} share no examples on their general suites.")
    suite, comp = worst
    lowest = min(d["comparison"]["ci_low"] if d["comparison"]["ci_low"] is not None else -1.0 for d in details)
    raised = _verdict(comp.ci_high < -settings.forgetting, lowest >= -settings.forgetting)
    text = (f"on {suite} ({comp.metric}), {model} {comp.candidate:.3f} vs the base model {base} "
            f"{comp.reference:.3f}: difference "
            f"{comp.difference:+.3f} [{comp.ci_low:+.3f}, {comp.ci_high:+.3f}], {comp.test} p={comp.p_value:.3g}; "
            + {True: "worse than the base beyond the tolerated ", False: "no drop beyond the tolerated ",
               None: "not enough evidence either way about a drop beyond the tolerated "}[raised]
            + f"{settings.forgetting:.3f} (paired, same examples).")
    return Flag("forgetting", raised, text, {"suites": details, "threshold": settings.forgetting})


def _contamination(con: Any, model: str, training: Path | None, settings: OverfitSettings) -> Flag:
    if training is None:
        return Flag("contamination", None, f"model {model} names no training_data file in tollgate.yaml.")
    index = TrainingIndex(settings.ngram, settings.ngram_share).add_file(training)
    # training samples and the probes made from them are training data by design
    runs = [r for r in st.latest_runs(con, model=model) if r["suite_kind"] not in ("train_sample", "probe")]
    per_suite, total = [], 0
    for r in runs:
        rows = con.execute("SELECT example_id, input FROM examples WHERE suite_hash = ?", [r["suite_hash"]]).fetchall()
        hits = [ex_id for ex_id, inp in rows if index.contains(json.loads(inp))]
        if not hits:
            continue
        total += len(hits)
        values = st.example_values(con, r["run_id"], settings.metric)
        clean = [v for k, v in values.items() if k not in set(hits)]
        per_suite.append({"suite": r["suite"], "contaminated": len(hits), "n": len(rows), "examples": hits[:20],
                          "score_all": sum(values.values()) / len(values) if values else math.nan,
                          "score_clean": sum(clean) / len(clean) if clean else math.nan})
    if not total:
        return Flag("contamination", False, f"no example of {len(runs)} evaluated suite(s) occurs in "
                                            f"{training.name} (exact, or {settings.ngram_share:.0%} of its "
                                            f"{settings.ngram}-grams).")
    worst = max(per_suite, key=lambda s: s["contaminated"])
    return Flag("contamination", True,
                f"{total} evaluated example(s) also occur in the training data {training.name}; on {worst['suite']} "
                f"{worst['contaminated']} of {worst['n']}, score {worst['score_all']:.3f} on all vs "
                f"{worst['score_clean']:.3f} on the clean subset.", {"suites": per_suite})


PROBE_SUFFIX = "~memorisation"
FLAG_NAMES = ("gap", "optimism", "forgetting", "contamination", "memorisation")


@dataclass(frozen=True)
class Swap:
    example_id: str
    field: str
    original: str
    replacement: str


def counterfactual_copies(suite: Any, seed: int = 0) -> tuple[Any, list[Swap]]:
    """A probe suite: each training example with one expected value swapped in its input.

    Only values that appear verbatim in the input are swapped, for a value of the same field taken
    from another example that the input does not contain, so the right answer changes with the
    document. A model that answers the original value recalls its training data instead of
    reading. Deterministic for a seed.
    """
    import random
    from dataclasses import replace

    rng = random.Random(seed)
    pool: dict[str, list[str]] = {}
    for ex in suite.examples:
        if isinstance(ex.expected, dict):
            for k, v in ex.expected.items():
                if isinstance(v, str) and v:
                    pool.setdefault(k, []).append(v)
    examples, swaps = [], []
    for n, ex in enumerate(suite.examples):
        if not isinstance(ex.expected, dict) or not isinstance(ex.input, (str, dict)):
            continue
        text = text_of(ex.input)
        fields = [k for k, v in ex.expected.items() if isinstance(v, str) and len(v) >= 3 and v in text]
        if not fields:
            continue
        field_ = fields[n % len(fields)]
        original = ex.expected[field_]
        options = sorted({v for v in pool[field_] if v != original and v not in text})
        if not options:
            continue
        new = rng.choice(options)

        def sub(value: Any, old: str = original, rep: str = new) -> Any:
            if isinstance(value, str):
                return value.replace(old, rep)
            if isinstance(value, dict):
                return {k: sub(v) for k, v in value.items()}
            return value

        ex_id = f"{ex.id}~{field_}"
        expected = {**ex.expected, field_: new}
        inp = sub(ex.input)
        examples.append(Example(id=ex_id, input=inp, expected=expected, tags=(*ex.tags, "memorisation-probe"),
                                line=ex.line, hash=hash_obj({"id": ex_id, "input": inp, "expected": expected})))
        swaps.append(Swap(ex_id, field_, original, new))
    spec = suite.spec.model_copy(update={"kind": "probe", "name": suite.name + PROBE_SUFFIX})
    probe = replace(suite, name=suite.name + PROBE_SUFFIX, kind="probe", spec=spec, examples=examples)
    return probe, swaps


def project_probes(suite_dirs: list[Path], seed: int) -> list[tuple[Any, list[Swap]]]:
    """A memorisation probe for every ``train_sample`` suite of the project."""
    from harness.suites import load_suite, read_suite_header

    out = []
    for d in suite_dirs:
        entry, _ = read_suite_header(d)
        if entry.kind == "train_sample":
            out.append(counterfactual_copies(load_suite(d), seed))
    return out


def memorisation_flag(con: Any, model: str, probes: list[tuple[Any, list[Swap]]],
                      threshold: float) -> Flag:
    """Share of swapped fields where the model answered the original training value."""
    from harness.intervals import wilson

    recalled = total = 0
    examples: list[dict[str, Any]] = []
    for probe, swaps in probes:
        runs = [r for r in st.latest_runs(con, model=model, suites=[probe.name]) if r["suite_hash"] ==
                probe.content_hash]
        if not runs:
            return Flag("memorisation", None, f"the memorisation probe has not been run on {model}: "
                                              f"run 'tollgate overfit {model} --memorisation'.")
        outputs = dict(con.execute("SELECT example_id, output FROM results WHERE run_id = ?",
                                   [runs[0]["run_id"]]).fetchall())
        for sw in swaps:
            obj, _ = parse_json_output(outputs.get(sw.example_id) or "")
            got = obj.get(sw.field) if isinstance(obj, dict) else None
            total += 1
            if isinstance(got, str) and normalize_text(got) == normalize_text(sw.original):
                recalled += 1
                if len(examples) < 10:
                    examples.append(asdict(sw))
    if not total:
        return Flag("memorisation", None, "no training example has a value that can be swapped in its input.")
    est = wilson(recalled, total)
    raised = _verdict(est.low > threshold, est.high <= threshold)
    return Flag("memorisation", raised,
                f"on {total} counterfactual copies of training examples, {model} answered the original training "
                f"value {recalled} times ({est.value:.3f} [{est.low:.3f}, {est.high:.3f}]) instead of the value in "
                f"the document; " + {True: "above", False: "below", None: "not clearly above or below"}[raised]
                + f" the tolerated {threshold:.3f}.",
                {"recalled": recalled, "n": total, "estimate": est.as_dict(), "threshold": threshold,
                 "examples": examples})


def overfitting_flags(con: Any, model: str, *, base: str | None, training_data: Path | None,
                      settings: OverfitSettings, seed: int, resamples: int,
                      only: tuple[str, ...] = ("gap", "optimism", "forgetting", "contamination"),
                      probes: list[tuple[Any, list[Swap]]] | None = None) -> list[Flag]:
    flags = []
    for name in only:
        if name == "gap":
            flags.append(_difference_flag(con, "gap", model, "train_sample", "heldout", settings.gap, settings,
                                          seed, resamples))
        elif name == "optimism":
            flags.append(_difference_flag(con, "optimism", model, "heldout", "edge", settings.optimism, settings,
                                          seed + 1, resamples))
        elif name == "forgetting":
            flags.append(_forgetting(con, model, base, settings, seed + 2, resamples))
        elif name == "contamination":
            flags.append(_contamination(con, model, training_data, settings))
        elif name == "memorisation":
            flags.append(memorisation_flag(con, model, probes or [], settings.memorisation))
    return flags
