"""``wfsched run``: start the scheduler daemon."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from scheduler import registry
from scheduler.runtime import logs
from scheduler.runtime import settings as settings_mod


def register(subparsers: Any) -> None:
    """Add the ``run`` command."""
    parser = subparsers.add_parser(
        "run",
        help="run the scheduler daemon",
        description=(
            "Watch pods whose spec.schedulerName is one of ours, rank them by workflow, and "
            "bind them. Configuration: --config YAML plus WFSCHED_* environment overrides."
        ),
    )
    parser.add_argument("--config", type=Path, help="YAML configuration file")
    parser.add_argument(
        "--kubeconfig", help="kubeconfig to use (default: in-cluster, then $KUBECONFIG)"
    )
    parser.add_argument("--check-config", action="store_true", help="validate and exit")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    try:
        settings = settings_mod.load_settings(args.config)
        registry.parse_strategy(settings.policy)
        if settings.predictor:
            registry.parse_predictor(settings.predictor)
    except (settings_mod.SettingsError, ValueError) as exc:
        print(f"wfsched: {exc}", file=sys.stderr)
        return 2
    if args.check_config:
        print("configuration ok")
        return 0
    logs.configure(fmt=settings.log_format, level=settings.log_level)
    from scheduler.runtime import daemon  # imports the API client only when actually running

    return daemon.run_daemon(settings, kubeconfig=args.kubeconfig)
