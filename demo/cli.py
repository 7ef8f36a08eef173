"""The ``tollgate demo`` command (registered through the ``tollgate.commands`` entry point)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def cmd_demo(args: argparse.Namespace) -> int:
    from demo.stages import run_demo

    run_demo(Path(args.dir), rebuild=args.rebuild, scale=args.scale, show_progress=not args.no_progress,
             small=args.small, sweep=args.sweep)
    return 0


def add_parser(sub: Any) -> None:
    s = sub.add_parser("demo", help="the claims-extraction case end to end: data, five models, every suite")
    s.add_argument("--dir", default="tollgate-demo", help="where to write the demo project (default: tollgate-demo)")
    s.add_argument("--rebuild", action="store_true",
                   help="train the five models from scratch instead of using the shipped weights (~25 min)")
    s.add_argument("--scale", type=float, default=1.0, help=argparse.SUPPRESS)
    s.add_argument("--small", action="store_true", help=argparse.SUPPRESS)
    s.add_argument("--sweep", action="store_true",
                   help="also choose a fine-tune by an Optuna study over learning rate and batch size, with Tollgate "
                        "as its objective (docs/sweeps.md; ~15 more minutes)")
    s.add_argument("--no-progress", action="store_true", help="no progress bars")
    s.set_defaults(func=cmd_demo)
