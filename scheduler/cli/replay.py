"""``wfsched replay``: run a real workflow on a cluster, task pods created as parents finish."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from scheduler.devtools import replay, simulate


def register(subparsers: Any) -> None:
    """Add the ``replay`` command."""
    parser = subparsers.add_parser(
        "replay",
        help="replay a WfFormat workflow instance on a cluster",
        description=(
            "Submit a real workflow (a WfCommons WfFormat instance) as pods: each task's pod is "
            "created when its parents have succeeded, with wfsched's workflow labels, the "
            "task's CPU and memory requests and its runtime (a KWOK duration annotation, or a "
            "sleeping container with --real-nodes). Prints progress and the makespan."
        ),
    )
    parser.add_argument("instance", type=Path, help="WfFormat JSON file")
    parser.add_argument("--namespace", default="default", help="namespace for the pods")
    parser.add_argument("--time-scale", type=float, default=1.0, help="runtime multiplier")
    parser.add_argument(
        "--scheduler-name",
        default="workflow-scheduler",
        help="spec.schedulerName of the pods (default-scheduler runs it under kube-scheduler)",
    )
    parser.add_argument("--kubeconfig", help="kubeconfig (default: $KUBECONFIG or in-cluster)")
    parser.add_argument("--real-nodes", action="store_true", help="sleep instead of KWOK timing")
    parser.add_argument("--timeout", type=float, default=3600, help="give up after seconds")
    parser.set_defaults(func=_replay)


def progress_bar(progress: replay.ReplayProgress, width: int = 30) -> str:
    """One line: a bar of finished tasks plus created/bound counts."""
    done = progress.succeeded
    filled = int(width * done / max(progress.total, 1))
    return (
        f"[{'#' * filled}{'.' * (width - filled)}] {done}/{progress.total} done, "
        f"{progress.bound} bound, {progress.created} created"
    )


def run_replay(
    plan: replay.ReplayPlan, api: replay.PodApi, *, namespace: str, timeout_s: float, quiet: bool
) -> replay.ReplayProgress:
    """Run a plan, drawing a progress bar on stderr unless ``quiet``."""

    def show(progress: replay.ReplayProgress) -> None:
        if not quiet:
            print(f"\r{progress_bar(progress)}", end="", file=sys.stderr, flush=True)

    result = replay.Replayer(plan, api, namespace=namespace).run(
        timeout_s=timeout_s, on_progress=show
    )
    if not quiet:
        print(file=sys.stderr)
    return result


def _replay(args: argparse.Namespace) -> int:
    try:
        instance = simulate.load_instance(args.instance)
        plan = replay.ReplayPlan.from_instance(
            instance,
            scheduler_name=args.scheduler_name,
            time_scale=args.time_scale,
            fake_nodes=not args.real_nodes,
        )
    except (OSError, ValueError) as exc:
        print(f"wfsched: {exc}", file=sys.stderr)
        return 2
    from scheduler.kube import client  # only when talking to a cluster

    api = client.KubeClient.connect(args.kubeconfig, qps=50, burst=100, pool_size=4)
    try:
        result = run_replay(
            plan, api, namespace=args.namespace, timeout_s=args.timeout, quiet=False
        )
    except (TimeoutError, RuntimeError) as exc:
        print(f"wfsched: {exc}", file=sys.stderr)
        return 1
    print(
        f"{instance.name}: {len(plan.tasks)} tasks, run {plan.run_id}, "
        f"scheduler {args.scheduler_name}: makespan {result.makespan_s:.1f}s "
        f"(first binding after {result.first_bind_s or 0:.1f}s)"
    )
    return 0
