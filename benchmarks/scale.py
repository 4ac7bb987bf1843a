"""Daemon cost as the cluster grows: cycle time and resident memory versus pods and nodes.

    .venv/bin/python benchmarks/scale.py [--pods 1000,5000,20000] [--nodes 100,1000,5000]

For each (pods, nodes) point, on one local control plane: create the fake nodes, create the
pending pods (each asks for more CPU than a node has, so every cycle considers all of them and
none is bound), start wfsched, wait until it has seen them all, let it run a few safety cycles,
and read its mean cycle duration (``wfsched_scheduling_cycle_duration_seconds``) and its RSS
(``/proc/<pid>/status``). Prints a table and the fitted growth exponents (log-log least
squares) of cycle time and RSS in pods and in nodes.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from scheduler.devtools import devcluster


def _exponent(xs: list[float], ys: list[float]) -> float:
    if len(set(xs)) < 2:
        return math.nan
    slope, _ = np.polyfit(np.log(xs), np.log(ys), 1)
    return float(slope)


def measure(
    cluster: devcluster.DevCluster, workdir: Path, pods: int, nodes: int
) -> dict[str, float]:
    """One grid point: returns pods, nodes, mean cycle seconds and RSS bytes."""
    admin = cluster.admin()
    prefix = f"s{uuid.uuid4().hex[:4]}-"
    cluster.create_nodes(nodes, cpu="4", memory="16Gi", prefix=prefix, wait_ready_s=300)
    namespace = f"scale-{uuid.uuid4().hex[:6]}"
    admin.apply(
        "/api/v1/namespaces",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
    )

    def create(i: int) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"p{i:05d}", "labels": {"wfsched.io/run-id": f"r{i % 50}"}},
            "spec": {
                "schedulerName": "workflow-scheduler",
                "containers": [
                    {"name": "c", "image": "x", "resources": {"requests": {"cpu": "64"}}}
                ],
            },
        }
        status, reply = admin.request("POST", f"/api/v1/namespaces/{namespace}/pods", body)
        if status >= 300:
            raise RuntimeError(f"creating pod: HTTP {status}: {reply}")

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(create, range(pods)))
    daemon = devcluster.LocalDaemon(
        cluster.kubeconfig,
        workdir,
        namespaces=[namespace],
        lease={"enabled": False},
        cycle_interval_s=2,
        log_level="warning",
    )
    daemon.start(wait_ready_s=300)
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            text = daemon.metrics()
            seen = sum(
                float(line.split()[1])
                for line in text.splitlines()
                if line.startswith("wfsched_pending_tasks{")
            )
            if (
                seen >= pods
                and devcluster.metric_sample(
                    text, "wfsched_scheduling_cycle_duration_seconds_count"
                )
                >= 4
            ):
                break
            time.sleep(1)
        time.sleep(6)  # a few more safety cycles over the full queue
        text = daemon.metrics()
        total = devcluster.metric_sample(text, "wfsched_scheduling_cycle_duration_seconds_sum")
        count = devcluster.metric_sample(text, "wfsched_scheduling_cycle_duration_seconds_count")
        assert daemon.proc is not None
        rss = devcluster.process_memory_bytes(daemon.proc.pid)
    finally:
        daemon.stop()
    admin.request("DELETE", f"/api/v1/namespaces/{namespace}/pods")
    for i in range(nodes):
        admin.request("DELETE", f"/api/v1/nodes/{prefix}{i}")
    return {"pods": pods, "nodes": nodes, "cycle_s": total / count, "rss_bytes": rss}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pods", default="1000,5000,20000")
    parser.add_argument("--nodes", default="100,1000,5000")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    pod_counts = [int(x) for x in args.pods.split(",")]
    node_counts = [int(x) for x in args.nodes.split(",")]
    # Vary one dimension at a time around the smallest value of the other.
    grid = [(p, node_counts[0]) for p in pod_counts] + [(pod_counts[0], n) for n in node_counts[1:]]
    rows = []
    with tempfile.TemporaryDirectory(prefix="wfsched-scale-") as scratch:
        workdir = Path(scratch)
        cluster = devcluster.DevCluster(
            workdir / "cluster", devcluster.ClusterOptions(metrics_server=False)
        )
        cluster.start(build_missing=True)
        try:
            for pods, nodes in grid:
                row = measure(cluster, workdir, pods, nodes)
                rows.append(row)
                print(
                    f"pods {pods:>6} nodes {nodes:>5}: cycle {row['cycle_s'] * 1000:8.1f} ms"
                    f"  rss {row['rss_bytes'] / 2**20:7.1f} MiB",
                    flush=True,
                )
        finally:
            cluster.stop()
    by_pods = [r for r in rows if r["nodes"] == node_counts[0]]
    by_nodes = [r for r in rows if r["pods"] == pod_counts[0]]
    summary = {
        "rows": rows,
        "cycle_exponent_pods": _exponent(
            [r["pods"] for r in by_pods], [r["cycle_s"] for r in by_pods]
        ),
        "cycle_exponent_nodes": _exponent(
            [r["nodes"] for r in by_nodes], [r["cycle_s"] for r in by_nodes]
        ),
        "rss_exponent_pods": _exponent(
            [r["pods"] for r in by_pods], [r["rss_bytes"] for r in by_pods]
        ),
        "rss_exponent_nodes": _exponent(
            [r["nodes"] for r in by_nodes], [r["rss_bytes"] for r in by_nodes]
        ),
    }
    print(
        f"growth exponents: cycle ~ pods^{summary['cycle_exponent_pods']:.2f}, "
        f"nodes^{summary['cycle_exponent_nodes']:.2f}; "
        f"rss ~ pods^{summary['rss_exponent_pods']:.2f}, nodes^{summary['rss_exponent_nodes']:.2f}"
    )
    if args.json:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
