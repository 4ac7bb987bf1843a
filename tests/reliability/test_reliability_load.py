"""Load: 10,000 pending pods on 1,000 KWOK nodes, on a control plane of their own.

The pods (100 workflow runs of 100 tasks) are created first, as fast as a thread pool can,
then the daemon starts with the whole backlog in front of it: it must bind every pod without
overcommitting a node or binding a pod twice, with its peak resident memory (``VmHWM``)
under a generous bound. Cycle times come from ``wfsched_scheduling_cycle_duration_seconds``.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from kubernetes import client, config
from reliability_helpers import (
    CapacityMonitor,
    alive,
    assert_invariants,
    bound_timestamps,
    count_bound,
    histogram,
    labelled,
    make_daemon,
    metric,
    peak_rss_bytes,
    pod_manifest,
    record,
    start_daemon,
    verify,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NODES = 1000
PODS = 10_000
RUNS = 100
RSS_LIMIT = int(1.5 * 2**30)


def _fast_client(kubeconfig: str) -> client.CoreV1Api:
    configuration = client.Configuration()
    config.load_kube_config(kubeconfig, client_configuration=configuration)
    configuration.connection_pool_maxsize = 16
    return client.CoreV1Api(client.ApiClient(configuration))


@pytest.mark.timeout(1500)
def test_ten_thousand_pending_pods_on_a_thousand_nodes(plane, tmp_path) -> None:
    started = time.monotonic()
    nodes = plane.nodes(NODES, cpu="4", memory="16Gi", pods=110, wait_ready_s=600)
    nodes_s = time.monotonic() - started
    namespace = plane.namespace("load")
    core = _fast_client(str(plane.cluster.kubeconfig))
    names = [f"t{i:05d}" for i in range(PODS)]

    def create(index: int) -> None:
        run = index % RUNS
        manifest = pod_manifest(
            names[index],
            labels={"wfsched.io/run-id": f"run-{run}", "wfsched.io/step": f"s{index // RUNS % 5}"},
        )
        for attempt in range(5):
            try:
                core.create_namespaced_pod(namespace, manifest, _preload_content=False)
                return
            except client.ApiException as exc:
                if exc.status == 409:
                    return
                if (exc.status != 429 and exc.status < 500) or attempt == 4:
                    raise
                time.sleep(0.5)

    created_at = time.monotonic()
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(create, range(PODS)))
    create_s = time.monotonic() - created_at

    daemon = make_daemon(plane, tmp_path, namespace)
    with CapacityMonitor(plane.core_v1, nodes, interval_s=5.0) as monitor:
        launched = time.monotonic()
        start_daemon(daemon, wait_ready_s=300)
        ready_s = time.monotonic() - launched
        wait_until(
            lambda: count_bound(plane.core_v1, namespace) >= PODS,
            timeout_s=900,
            interval_s=3.0,
            what=f"{PODS} pods bound",
        )
        bind_all_s = time.monotonic() - launched
        time.sleep(2)
    assert daemon.proc is not None
    peak_rss = peak_rss_bytes(daemon.proc.pid)
    metrics = daemon.metrics()
    is_alive = alive(daemon)
    daemon.stop()
    verdict = verify(
        plane.core_v1, namespace, names, monitor, [daemon.log_path], must_succeed=False
    )
    binds = bound_timestamps([daemon.log_path])
    cycles = histogram(metrics, "wfsched_scheduling_cycle_duration_seconds")
    latency = histogram(metrics, "wfsched_pod_scheduling_duration_seconds")
    binding = histogram(metrics, "wfsched_binding_duration_seconds")
    record(
        "load",
        {
            "title": "10,000 pending pods on 1,000 KWOK nodes",
            "workflow": f"{PODS} pods (100m CPU, 64 Mi) in {RUNS} runs, all pending before the "
            "daemon starts",
            "cluster": f"{NODES} KWOK nodes x 4 CPU / 16 GiB / 110 pods, private control plane",
            "injected": "load only",
            "injections": 0,
            "node_setup_s": round(nodes_s, 1),
            "pod_creation_s": round(create_s, 1),
            "pod_creation_rate_per_s": round(PODS / create_s, 1),
            "daemon_ready_s": round(ready_s, 1),
            "time_to_bind_all_s": round(bind_all_s, 1),
            "first_to_last_binding_s": round(binds[-1] - binds[0], 1) if binds else None,
            "bind_rate_per_s": round(len(binds) / max(binds[-1] - binds[0], 1e-3), 1)
            if binds
            else None,
            "peak_rss_bytes": peak_rss,
            "peak_rss_mib": round(peak_rss / 2**20, 1),
            "rss_limit_mib": RSS_LIMIT // 2**20,
            "cycles": cycles.__dict__,
            "pod_scheduling_latency": latency.__dict__,
            "binding_call": binding.__dict__,
            "scheduled": metric(metrics, "wfsched_schedule_attempts_total", 'result="scheduled"'),
            "bind_errors": labelled(metrics, "wfsched_bind_errors_total", "reason"),
            "events_by_outcome": labelled(metrics, "wfsched_events_total", "outcome"),
            "daemon_alive_at_end": is_alive,
            "verdict": verdict.summary(),
        },
    )
    assert is_alive
    assert verdict.bound == PODS
    assert peak_rss < RSS_LIMIT, f"peak RSS {peak_rss / 2**20:.0f} MiB"
    assert cycles.count > 0
    # Scheduled Events are dropped rather than delayed when their backlog (1,000) or their
    # rate limiter is full: reported (with their lag), not asserted, at this load.
    assert_invariants(verdict, max_missing_events=None)
