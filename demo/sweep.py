"""``tollgate demo --sweep``: choose a fine-tune by an Optuna study, with Tollgate as the objective.

Each trial continues training production's checkpoint (step 1,000 of the candidate's recipe) for
a few hundred steps with a learning rate and batch size Optuna proposes; Tollgate scores it on the
validation suite in growing slices and the pruner stops the hopeless ones early. The best trial is
then registered as the model ``swept`` and run, alone, on the held-out suite. It is a flag, not a
default stage, because real training makes it take ~15 minutes on this machine.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

STUDY = "demo-lr-bs"


def run_sweep(root: Path, train_rows: list[dict[str, Any]], n_trials: int = 6, steps: int = 240,
              show_progress: bool = True, seed: int = 7) -> Any:
    """The study, from Python exactly as docs/sweeps.md shows it; returns the Optuna study."""
    import optuna

    from demo.stages import say
    from demo.train import fine_tune
    from harness.sweep import TollgateObjective

    checkpoints = root / "checkpoints"

    def train(params: dict[str, Any]) -> Path:
        out = checkpoints / f"lr{params['learning_rate']:.2e}-bs{params['batch_size']}"
        if not (out / "model.safetensors").exists():  # a rerun of the demo reuses a trained trial
            t0 = time.perf_counter()
            fine_tune(root / "models" / "production", train_rows, out, lr=params["learning_rate"],
                      batch_size=params["batch_size"], steps=steps, seed=seed)
            say(f"  trained lr={params['learning_rate']:.2e} batch={params['batch_size']} for {steps} steps in "
                f"{time.perf_counter() - t0:.0f} s")
        return out

    space = {"learning_rate": optuna.distributions.FloatDistribution(3e-4, 3e-2, log=True),
             "batch_size": optuna.distributions.CategoricalDistribution([16, 32, 64])}
    objective = TollgateObjective(project=root / "tollgate.yaml", suite="validation", metric="json_fields",
                                  train=train, model="production", space=space, show_progress=show_progress,
                                  log=lambda m: say("  " + m))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", study_name=STUDY,
                                sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=3),
                                pruner=optuna.pruners.SuccessiveHalvingPruner(min_resource=50, reduction_factor=2),
                                storage=f"sqlite:///{root / '.tollgate' / 'optuna.db'}", load_if_exists=True)
    left = n_trials - len([t for t in study.trials if t.state.is_finished()])
    if left > 0:
        study.optimize(objective, n_trials=left)
    return study
