"""``wfsched dev-cluster``: build, start, inspect and stop the local control plane."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from scheduler.devtools import devcluster


def register(subparsers: Any) -> None:
    """Add the ``dev-cluster`` command and its ``build``/``up``/``down``/``status`` actions."""
    parser = subparsers.add_parser(
        "dev-cluster",
        help="run a local control plane (etcd, kube-apiserver, KWOK fake nodes)",
        description=(
            "A real local control plane built from Go modules: etcd, kube-apiserver, KWOK "
            "fake nodes and metrics-server on 127.0.0.1. Nothing else is needed."
        ),
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    build = actions.add_parser("build", help="build (or confirm cached) control-plane binaries")
    build.add_argument(
        "components",
        nargs="*",
        help=f"default: {', '.join(_default_components())}; optional: "
        f"{', '.join(devcluster.OPTIONAL_COMPONENTS)}",
    )
    build.set_defaults(func=_build)

    up = actions.add_parser("up", help="start a cluster and create fake nodes")
    _add_dir(up)
    up.add_argument("--nodes", type=int, default=4, help="fake nodes to create (default 4)")
    up.add_argument("--node-cpu", default="8", help="allocatable CPU per node (default 8)")
    up.add_argument("--node-memory", default="32Gi", help="allocatable memory (default 32Gi)")
    up.add_argument("--node-pods", type=int, default=110, help="pods per node (default 110)")
    up.add_argument("--no-metrics-server", action="store_true", help="skip metrics-server")
    up.add_argument(
        "--kube-scheduler", action="store_true", help="also run kube-scheduler as a baseline"
    )
    up.add_argument(
        "--controller-manager",
        action="store_true",
        help="also run kube-controller-manager (Job, garbage-collector, TTL, namespace and "
        "service-account controllers), so that Jobs make pods",
    )
    up.add_argument(
        "--kueue",
        action="store_true",
        help="also run Kueue (CRDs, webhooks on 127.0.0.1, manager); implies --controller-manager",
    )
    up.set_defaults(func=_up)

    down = actions.add_parser("down", help="stop the cluster started by `up`")
    _add_dir(down)
    down.add_argument("--purge", action="store_true", help="also delete its data directory")
    down.set_defaults(func=_down)

    status = actions.add_parser("status", help="show the cluster's processes and kubeconfig")
    _add_dir(status)
    status.set_defaults(func=_status)


def _add_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dir",
        type=Path,
        default=devcluster.default_workdir(),
        help="cluster state directory (default: %(default)s)",
    )


def _default_components() -> list[str]:
    return [c for c in devcluster.COMPONENT_BINARIES if c not in devcluster.OPTIONAL_COMPONENTS]


def _build(args: argparse.Namespace) -> int:
    components = args.components or _default_components()
    unknown = sorted(set(components) - set(devcluster.COMPONENT_BINARIES))
    if unknown:
        print(f"wfsched: unknown component(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    try:
        devcluster.build_components(components)
    except devcluster.DevClusterError as exc:
        print(f"wfsched: {exc}", file=sys.stderr)
        return 1
    return 0


def _up(args: argparse.Namespace) -> int:
    workdir: Path = args.dir
    if (workdir / "state.json").is_file():
        existing = devcluster.DevCluster.attach(workdir)
        if existing.running_components():
            print(
                f"wfsched: a dev cluster is already running in {workdir}; "
                "run `wfsched dev-cluster down` first",
                file=sys.stderr,
            )
            return 1
    if args.nodes < 0:
        print("wfsched: --nodes must be >= 0", file=sys.stderr)
        return 2
    workdir.mkdir(parents=True, exist_ok=True)
    options = devcluster.ClusterOptions.for_nodes(
        args.nodes,
        metrics_server=not args.no_metrics_server,
        kube_scheduler=args.kube_scheduler,
        # Kueue admits Jobs; without the Job controller an admitted Job never makes a pod.
        controller_manager=args.controller_manager or args.kueue,
        kueue=args.kueue,
    )
    cluster = devcluster.DevCluster(workdir, options)
    try:
        print("starting etcd, kube-apiserver, KWOK ...", file=sys.stderr)
        cluster.start()
        names = cluster.create_nodes(
            args.nodes, cpu=args.node_cpu, memory=args.node_memory, pods=args.node_pods
        )
    except devcluster.DevClusterError as exc:
        cluster.stop()
        print(f"wfsched: {exc}", file=sys.stderr)
        return 1
    print(f"dev cluster up: {cluster.server}")
    print(f"{len(names)} fake node(s), {args.node_cpu} CPU / {args.node_memory} each")
    for component, pid in cluster.running_components().items():
        print(f"  {component:<24} pid {pid}")
    print(f"export KUBECONFIG={cluster.kubeconfig}")
    return 0


def _down(args: argparse.Namespace) -> int:
    try:
        cluster = devcluster.DevCluster.attach(args.dir)
    except devcluster.DevClusterError as exc:
        print(f"wfsched: {exc}", file=sys.stderr)
        return 1
    cluster.stop()
    if args.purge:
        shutil.rmtree(args.dir, ignore_errors=True)
    print("dev cluster stopped")
    return 0


def _status(args: argparse.Namespace) -> int:
    try:
        cluster = devcluster.DevCluster.attach(args.dir)
    except devcluster.DevClusterError as exc:
        print(f"wfsched: {exc}", file=sys.stderr)
        return 1
    running = cluster.running_components()
    print(json.dumps({"kubeconfig": str(cluster.kubeconfig), "running": running}, indent=2))
    return 0 if running else 1
