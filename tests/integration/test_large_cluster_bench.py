"""``benchmarks/large_cluster.py`` at a small size, end to end: its figures are sane.

The real control plane with kube-scheduler, the real daemon as a subprocess, one round of each
(wfsched first): every pod is bound, and throughput, CPU seconds per 1,000 bindings, RSS and
the API server's CPU are positive, finite and of a plausible size, and the API server counted
a Binding for every pod.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from benchmarks import large_cluster
from tests.support import controlplane

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]

NODES = 30
PODS = 400


def test_small_large_cluster_run_gives_sane_figures(tmp_path: Path) -> None:
    size = large_cluster.Size(
        nodes=NODES, pods=PODS, rounds=1, qps=200, burst=400, policy="rank_min-roundrobin"
    )
    with controlplane.running_cluster(
        tmp_path / "cluster",
        metrics_server=False,
        kube_scheduler=True,
        kube_scheduler_qps=size.qps,
        kube_scheduler_burst=size.burst,
    ) as cluster:
        cluster.create_nodes(NODES, cpu="32", memory="256Gi", pods=110)
        summary = large_cluster.run_rounds(cluster, tmp_path, size)

    runs = summary["runs"]
    assert [(r["round"], r["scheduler"]) for r in runs] == [
        (1, "wfsched"),
        (1, "kube-scheduler"),
    ]
    for run in runs:
        label = run["scheduler"]
        assert run["pods"] == PODS
        # 400 pods on 30 idle nodes: neither scheduler takes more than 10 minutes or binds
        # faster than the API server could write (well under 100,000 pods/s).
        assert 0.5 < run["pods_per_s"] < 100_000, label
        assert 0 < run["start_to_last_bind_s"] < 600, label
        assert run["cpu_s"] > 0, label
        assert run["cpu_s_per_1000_binds"] == pytest.approx(run["cpu_s"] * 1000 / PODS)
        assert 10 * 2**20 < run["rss_bytes"] <= run["peak_rss_bytes"] < 2**30, label
        assert run["apiserver_cpu_s"] > 0, label
        # The API server's own count: every pod was bound by one Binding (a retried one more).
        served = {kind: count for kind, count, _ in run["apiserver_requests"]}
        assert served.get("POST pods/binding", 0) >= PODS, (label, served)
    (ratio,) = summary["throughput_ratios"]
    assert math.isfinite(ratio) and ratio > 0
    assert ratio == pytest.approx(runs[0]["pods_per_s"] / runs[1]["pods_per_s"])
    assert summary["nodes"] == NODES and summary["commit"]
