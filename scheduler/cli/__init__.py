"""The ``wfsched`` command line: one subcommand per user-facing job.

Each subcommand lives in its own module that exposes ``register(subparsers)``; this module only
collects them, so adding a command is one line in ``_COMMAND_MODULES``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

import scheduler

# Modules that provide ``register(subparsers: argparse._SubParsersAction) -> None``. Each
# registered parser sets ``func`` (``Callable[[argparse.Namespace], int]``) as its default.
_COMMAND_MODULES: tuple[str, ...] = (
    "scheduler.cli.run",
    "scheduler.cli.devcluster",
    "scheduler.cli.demo",
    "scheduler.cli.replay",
    "scheduler.cli.predict",
    "scheduler.cli.simulate",
)


def build_parser() -> argparse.ArgumentParser:
    """Return the top-level parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="wfsched", description="A workflow-aware secondary scheduler for Kubernetes."
    )
    parser.add_argument("--version", action="version", version=f"wfsched {scheduler.__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in _COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    result: int = func(args)
    return result
