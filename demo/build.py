"""Rebuild the demo's shipped models: ``python -m demo.build [--out demo/weights]`` (about 35 minutes here).

The weights under ``demo/weights/`` were made by exactly this command; each folder's
``build.json`` holds the recipe, the steps and the training time it took.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from demo.data import generate
from demo.train import Recipe, SmallRecipe, build_models, build_small

WEIGHTS = Path(__file__).parent / "weights"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m demo.build", description=__doc__)
    p.add_argument("--out", type=Path, default=WEIGHTS)
    p.add_argument("--scale", type=float, default=1.0, help="fraction of the training steps (tests use 0.02)")
    args = p.parse_args(argv)
    recipe = Recipe() if args.scale == 1.0 else Recipe().scaled(args.scale)
    data = generate(seed=recipe.seed)
    build_models(data.train, data.validation, data.train_sample[: recipe.overfit_examples], args.out, recipe)
    small = SmallRecipe() if args.scale == 1.0 else SmallRecipe(steps=max(2, int(SmallRecipe().steps * args.scale)))
    build_small(data.train, args.out / "base", args.out / "small", small)


if __name__ == "__main__":
    main()
