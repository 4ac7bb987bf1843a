"""The ``wfsched`` command line: one subcommand per user-facing job.

Each subcommand lives in its own module that exposes ``register(subparsers)``; this module only
collects them, so adding a command is one line in ``_COMMAND_MODULES``.

The subcommands of the developer tooling (``_TOOLING_COMMANDS``) need ``scheduler.devtools``,
which the container image leaves out (see ``.dockerignore``), and some need the ``tools``
extra's ``cryptography``. Where that is missing they are still listed, and running one prints
what to install instead of a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import sys
from collections.abc import Sequence
from typing import Any

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


# Subcommand module -> the command it registers, for the modules that need the developer tooling.
_TOOLING_COMMANDS: dict[str, str] = {
    "scheduler.cli.devcluster": "dev-cluster",
    "scheduler.cli.demo": "demo",
    "scheduler.cli.replay": "replay",
    "scheduler.cli.simulate": "simulate",
}


@dataclasses.dataclass(frozen=True)
class Unavailable:
    """The ``func`` of a tooling subcommand this installation cannot run: says why, exits 1."""

    command: str
    reason: str

    def __call__(self, args: argparse.Namespace) -> int:
        """Print why the subcommand cannot run and return exit status 1."""
        print(f"wfsched {self.command}: {self.reason}", file=sys.stderr)
        return 1


def _missing_tooling(module_name: str, error: ModuleNotFoundError) -> str | None:
    """Why the tooling subcommand ``module_name`` cannot load; None if ``error`` is a bug."""
    missing = error.name or ""
    if module_name not in _TOOLING_COMMANDS:
        return None
    if missing in (module_name, "scheduler.devtools") or missing.startswith("scheduler.devtools."):
        return (
            "this installation has no developer tooling (the container image leaves "
            "scheduler/devtools out); install wfsched from a source checkout: "
            "pip install '.[tools]'"
        )
    if missing == "cryptography" or missing.startswith("cryptography."):
        return "needs the developer tooling's extra: pip install 'wfsched[tools]'"
    return None


def _register(subparsers: Any, module_name: str) -> None:
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        reason = _missing_tooling(module_name, error)
        if reason is None:
            raise
        command = _TOOLING_COMMANDS[module_name]
        parser = subparsers.add_parser(
            command, help=f"(not available: {reason})", description=f"Not available: {reason}."
        )
        parser.set_defaults(func=Unavailable(command, reason))
        return
    module.register(subparsers)


def build_parser() -> argparse.ArgumentParser:
    """Return the top-level parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="wfsched", description="A workflow-aware secondary scheduler for Kubernetes."
    )
    parser.add_argument("--version", action="version", version=f"wfsched {scheduler.__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in _COMMAND_MODULES:
        _register(subparsers, module_name)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return the process exit status."""
    parser = build_parser()
    # An unavailable subcommand does not know its real arguments: it takes any, and says why it
    # cannot run instead of rejecting them.
    args, unrecognized = parser.parse_known_args(argv)
    func = getattr(args, "func", None)
    if unrecognized and not isinstance(func, Unavailable):
        parser.error(f"unrecognized arguments: {' '.join(unrecognized)}")
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    result: int = func(args)
    return result
