"""``wfsched replay``: run a real workflow on a cluster, task pods created as parents finish.

The input is a WfFormat instance (``.json``) or a Nextflow trace file (any other file whose
header has the trace columns, e.g. nf-core's ``trace-*.csv``), with its process DAG from
``--dag`` or a ``dag.html`` beside it, else dependencies from the trace alone.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from scheduler.core import resources
from scheduler.devtools import nftrace, replay, runstats, simulate


def register(subparsers: Any) -> None:
    """Add the ``replay`` command."""
    parser = subparsers.add_parser(
        "replay",
        help="replay a workflow (WfFormat instance or Nextflow trace) on a cluster",
        description=(
            "Submit a real workflow (a WfCommons WfFormat instance, or a Nextflow trace file "
            "such as nf-core's trace-*.csv) as pods: each task's pod is created when its "
            "parents have succeeded, with wfsched's workflow labels, the task's CPU and memory "
            "requests and its runtime (a KWOK duration annotation, or a sleeping container "
            "with --real-nodes). For traces on fake nodes, a task whose memory limit is below "
            "its recorded peak is OOM-killed (the fake kubelet memory model runs beside the "
            "replay) and retried with twice the request (nf-core's retry), and a "
            "finished task reports its peak. Prints progress and the makespan."
        ),
    )
    parser.add_argument("workflow", type=Path, help="WfFormat JSON file or Nextflow trace file")
    parser.add_argument("--namespace", default="default", help="namespace for the pods")
    parser.add_argument("--time-scale", type=float, default=1.0, help="runtime multiplier")
    parser.add_argument(
        "--min-runtime", type=float, default=1.0, help="shortest task runtime, seconds (1)"
    )
    parser.add_argument(
        "--scheduler-name",
        default="workflow-scheduler",
        help="spec.schedulerName of the pods (default-scheduler runs it under kube-scheduler)",
    )
    parser.add_argument("--kubeconfig", help="kubeconfig (default: $KUBECONFIG or in-cluster)")
    parser.add_argument("--real-nodes", action="store_true", help="sleep instead of KWOK timing")
    parser.add_argument("--timeout", type=float, default=3600, help="give up after seconds")
    trace = parser.add_argument_group("Nextflow traces")
    trace.add_argument("--dag", type=Path, help="process DAG (default: dag.html beside the trace)")
    trace.add_argument(
        "--no-dag", action="store_true", help="dependencies from the trace alone, ignore any DAG"
    )
    trace.add_argument(
        "--max-retries",
        type=int,
        default=replay.NF_CORE_MAX_RETRIES,
        help=f"retries of an OOM-killed task (nf-core maxRetries: {replay.NF_CORE_MAX_RETRIES})",
    )
    trace.add_argument("--max-cpus", default=None, help="cap of CPU requests (nf-core max_cpus)")
    trace.add_argument(
        "--max-memory", default=None, help="cap of memory requests (nf-core max_memory)"
    )
    trace.add_argument(
        "--report", type=Path, help="write an HTML page (Gantt chart, memory, figures) here"
    )
    trace.add_argument(
        "--nodes", type=int, default=0, help="nodes of the cluster, for the report's figures"
    )
    parser.set_defaults(func=_replay)


def progress_bar(progress: replay.ReplayProgress, width: int = 30) -> str:
    """One line: a bar of finished tasks plus created/bound counts."""
    done = progress.succeeded
    filled = int(width * done / max(progress.total, 1))
    failed = f", {progress.failed} failed attempts" if progress.failed else ""
    return (
        f"[{'#' * filled}{'.' * (width - filled)}] {done}/{progress.total} done, "
        f"{progress.bound} bound, {progress.created} created{failed}"
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


def build_plan(args: argparse.Namespace) -> tuple[str, replay.ReplayPlan]:
    """The workflow's display name and plan, from a WfFormat instance or a trace file.

    Raises:
        ValueError: unreadable input or bad option values (with the reason).
        OSError: the file cannot be read.
    """
    if args.workflow.suffix.lower() != ".json" and nftrace.is_trace_file(args.workflow):
        trace = nftrace.load_trace(args.workflow, dag=args.dag, use_dag=not args.no_dag)
        plan = replay.ReplayPlan.from_trace(
            trace,
            scheduler_name=args.scheduler_name,
            time_scale=args.time_scale,
            min_runtime_s=args.min_runtime,
            max_cpu_millis=resources.cpu_millis(args.max_cpus) if args.max_cpus else None,
            max_memory_bytes=(
                resources.integer_value(args.max_memory) if args.max_memory else None
            ),
            max_retries=args.max_retries,
            fake_nodes=not args.real_nodes,
        )
        return f"{trace.name} (dependencies from {trace.dependency_source})", plan
    instance = simulate.load_instance(args.workflow)
    plan = replay.ReplayPlan.from_instance(
        instance,
        scheduler_name=args.scheduler_name,
        time_scale=args.time_scale,
        min_runtime_s=args.min_runtime,
        fake_nodes=not args.real_nodes,
    )
    return instance.name, plan


def _replay(args: argparse.Namespace) -> int:
    try:
        name, plan = build_plan(args)
    except (OSError, ValueError, ArithmeticError) as exc:
        print(f"wfsched: {exc}", file=sys.stderr)
        return 2
    from scheduler.kube import client  # only when talking to a cluster

    api = client.KubeClient.connect(args.kubeconfig, qps=50, burst=100, pool_size=4)
    memory = None if args.real_nodes else replay.memory_simulator(api, args.namespace).start()
    try:
        result = run_replay(
            plan, api, namespace=args.namespace, timeout_s=args.timeout, quiet=False
        )
    except (TimeoutError, RuntimeError) as exc:
        print(f"wfsched: {exc}", file=sys.stderr)
        return 1
    finally:
        if memory is not None:
            memory.stop()
    print(
        f"{name}: {len(plan.tasks)} tasks, run {plan.run_id}, "
        f"scheduler {args.scheduler_name}: makespan {result.makespan_s:.1f}s "
        f"(first binding after {result.first_bind_s or 0:.1f}s, "
        f"{result.failed} failed attempts)"
    )
    if args.report is not None:
        write_report(args, plan, result, api)
    return 0


def write_report(
    args: argparse.Namespace, plan: replay.ReplayPlan, result: replay.ReplayProgress, api: Any
) -> None:
    """Write the HTML page of one run, with the nodes its pods ran on as the cluster."""
    from scheduler.devtools import report

    nodes = {a.node for a in result.attempts if a.node}
    node_objects = [api.get_object("nodes", node) for node in sorted(nodes)]
    allocatable = [(n or {}).get("status", {}).get("allocatable", {}) for n in node_objects]
    shape = runstats.ClusterShape(
        nodes=args.nodes or max(1, len(nodes)),
        cpu_millis=max((resources.cpu_millis(a.get("cpu", "0")) for a in allocatable), default=1),
        memory_bytes=max(
            (resources.integer_value(a.get("memory", "0")) for a in allocatable), default=1
        ),
    )
    stats = runstats.run_stats(
        result.attempts,
        makespan_s=result.makespan_s or 0.0,
        time_scale=plan.time_scale,
        cluster=shape,
    )
    row = {
        "workflow": plan.workflow,
        "config": args.scheduler_name,
        "error": "",
        "stats": stats.to_json(),
        "attempts": [report.attempt_json(a) for a in result.attempts],
    }
    args.report.write_text(report.comparison_page([row], shape=shape), encoding="utf-8")
    print(f"report: {args.report}")
