"""``wfsched simulate``: replay a WfFormat instance offline under one or every strategy.

Exit status 0 on success; 2 with a one-line ``wfsched simulate: error: ...`` on stderr for an
unknown strategy, a malformed instance, a bad quantity or an impossible cluster (never a
traceback).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

from scheduler import registry
from scheduler.core import errors, resources
from scheduler.devtools import simulate

_DEFAULTS = simulate.ClusterSpec()


def register(subparsers: Any) -> None:
    """Add the ``simulate`` command."""
    parser = subparsers.add_parser(
        "simulate",
        help="replay a WfCommons workflow instance on a simulated cluster",
        description=(
            "Discrete-event replay of a WfFormat instance through the same run_cycle the "
            "daemon uses. The default cluster (4 nodes x 2 CPU x 8Gi) is small enough that "
            "tasks queue on every shared instance, so the ranking matters."
        ),
    )
    parser.add_argument(
        "instance", metavar="INSTANCE", help="WfFormat JSON file or Nextflow trace file"
    )
    parser.add_argument(
        "--time-scale", type=float, default=1.0, help="traces: runtime multiplier, as in replay"
    )
    parser.add_argument(
        "--min-runtime", type=float, default=1.0, help="traces: shortest runtime, as in replay"
    )
    parser.add_argument(
        "--strategy",
        default="fifo",
        help="<ranking>[-<assignment>] (default fifo), 'all' for every ranking, or "
        "'kube-scheduler' for the model of kube-scheduler's queue",
    )
    parser.add_argument(
        "--assign", default=None, help="assignment policy (default: the strategy's, roundrobin)"
    )
    parser.add_argument(
        "--compare", action="store_true", help="run every ranking and print a table"
    )
    parser.add_argument("--nodes", type=int, default=_DEFAULTS.nodes, help="nodes (default 4)")
    parser.add_argument("--node-cpu", default="2", help="allocatable CPU per node (default 2)")
    parser.add_argument(
        "--node-memory", default="8Gi", help="allocatable memory per node (default 8Gi)"
    )
    parser.add_argument(
        "--earlier",
        metavar="EARLIER",
        help="an earlier run of the same workflow (trace or instance): the scheduler starts "
        "with its step runtimes and step edges, as a daemon that ran it before (trace or "
        "instance with tasks released as they become ready; not with kube-scheduler)",
    )
    parser.add_argument(
        "--runtime-jitter",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="lengthen each task's runtime by a uniform draw from [0, SECONDS] (seeded by "
        "--seed), so that tasks released together end a little apart, as on a cluster "
        "(default 0: runtimes as recorded)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Execute ``wfsched simulate``; returns the exit status."""
    try:
        return _run(args)
    except (
        registry.PolicyError,
        simulate.InstanceError,
        simulate.SimulationError,
        errors.CoreError,
    ) as exc:
        print(f"wfsched simulate: error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    if args.nodes < 1:
        raise simulate.SimulationError("--nodes must be at least 1")
    if not math.isfinite(args.runtime_jitter) or args.runtime_jitter < 0:
        raise simulate.SimulationError("--runtime-jitter must be a number of seconds >= 0")
    cluster_spec = simulate.ClusterSpec(
        nodes=args.nodes,
        node_cpu_millis=resources.cpu_millis(args.node_cpu),
        node_memory_bytes=resources.integer_value(args.node_memory),
    )
    compare = args.compare or args.strategy.strip().lower() == "all"
    kube = args.strategy.strip().lower() == simulate.KUBE_SCHEDULER
    if compare:
        assignment = registry.assignment(args.assign or registry.DEFAULT_ASSIGNMENT).name
    elif not kube:
        spec = registry.parse_strategy(args.strategy)
        if args.assign is not None:
            spec = registry.PolicySpec(
                ranking=spec.ranking, assignment=registry.assignment(args.assign).name
            )
    instance = simulate.with_runtime_jitter(
        _load(args.instance, args, cluster_spec), jitter_s=args.runtime_jitter, seed=args.seed
    )
    earlier = (
        simulate.earlier_runs(_load(args.earlier, args, cluster_spec)) if args.earlier else None
    )
    if not compare:
        result = (
            simulate.simulate_kube_scheduler(instance, cluster_spec=cluster_spec, seed=args.seed)
            if kube
            else simulate.simulate(
                instance, strategy=spec, cluster_spec=cluster_spec, seed=args.seed, earlier=earlier
            )
        )
        if args.json:
            print(json.dumps(result.to_json()))
        else:
            _print_one(result, args)
        return 0
    results = simulate.compare(
        instance,
        assignment=assignment,
        cluster_spec=cluster_spec,
        seed=args.seed,
        earlier=earlier,
    )
    fifo = next(r.makespan_s for r in results if r.strategy == "fifo")
    rows = [{**r.to_json(), "ratio_vs_fifo": _ratio(r.makespan_s, fifo)} for r in results]
    if args.json:
        print(json.dumps(rows))
    else:
        _print_table(rows, instance, args)
    return 0


def _load(path: str, args: argparse.Namespace, spec: simulate.ClusterSpec) -> simulate.Instance:
    """A WfFormat instance, or a Nextflow trace through the replay's own plan (same tasks)."""
    from scheduler.devtools import nftrace, replay

    if path.lower().endswith(".json") or not nftrace.is_trace_file(path):
        return simulate.load_instance(path)
    try:
        return replay.simulation_instance(
            nftrace.load_trace(path),
            time_scale=args.time_scale,
            min_runtime_s=args.min_runtime,
            cluster=spec,
        )
    except ValueError as exc:
        raise simulate.InstanceError(str(exc)) from None


def _ratio(value: float, base: float) -> float:
    return value / base if base > 0 else 1.0


def _cluster_line(args: argparse.Namespace) -> str:
    return f"{args.nodes} nodes x {args.node_cpu} CPU x {args.node_memory}"


def _print_one(result: simulate.SimResult, args: argparse.Namespace) -> None:
    print(f"instance     {result.instance} ({result.tasks} tasks)")
    print(f"cluster      {_cluster_line(args)}")
    print(f"strategy     {result.strategy}-{result.assign} (seed {result.seed})")
    print(f"makespan     {result.makespan_s:.1f} s")
    print(f"cpu util     {result.cpu_utilization:.3f}")
    print(f"mean wait    {result.mean_wait_s:.1f} s over {result.cycles} cycles")


def _print_table(
    rows: list[dict[str, Any]], instance: simulate.Instance, args: argparse.Namespace
) -> None:
    assign = rows[0]["assign"]
    print(
        f"{instance.name}: {len(instance.tasks)} tasks; cluster {_cluster_line(args)}; "
        f"assignment {assign}; seed {args.seed}"
    )
    print(f"{'strategy':15s} {'makespan_s':>11s} {'vs_fifo':>8s} {'cpu_util':>9s} {'wait_s':>8s}")
    for row in rows:
        print(
            f"{row['strategy']:15s} {row['makespan_s']:11.1f} {row['ratio_vs_fifo']:8.3f} "
            f"{row['cpu_utilization']:9.3f} {row['mean_wait_s']:8.1f}"
        )
    by_name = {row["strategy"]: row["makespan_s"] for row in rows}
    if "critical_path" in by_name and "rank_min" in by_name:
        ratio = _ratio(by_name["critical_path"], by_name["rank_min"])
        print(f"critical_path / rank_min = {ratio:.3f}")
