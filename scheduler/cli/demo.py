"""``wfsched demo``: the README's main job, on a machine with no cluster.

Starts the local control plane (etcd, kube-apiserver, KWOK fake nodes, kube-scheduler) in a
scratch directory and replays a real nf-core run (a Nextflow trace with its process DAG from
``../shared/data/nfcore-traces``, or a WfFormat instance) twice on the same fake nodes: once
under kube-scheduler, once under wfsched with memory prediction. Tasks ask for nf-core's memory
presets, so memory limits how many run at once; wfsched right-sizes them from the peaks of the
tasks that finished before (an under-sized one is OOM-killed and retried, as nf-core does).
Prints both makespans side by side and writes the report page (Gantt charts, memory per node,
figures). Everything is stopped at the end.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from scheduler import registry
from scheduler.core import resources
from scheduler.devtools import devcluster, nftrace, replay, runstats, simulate

DEFAULT_TRACE = Path("nanoseq") / "trace-1.csv"
"""A memory-bound workflow: nf-core's presets let few of its tasks run at once on the demo's nodes,
so right-sized memory shows in the makespan (docs/benchmarks.md, "a 3 s floor")."""


def _default_data_dir() -> Path:
    """``../shared/data/nfcore-traces`` next to the checkout (where the project keeps data)."""
    return Path(__file__).resolve().parents[3] / "shared" / "data" / "nfcore-traces"


def register(subparsers: Any) -> None:
    """Add the ``demo`` command."""
    parser = subparsers.add_parser(
        "demo",
        help="replay a real nf-core workflow under wfsched and kube-scheduler, side by side",
    )
    parser.add_argument(
        "--trace",
        "--instance",
        dest="trace",
        type=Path,
        default=_default_data_dir() / DEFAULT_TRACE,
        help="Nextflow trace (its dag.html beside it) or WfFormat instance (default: nanoseq)",
    )
    parser.add_argument("--nodes", type=int, default=4, help="fake nodes (default 4)")
    parser.add_argument("--node-cpu", default="32", help="CPU per node (default 32)")
    parser.add_argument("--node-memory", default="128Gi", help="memory per node (default 128Gi)")
    parser.add_argument(
        "--time-scale", type=float, default=0.06, help="runtime multiplier (default 0.06)"
    )
    parser.add_argument(
        "--min-runtime", type=float, default=3.0, help="shortest task, seconds (default 3)"
    )
    parser.add_argument("--policy", default="critical_path-roundrobin", help="wfsched strategy")
    parser.add_argument(
        "--predictor", default="envelope", help="wfsched memory predictor ('' for none)"
    )
    parser.add_argument(
        "--report", type=Path, default=Path("wfsched-demo.html"), help="report page to write"
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="check the arguments and read the workflow, then exit without starting anything",
    )
    parser.set_defaults(func=_demo)


def _plan(args: argparse.Namespace, scheduler_name: str, tag: str) -> replay.ReplayPlan:
    cpu = resources.cpu_millis(args.node_cpu)
    memory = resources.integer_value(args.node_memory)
    if args.trace.suffix.lower() == ".json":
        return replay.ReplayPlan.from_instance(
            simulate.load_instance(args.trace),
            scheduler_name=scheduler_name,
            time_scale=args.time_scale,
            min_runtime_s=args.min_runtime,
        )
    trace = nftrace.load_trace(args.trace)
    return replay.ReplayPlan.from_trace(
        trace,
        scheduler_name=scheduler_name,
        time_scale=args.time_scale,
        min_runtime_s=args.min_runtime,
        workflow_name=f"{trace.name.split('/')[0]}-{tag}",
        max_cpu_millis=cpu,
        max_memory_bytes=memory,
    )


def _workflow_title(path: Path) -> str:
    """Name the replayed workflow in the report.

    ``nanoseq/trace-1`` for a Nextflow trace (its directory names the pipeline), the file's
    stem for a WfFormat instance.
    """
    return path.stem if path.suffix.lower() == ".json" else f"{path.parent.name}/{path.stem}"


def _demo(args: argparse.Namespace) -> int:
    if args.nodes < 1:
        print("wfsched: --nodes must be at least 1", file=sys.stderr)
        return 2
    try:
        registry.parse_strategy(args.policy)
        if args.predictor:
            registry.parse_predictor(args.predictor)
    except (registry.PolicyError, ValueError) as exc:
        print(f"wfsched: {exc}", file=sys.stderr)
        return 2
    try:
        plan = _plan(args, "workflow-scheduler", "check")
    except (OSError, ValueError, ArithmeticError) as exc:
        print(f"wfsched: {exc}", file=sys.stderr)
        return 2
    label = args.policy + (f"+{args.predictor}" if args.predictor else "")
    if args.check:
        print(f"demo ok: {args.trace} ({len(plan.tasks)} tasks), {label}")
        return 0
    shape = runstats.ClusterShape(
        nodes=args.nodes,
        cpu_millis=resources.cpu_millis(args.node_cpu),
        memory_bytes=resources.integer_value(args.node_memory),
    )
    with tempfile.TemporaryDirectory(prefix="wfsched-demo-") as scratch:
        workdir = Path(scratch)
        cluster = devcluster.DevCluster(
            workdir / "cluster",
            devcluster.ClusterOptions(metrics_server=False, kube_scheduler=True),
        )
        daemon: devcluster.LocalDaemon | None = None
        try:
            started = time.monotonic()
            print("starting etcd, kube-apiserver, KWOK and kube-scheduler ...", flush=True)
            cluster.start(build_missing=True)
            cluster.create_nodes(args.nodes, cpu=args.node_cpu, memory=args.node_memory)
            print(
                f"control plane with {args.nodes} fake nodes ({args.node_cpu} CPU, "
                f"{args.node_memory}) ready in {time.monotonic() - started:.1f}s",
                flush=True,
            )
            daemon = devcluster.LocalDaemon(
                cluster.kubeconfig,
                workdir,
                policy=args.policy,
                predictor=args.predictor,
                namespaces=["demo-wfsched"],
                lease={"enabled": False},
                memory_store_configmap="wfsched-demo-memory",
            )
            daemon.start()
            rows = _run_both(cluster, args, label, shape)
        except (devcluster.DevClusterError, TimeoutError, RuntimeError) as exc:
            print(f"wfsched: {exc}", file=sys.stderr)
            return 1
        finally:
            if daemon is not None:
                daemon.stop()
            cluster.stop()
    from scheduler.devtools import report

    args.report.write_text(report.comparison_page(rows, shape=shape), encoding="utf-8")
    kube, wf = (row["stats"] for row in rows)
    print()
    print(f"{args.trace}: {len(plan.tasks)} tasks, runtimes x{args.time_scale:g}")
    print(f"  {'scheduler':<44} {'makespan':>9} {'wasted GiBh':>12} {'failed':>7}")
    for row in rows:
        stats = row["stats"]
        print(
            f"  {row['config']:<44} {stats['makespan_s']:>8.1f}s "
            f"{stats['wasted_gibh']:>12.1f} {stats['failed_attempts']:>7}"
        )
    print(f"  makespan ratio wfsched / kube-scheduler: {wf['makespan_s'] / kube['makespan_s']:.2f}")
    print(f"  report: {args.report}")
    return 0


def _run_both(
    cluster: devcluster.DevCluster,
    args: argparse.Namespace,
    label: str,
    shape: runstats.ClusterShape,
) -> list[dict[str, Any]]:
    from scheduler.cli import replay as replay_cli
    from scheduler.devtools import report
    from scheduler.kube import client  # the API client is only needed once a cluster runs

    api = client.KubeClient.connect(str(cluster.kubeconfig), qps=100, burst=200, pool_size=4)
    rows: list[dict[str, Any]] = []
    for config, namespace, scheduler_name in (
        ("kube-scheduler", "demo-kube", "default-scheduler"),
        (f"wfsched ({label})", "demo-wfsched", "workflow-scheduler"),
    ):
        cluster.admin().apply(
            "/api/v1/namespaces",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        )
        plan = _plan(args, scheduler_name, namespace)
        print(f"replaying {args.trace} under {config} ...", flush=True)
        with replay.memory_simulator(api, namespace, report_usage=False):  # no metrics-server
            progress = replay_cli.run_replay(
                plan, api, namespace=namespace, timeout_s=1800, quiet=False
            )
        makespan = progress.makespan_s or 0.0
        stats = runstats.run_stats(
            progress.attempts, makespan_s=makespan, time_scale=plan.time_scale, cluster=shape
        )
        rows.append(
            {
                "workflow": _workflow_title(args.trace),
                "config": config,
                "error": "",
                "stats": stats.to_json(),
                "attempts": [report.attempt_json(a) for a in progress.attempts],
            }
        )
        print(f"{config}: makespan {makespan:.1f}s", flush=True)
    return rows
