"""``wfsched demo``: the README's main job, on a machine with no cluster.

Starts the local control plane (etcd, kube-apiserver, KWOK fake nodes, kube-scheduler) in a
scratch directory, starts wfsched, replays a real nf-core workflow (a WfCommons instance of an
nf-core run) twice on the same fake nodes — once scheduled by wfsched, once by kube-scheduler
— and prints both makespans side by side. Everything is stopped at the end.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from scheduler import registry
from scheduler.cli import replay as replay_cli
from scheduler.devtools import devcluster, replay, simulate

DEFAULT_INSTANCE = "nextflow-rnaseq.json"


def _default_data_dir() -> Path:
    """``../shared/data/wfinstances`` next to the checkout (where the project keeps data)."""
    return Path(__file__).resolve().parents[3] / "shared" / "data" / "wfinstances"


def register(subparsers: Any) -> None:
    """Add the ``demo`` command."""
    parser = subparsers.add_parser(
        "demo",
        help="replay a real nf-core workflow under wfsched and kube-scheduler, side by side",
    )
    parser.add_argument(
        "--instance",
        type=Path,
        default=_default_data_dir() / DEFAULT_INSTANCE,
        help="WfFormat instance to replay (default: nf-core rnaseq)",
    )
    parser.add_argument("--nodes", type=int, default=2, help="fake nodes (default 2)")
    parser.add_argument("--node-cpu", default="4", help="CPU per node (default 4)")
    parser.add_argument("--node-memory", default="16Gi", help="memory per node (default 16Gi)")
    parser.add_argument(
        "--time-scale", type=float, default=0.05, help="runtime multiplier (default 0.05)"
    )
    parser.add_argument("--policy", default="critical_path-roundrobin", help="wfsched strategy")
    parser.add_argument(
        "--check",
        action="store_true",
        help="check the arguments and read the instance, then exit without starting anything",
    )
    parser.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    if args.nodes < 1:
        print("wfsched: --nodes must be at least 1", file=sys.stderr)
        return 2
    try:
        instance = simulate.load_instance(args.instance)
    except (OSError, ValueError) as exc:
        print(f"wfsched: cannot read {args.instance}: {exc}", file=sys.stderr)
        return 2
    try:
        registry.parse_strategy(args.policy)
    except registry.PolicyError as exc:
        print(f"wfsched: --policy: {exc}", file=sys.stderr)
        return 2
    if args.check:
        print(f"demo ok: {instance.name} ({len(instance.tasks)} tasks), policy {args.policy}")
        return 0
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
                namespaces=["demo-wfsched"],
                lease={"enabled": False},
            )
            daemon.start()
            results = _run_both(cluster, instance, args)
        except (devcluster.DevClusterError, TimeoutError, RuntimeError) as exc:
            print(f"wfsched: {exc}", file=sys.stderr)
            return 1
        finally:
            if daemon is not None:
                daemon.stop()
            cluster.stop()
    wf, kube = results["wfsched"], results["kube-scheduler"]
    print()
    print(f"{instance.name}: {len(instance.tasks)} tasks, runtimes x{args.time_scale:g}")
    print(f"  {'scheduler':<34} {'makespan':>9}")
    print(f"  {'wfsched (' + args.policy + ')':<34} {wf:>8.1f}s")
    print(f"  {'kube-scheduler':<34} {kube:>8.1f}s")
    print(f"  makespan ratio wfsched / kube-scheduler: {wf / kube:.2f}")
    return 0


def _run_both(
    cluster: devcluster.DevCluster, instance: simulate.Instance, args: argparse.Namespace
) -> dict[str, float]:
    from scheduler.kube import client  # the API client is only needed once a cluster runs

    api = client.KubeClient.connect(str(cluster.kubeconfig), qps=100, burst=200, pool_size=4)
    results: dict[str, float] = {}
    for label, namespace, scheduler_name in (
        ("wfsched", "demo-wfsched", "workflow-scheduler"),
        ("kube-scheduler", "demo-kube", "default-scheduler"),
    ):
        cluster.admin().apply(
            "/api/v1/namespaces",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        )
        plan = replay.ReplayPlan.from_instance(
            instance, scheduler_name=scheduler_name, time_scale=args.time_scale
        )
        print(f"replaying {instance.name} under {label} ...", flush=True)
        progress = replay_cli.run_replay(
            plan, api, namespace=namespace, timeout_s=1800, quiet=False
        )
        assert progress.makespan_s is not None
        results[label] = progress.makespan_s
        print(f"{label}: makespan {progress.makespan_s:.1f}s", flush=True)
    return results
