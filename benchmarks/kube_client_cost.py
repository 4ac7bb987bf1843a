"""Cost of ``scheduler.kube.client.KubeClient`` calls against a private local control plane.

Starts its own etcd + kube-apiserver + KWOK (no metrics-server) in a temporary directory,
creates fake nodes and unbound pods, then measures:

- ``list``: one paged LIST (page size 500) of all N pods, best of 3, with the raw-JSON path,
  and the share of it spent in ``json.loads`` (the only client-side decoding);
- ``bind``: per-call latency of ``KubeClient.bind`` at concurrency 1 and 8 (median, p90, p99)
  and the achieved binds/s, with client QPS/burst high enough not to throttle.

KWOK turns every bound pod Running, so the API server also absorbs those status writes, as it
would in a real cluster.

    .venv/bin/python benchmarks/kube_client_cost.py               # N=2000 pods, 2x100 binds
    .venv/bin/python benchmarks/kube_client_cost.py --pods 500 --binds 50
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from scheduler.devtools import devcluster
from scheduler.kube import client as kube_client


def _pod(name: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"wfsched.io/run-id": "bench"}},
        "spec": {
            "schedulerName": "wfsched-bench",
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "main",
                    "image": "busybox",
                    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                }
            ],
        },
    }


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pods", type=int, default=2000, help="pods to create and list")
    parser.add_argument("--binds", type=int, default=100, help="binds per concurrency level")
    parser.add_argument("--nodes", type=int, default=10, help="KWOK nodes")
    args = parser.parse_args()
    ns = "bench"
    with tempfile.TemporaryDirectory(prefix="wfsched-bench-") as tmp:
        cluster = devcluster.DevCluster(Path(tmp), devcluster.ClusterOptions(metrics_server=False))
        cluster.start(build_missing=False)
        try:
            nodes = cluster.create_nodes(args.nodes, cpu="1000", memory="4000Gi", pods=5000)
            admin = cluster.admin()
            admin.request("POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
            total = max(args.pods, 2 * args.binds)
            with ThreadPoolExecutor(8) as pool:
                created = list(
                    pool.map(
                        lambda i: admin.request(
                            "POST", f"/api/v1/namespaces/{ns}/pods", _pod(f"p{i:05d}")
                        )[1],
                        range(total),
                    )
                )
            uids = {p["metadata"]["name"]: p["metadata"]["uid"] for p in created}
            kube = kube_client.KubeClient.connect(
                str(cluster.kubeconfig), qps=5000, burst=5000, pool_size=8
            )
            list_times = []
            for _ in range(3):
                started = time.perf_counter()
                items, _ = kube.list_objects("pods", namespace=ns, page_size=500)
                list_times.append(time.perf_counter() - started)
            assert len(items) == total
            raw = json.dumps({"items": items}).encode()
            decode_times = []
            for _ in range(3):
                started = time.perf_counter()
                json.loads(raw)
                decode_times.append(time.perf_counter() - started)
            names = sorted(uids)
            result: dict[str, object] = {
                "pods_listed": total,
                "list_best_ms": round(min(list_times) * 1000, 1),
                "list_per_pod_ms": round(min(list_times) * 1000 / total, 4),
                "list_json_decode_ms": round(min(decode_times) * 1000, 1),
                "list_bytes": len(raw),
            }
            offset = 0
            for concurrency in (1, 8):
                batch = names[offset : offset + args.binds]
                offset += args.binds

                def bind(name: str) -> float:
                    node = nodes[hash(name) % len(nodes)]
                    t0 = time.perf_counter()
                    kube.bind(ns, name, uids[name], node)
                    return time.perf_counter() - t0

                started = time.perf_counter()
                with ThreadPoolExecutor(concurrency) as pool:
                    latencies = list(pool.map(bind, batch))
                wall = time.perf_counter() - started
                result[f"bind_c{concurrency}"] = {
                    "binds": len(batch),
                    "median_ms": round(statistics.median(latencies) * 1000, 2),
                    "p90_ms": round(_percentile(latencies, 0.9) * 1000, 2),
                    "p99_ms": round(_percentile(latencies, 0.99) * 1000, 2),
                    "binds_per_s": round(len(batch) / wall, 1),
                }
            result["requests_total"] = kube.requests_total
            print(json.dumps(result, indent=2))
            kube.close()
        finally:
            cluster.stop()


if __name__ == "__main__":
    main()
