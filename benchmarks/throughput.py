"""Binding throughput and latency: wfsched versus kube-scheduler on the same local cluster.

    .venv/bin/python benchmarks/throughput.py [--pods 5000] [--nodes 500] [--rounds 3]
        [--qps 500] [--burst 1000]

Starts the local control plane (etcd, kube-apiserver, KWOK) with kube-scheduler (client
QPS/burst raised to the same budget wfsched gets) and wfsched as a subprocess. Each round
creates ``--pods`` single-task pods up front in a fresh namespace while both schedulers are
stopped, then starts the scheduler under test; then the same for the other one, alternating
which goes first. A watch records, with one local monotonic clock, when each pod was first
seen bound. Reported per run: pods bound per second from the first binding to the last; then
the median over rounds of the wfsched / kube-scheduler throughput ratio. Creation-to-binding
latency is measured separately with ``--latency``: pods are created at a steady rate while
the scheduler runs, and the time from each create call's return to the pod being seen bound
is reported (median, p99).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch

from scheduler.devtools import devcluster


def _pod(name: str, scheduler: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "schedulerName": scheduler,
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 0,
            "containers": [
                {
                    "name": "c",
                    "image": "busybox",
                    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                }
            ],
        },
    }


def _watch_binds(
    core: client.CoreV1Api, namespace: str, expected: int
) -> tuple[dict[str, float], threading.Event, watch.Watch]:
    bound: dict[str, float] = {}
    done = threading.Event()
    w = watch.Watch()

    def observe() -> None:
        for event in w.stream(core.list_namespaced_pod, namespace, timeout_seconds=900):
            pod = event["object"]
            if pod.spec.node_name and pod.metadata.name not in bound:
                bound[pod.metadata.name] = time.monotonic()
                if len(bound) >= expected:
                    done.set()
                    return

    threading.Thread(target=observe, daemon=True).start()
    time.sleep(0.5)
    return bound, done, w


def _create_pods(core: client.CoreV1Api, namespace: str, scheduler: str, pods: int) -> None:
    def create(i: int) -> None:
        core.create_namespaced_pod(namespace, _pod(f"p{i:05d}", scheduler), _preload_content=False)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(create, range(pods)))


def throughput_run(
    core: client.CoreV1Api,
    scheduler: str,
    pods: int,
    *,
    start: Callable[[], None],
    stop: Callable[[], None],
) -> dict[str, float]:
    """Create ``pods`` pods with nobody scheduling, start the scheduler, time the binds."""
    namespace = f"bench-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": namespace}})
    _create_pods(core, namespace, scheduler, pods)
    bound, done, w = _watch_binds(core, namespace, pods)
    start()
    finished = done.wait(timeout=900)
    w.stop()
    stop()
    core.delete_collection_namespaced_pod(namespace, grace_period_seconds=0)
    if not finished:
        raise RuntimeError(f"{scheduler}: only {len(bound)}/{pods} bound")
    first, last = min(bound.values()), max(bound.values())
    return {"pods": pods, "pods_per_s": (pods - 1) / max(last - first, 1e-9)}


def latency_run(core: client.CoreV1Api, scheduler: str, pods: int, rate: float) -> list[float]:
    """Create pods at ``rate`` per second while the scheduler runs; return latencies."""
    namespace = f"lat-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": namespace}})
    bound, done, w = _watch_binds(core, namespace, pods)
    created: dict[str, float] = {}
    began = time.monotonic()
    for i in range(pods):
        delay = began + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        name = f"p{i:05d}"
        core.create_namespaced_pod(namespace, _pod(name, scheduler), _preload_content=False)
        created[name] = time.monotonic()
    done.wait(timeout=600)
    w.stop()
    core.delete_collection_namespaced_pod(namespace, grace_period_seconds=0)
    return sorted(max(0.0, bound[n] - created[n]) for n in bound if n in created)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pods", type=int, default=5000)
    parser.add_argument("--nodes", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--qps", type=int, default=500)
    parser.add_argument("--burst", type=int, default=1000)
    parser.add_argument("--latency", type=int, default=0, help="pods for the latency run")
    parser.add_argument("--rate", type=float, default=20.0, help="pods/s in the latency run")
    parser.add_argument("--json", action="store_true", help="print one JSON object at the end")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="wfsched-bench-") as scratch:
        workdir = Path(scratch)
        cluster = devcluster.DevCluster(
            workdir / "cluster",
            devcluster.ClusterOptions(
                metrics_server=False,
                kube_scheduler=True,
                kube_scheduler_qps=args.qps,
                kube_scheduler_burst=args.burst,
            ),
        )
        cluster.start(build_missing=True)
        try:
            started = time.monotonic()
            cluster.create_nodes(args.nodes, cpu="32", memory="256Gi", pods=110)
            print(f"{args.nodes} nodes ready in {time.monotonic() - started:.1f}s", flush=True)
            cfg = client.Configuration()
            config.load_kube_config(str(cluster.kubeconfig), client_configuration=cfg)
            cfg.connection_pool_maxsize = 32
            core = client.CoreV1Api(client.ApiClient(cfg))
            daemon = devcluster.LocalDaemon(
                str(cluster.kubeconfig),
                workdir,
                policy="fifo-roundrobin",
                qps=args.qps,
                burst=args.burst,
                bind_workers=16,
                lease={"enabled": False},
                log_level="warning",
            )
            cluster.stop_component("kube-scheduler")
            runners = {
                "wfsched": ("workflow-scheduler", daemon.start, daemon.stop),
                "kube-scheduler": (
                    "default-scheduler",
                    lambda: cluster.start_component("kube-scheduler"),
                    lambda: cluster.stop_component("kube-scheduler"),
                ),
            }
            results: dict[str, list[dict[str, float]]] = {"wfsched": [], "kube-scheduler": []}
            for round_no in range(args.rounds):
                order = ["wfsched", "kube-scheduler"]
                if round_no % 2:
                    order.reverse()
                for label in order:
                    name, start, stop = runners[label]
                    figures = throughput_run(core, name, args.pods, start=start, stop=stop)
                    results[label].append(figures)
                    print(
                        f"round {round_no + 1} {label:<15} {figures['pods_per_s']:8.1f} pods/s",
                        flush=True,
                    )
            latencies: dict[str, list[float]] = {}
            if args.latency:
                for label in ("wfsched", "kube-scheduler"):
                    name, start, stop = runners[label]
                    start()
                    try:
                        latencies[label] = latency_run(core, name, args.latency, args.rate)
                    finally:
                        stop()
                    lat = latencies[label]
                    print(
                        f"latency {label:<15} {len(lat)} pods at {args.rate:g}/s: "
                        f"p50 {lat[len(lat) // 2]:.3f}s p99 {lat[int(len(lat) * 0.99)]:.3f}s",
                        flush=True,
                    )
        finally:
            cluster.stop()
    ratios = [
        w["pods_per_s"] / k["pods_per_s"]
        for w, k in zip(results["wfsched"], results["kube-scheduler"], strict=True)
    ]
    summary: dict[str, Any] = {
        "pods": args.pods,
        "nodes": args.nodes,
        "rounds": args.rounds,
        "qps": args.qps,
        "burst": args.burst,
        "wfsched_pods_per_s_median": statistics.median(r["pods_per_s"] for r in results["wfsched"]),
        "kube_scheduler_pods_per_s_median": statistics.median(
            r["pods_per_s"] for r in results["kube-scheduler"]
        ),
        "throughput_ratio_median": statistics.median(ratios),
        "throughput_ratios": ratios,
    }
    for label, lat in latencies.items():
        summary[f"{label}_latency_p50_s"] = lat[len(lat) // 2]
        summary[f"{label}_latency_p99_s"] = lat[int(len(lat) * 0.99)]
    print(
        f"median throughput ratio wfsched/kube-scheduler: {summary['throughput_ratio_median']:.2f}"
        f" (per round: {', '.join(f'{r:.2f}' for r in ratios)})"
    )
    if args.json:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
