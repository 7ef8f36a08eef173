"""``tollgate export-lm-eval``: a Tollgate suite written as an lm-eval task folder.

So a team can run its own suites in lm-eval too, and so the two harnesses can be held to the same
answer: the same examples, the same prompt template (both are Jinja2), the same continuation
(``target_delimiter`` + option) and the same decision rule give the same accuracy.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from harness.errors import TollgateInputError


def _row(suite: Any, ex: Any) -> dict[str, Any]:
    inp = ex.input
    row: dict[str, Any] = dict(inp) if isinstance(inp, dict) else {}
    row.setdefault("input", inp)  # as Tollgate renders: an input field named "input" wins
    row["tollgate_id"] = ex.id
    if suite.task == "choice":
        row["tollgate_choices"] = suite.choices_for(ex)
        row["tollgate_target"] = suite.target_index(ex)
    else:
        row["tollgate_expected"] = ex.expected if isinstance(ex.expected, str) else json.dumps(ex.expected)
    return row


def export_suite(suite: Any, out_dir: Path) -> Path:
    """Write ``out_dir/<suite>/<suite>.yaml`` and its data; returns the task folder."""
    if suite.task not in ("choice", "generate"):
        raise TollgateInputError(f"suite '{suite.name}' is already an lm-eval suite.", field="SUITE")
    name = suite.name.replace("-", "_")
    folder = out_dir / name
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / f"{name}.jsonl").open("w", encoding="utf-8") as f:
        for ex in suite.examples:
            f.write(json.dumps(_row(suite, ex), ensure_ascii=False) + "\n")
    task: dict[str, Any] = {
        "task": name,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": f"{name}.jsonl"}},
        "test_split": "test",
        "doc_to_text": suite.spec.prompt,
    }
    if suite.task == "choice":
        task.update(output_type="multiple_choice", doc_to_choice="{{tollgate_choices}}",
                    doc_to_target="tollgate_target", target_delimiter=suite.spec.target_delimiter,
                    metric_list=[{"metric": "acc", "aggregation": "mean", "higher_is_better": True},
                                 {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True}])
    else:
        gen = suite.spec.generation
        task.update(output_type="generate_until", doc_to_target="{{tollgate_expected}}", target_delimiter="",
                    generation_kwargs={"until": list(gen.stop or ["\n\n"]), "do_sample": False,
                                       "max_gen_toks": gen.max_new_tokens or 128},
                    metric_list=[{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True,
                                  "ignore_case": False, "ignore_punctuation": False}])
    task["metadata"] = {"version": 1.0, "tollgate_suite": suite.name, "tollgate_suite_hash": suite.content_hash}
    (folder / f"{name}.yaml").write_text(
        "# Exported by 'tollgate export-lm-eval'. Data paths are relative to this folder.\n"
        + yaml.safe_dump(task, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return folder
