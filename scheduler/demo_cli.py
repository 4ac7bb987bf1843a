"""``wfsched demo``: the README's main job, runnable on a machine with no cluster.

Starts the local control plane (etcd, kube-apiserver, KWOK, metrics-server) in a scratch
directory, creates fake nodes, shows them as the API server reports them, and stops everything.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from scheduler import devcluster


def register(subparsers: Any) -> None:
    """Add the ``demo`` command."""
    parser = subparsers.add_parser("demo", help="start a local control plane and show it")
    parser.add_argument("--nodes", type=int, default=4, help="fake nodes (default 4)")
    parser.add_argument("--node-cpu", default="8", help="CPU per node (default 8)")
    parser.add_argument("--node-memory", default="32Gi", help="memory per node (default 32Gi)")
    parser.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    if args.nodes < 1:
        print("wfsched: --nodes must be at least 1", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="wfsched-demo-") as scratch:
        cluster = devcluster.DevCluster(Path(scratch))
        started = time.monotonic()
        try:
            print("starting etcd, kube-apiserver, KWOK and metrics-server ...", flush=True)
            cluster.start(build_missing=True)
            print(f"control plane ready in {time.monotonic() - started:.1f}s at {cluster.server}")
            cluster.create_nodes(args.nodes, cpu=args.node_cpu, memory=args.node_memory)
            status, body = cluster.admin().request("GET", "/api/v1/nodes")
            if status != 200:
                print(f"wfsched: listing nodes failed: HTTP {status}", file=sys.stderr)
                return 1
            print(f"{'NODE':<16} {'READY':<6} {'CPU':>5} {'MEMORY':>8} {'PODS':>5}")
            for node in body["items"]:
                alloc = node["status"]["allocatable"]
                ready = any(
                    c["type"] == "Ready" and c["status"] == "True"
                    for c in node["status"].get("conditions", [])
                )
                print(
                    f"{node['metadata']['name']:<16} {ready!s:<6} {alloc['cpu']:>5} "
                    f"{alloc['memory']:>8} {alloc['pods']:>5}"
                )
        except devcluster.DevClusterError as exc:
            print(f"wfsched: {exc}", file=sys.stderr)
            return 1
        finally:
            cluster.stop()
        print("control plane stopped")
    return 0
