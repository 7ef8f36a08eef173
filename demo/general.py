"""The shipped general suites: small lm-eval task folders made from the project's own data.

``python -m demo.general`` writes ``suites/general/<task>/`` (a Tollgate ``suite.yaml``, the lm-eval
task YAML and its JSONL data); a test checks the committed files equal what this writes. They are
examples of adding any lm-eval task, and the demo's "before / after" of fine-tuning:
- ``claims_cloze``: finish a claim document's sentence with the right injury (language of the domain);
- ``policy_reading``: which of four policy numbers does this document name (reading, copying);
- ``arithmetic``: single-digit sums (general skill that none of the demo models was taught).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from demo.data import INJURIES, generate

ROOT = Path(__file__).resolve().parent.parent / "suites" / "general"

TASK_YAML = """\
# An lm-eval task (https://github.com/EleutherAI/lm-evaluation-harness) read from local files only.
task: {name}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {name}.jsonl
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{context}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: gold
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""

SUITE_YAML = """\
# A Tollgate suite that runs the lm-eval task in this folder.
kind: general
description: {description}
lm_eval:
  tasks: [{name}]
  include_path: .
  metric: acc
"""


def claims_cloze(rng: random.Random) -> list[dict[str, Any]]:
    rows = []
    for ex in generate(seed=101, n_train=150, n_validation=1, n_heldout=1, n_train_sample=1, edge_per_kind=1).train:
        doc, injury = ex["input"]["document"], ex["expected"]["injury_type"]
        cut = doc.find(injury)
        if cut <= 0:
            continue
        wrong = rng.sample([i for i in INJURIES if i != injury], 3)
        choices = [injury, *wrong]
        rng.shuffle(choices)
        rows.append({"context": doc[:cut].rstrip(), "choices": choices, "gold": choices.index(injury)})
    return rows[:120]


def policy_reading(rng: random.Random) -> list[dict[str, Any]]:
    rows = []
    for ex in generate(seed=202, n_train=150, n_validation=1, n_heldout=1, n_train_sample=1, edge_per_kind=1).train:
        policy = ex["expected"]["policy_number"]
        wrong = [f"POL-{rng.randrange(100000, 999999)}" for _ in range(3)]
        choices = [policy, *wrong]
        rng.shuffle(choices)
        rows.append({"context": ex["input"]["document"] + "\nThe policy number is", "choices": choices,
                     "gold": choices.index(policy)})
    return rows[:120]


def arithmetic(rng: random.Random) -> list[dict[str, Any]]:
    rows = []
    for _ in range(120):
        a, b = rng.randrange(10), rng.randrange(10)
        right = a + b
        wrong = rng.sample([n for n in range(19) if n != right], 3)
        choices = [str(n) for n in [right, *wrong]]
        rng.shuffle(choices)
        rows.append({"context": f"{a} + {b} =", "choices": choices, "gold": choices.index(str(right))})
    return rows


TASKS = {
    "claims_cloze": (claims_cloze, "Finish a claim document's sentence with the right injury (4 options)."),
    "policy_reading": (policy_reading, "Which of four policy numbers does the document name."),
    "arithmetic": (arithmetic, "Single-digit sums (4 options): a skill none of the demo models was taught."),
}


def write_general_suites(root: Path = ROOT) -> list[Path]:
    out = []
    for name, (make, description) in TASKS.items():
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        rows = make(random.Random(name))
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                                              encoding="utf-8")
        (folder / f"{name}.yaml").write_text(TASK_YAML.format(name=name), encoding="utf-8")
        (folder / "suite.yaml").write_text(SUITE_YAML.format(name=name, description=json.dumps(description)),
                                           encoding="utf-8")
        out.append(folder)
    return out


if __name__ == "__main__":
    for f in write_general_suites():
        print(f)
