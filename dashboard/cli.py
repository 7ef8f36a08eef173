"""``tollgate dashboard``: start the Streamlit app on a project's store; ``tollgate dashboard hash-token``
prints the hash of a release manager's token for ``tollgate.yaml``.

Registered through the ``tollgate.commands`` entry point; Streamlit is imported only by the app itself.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path

from harness.errors import EXIT_OK, TollgateInputError

APP = Path(__file__).with_name("app.py")
PROJECT_ENV = "TOLLGATE_PROJECT"


def streamlit_command(project: Path, *, host: str, port: int) -> list[str]:
    """The ``streamlit run`` command line that serves the app on ``host:port`` for ``project``."""
    return [sys.executable, "-m", "streamlit", "run", str(APP),
            "--server.address", host, "--server.port", str(port), "--server.headless", "true",
            "--server.fileWatcherType", "none", "--server.runOnSave", "false",
            "--browser.gatherUsageStats", "false", "--client.toolbarMode", "minimal",
            "--theme.base", "light",
            "--", "--project", str(project)]


def cmd_dashboard(args: argparse.Namespace) -> int:
    from harness.project import find_project

    project = find_project(explicit=getattr(args, "project", None))
    if not 0 < args.port < 65536:
        raise TollgateInputError("must be a port number between 1 and 65535.", field="--port")
    cmd = streamlit_command(project, host=args.host, port=args.port)
    print(f"Tollgate dashboard for {project} on http://{args.host}:{args.port} (Ctrl-C stops it)", file=sys.stderr)
    sys.stderr.flush()
    env = {**os.environ, PROJECT_ENV: str(project)}
    os.execve(sys.executable, cmd, env)  # this process becomes the server: stopping it stops the dashboard
    return EXIT_OK  # pragma: no cover - execve does not return


def read_token(args: argparse.Namespace) -> str:
    """The token from ``--token``, else a hidden prompt on a terminal, else the first line of stdin."""
    if args.token is not None:
        token = args.token
    elif sys.stdin.isatty():
        token = getpass.getpass("Token: ")
    else:
        token = sys.stdin.readline().rstrip("\r\n")
    if not token.strip():
        raise TollgateInputError("no token given: pass --token or write it on stdin.", field="--token")
    return token


def cmd_hash_token(args: argparse.Namespace) -> int:
    from dashboard.auth import hash_token

    print(hash_token(read_token(args)))
    if args.name:
        print(f"add to tollgate.yaml:\n  dashboard:\n    release_managers:\n      {args.name}: '<the hash above>'",
              file=sys.stderr)
    return EXIT_OK


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dashboard", help="the Streamlit dashboard: release, failures, overfitting, beta, runs")
    p.add_argument("--port", type=int, default=8501)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    p.add_argument("--project", metavar="PATH", default=argparse.SUPPRESS,
                   help="tollgate.yaml (default: found in . or a parent)")
    p.set_defaults(func=cmd_dashboard)
    ss = p.add_subparsers(dest="dashboard_cmd", metavar="COMMAND")
    h = ss.add_parser("hash-token", help="print the hash of a release manager's token (read from stdin or --token)")
    h.add_argument("--token", help="the token (default: read from stdin, hidden on a terminal)")
    h.add_argument("--name", help="the user's name, to print where the hash goes in tollgate.yaml")
    h.set_defaults(func=cmd_hash_token)
