"""Leader failover under load: two replicas share a Lease; the leader is killed with SIGKILL
while pods keep arriving. Measures the gap in bindings (the kill to the standby's first
binding), checks the standby never bound before it, and that nothing is bound twice.
"""

from __future__ import annotations

import threading
import time

import pytest
from reliability_helpers import (
    CapacityMonitor,
    alive,
    assert_invariants,
    bound_log_lines,
    bound_timestamps,
    count_bound,
    count_succeeded,
    make_daemon,
    metric,
    pod_manifest,
    record,
    start_daemon,
    verify,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PODS = 300
RATE_PER_S = 20
BIND_WORKERS = 16
LEASE = {"duration_s": 4, "renew_deadline_s": 3, "retry_period_s": 1}


@pytest.mark.timeout(600)
def test_kill_9_of_the_leader_under_load(plane, tmp_path) -> None:
    namespace = plane.namespace("failover")
    nodes = plane.nodes(4, cpu="32", memory="64Gi")
    lease = {"enabled": True, "name": "wfsched", "namespace": namespace, **LEASE}
    daemons = [
        make_daemon(plane, tmp_path, namespace, lease=lease, bind_workers=BIND_WORKERS)
        for _ in range(2)
    ]
    for daemon in daemons:
        start_daemon(daemon)

    def leaders():
        return [d for d in daemons if alive(d) and metric(d.metrics(), "wfsched_leader") == 1.0]

    wait_until(lambda: len(leaders()) == 1, timeout_s=30, what="one leader")
    leader = leaders()[0]
    standby = daemons[1] if leader is daemons[0] else daemons[0]
    names = [f"load-{i:03d}" for i in range(PODS)]
    creation_error: list[BaseException] = []

    def create() -> None:
        try:
            for name in names:
                plane.core_v1.create_namespaced_pod(
                    namespace, pod_manifest(name, runtime="5s"), _preload_content=False
                )
                time.sleep(1 / RATE_PER_S)
        except BaseException as exc:
            creation_error.append(exc)

    creator = threading.Thread(target=create, name="creator", daemon=True)
    with CapacityMonitor(plane.core_v1, nodes, interval_s=0.5) as monitor:
        creator.start()
        wait_until(
            lambda: count_bound(plane.core_v1, namespace) >= PODS // 3,
            timeout_s=120,
            what=f"{PODS // 3} bound",
        )
        bound_before = count_bound(plane.core_v1, namespace)
        killed_at = time.time()
        leader.kill()
        creator.join(timeout=120)
        wait_until(
            lambda: count_succeeded(plane.core_v1, namespace) == PODS,
            timeout_s=180,
            what="every pod to succeed",
        )
        standby_metrics = standby.metrics()
        # The killed replica comes back and must stay a standby.
        start_daemon(leader)
        wait_until(lambda: alive(leader), timeout_s=30, what="the restarted replica")
        time.sleep(3)
    logs = [d.log_path for d in daemons]
    standby_binds = bound_timestamps([standby.log_path])
    gap = round(standby_binds[0] - killed_at, 2) if standby_binds else None
    verdict = verify(plane.core_v1, namespace, names, monitor, logs)
    restarted_is_standby = metric(leader.metrics(), "wfsched_leader") == 0.0
    both_alive = alive(leader) and alive(standby)
    by_leader = sum(len(v) for v in bound_log_lines([leader.log_path], namespace).values())
    for daemon in daemons:
        daemon.stop()
    record(
        "leader-failover",
        {
            "title": "kill -9 of the leader while pods arrive",
            "workflow": f"{PODS} pods (100m CPU, 5 s) created at {RATE_PER_S}/s",
            "cluster": f"{len(nodes)} KWOK nodes x 32 CPU; lease duration "
            f"{LEASE['duration_s']} s, renew deadline {LEASE['renew_deadline_s']} s, retry "
            f"{LEASE['retry_period_s']} s",
            "injected": f"SIGKILL of the leader after {bound_before} bindings",
            "injections": 1,
            "failover_gap_s": gap,
            "bound_by_old_leader": by_leader,
            "bound_by_new_leader": len(standby_binds),
            "new_leader_bound_before_the_kill": sum(1 for t in standby_binds if t < killed_at),
            "restarted_replica_is_standby": restarted_is_standby,
            "daemon_alive_at_end": both_alive,
            "verdict": verdict.summary(),
        },
    )
    assert not creation_error, creation_error
    assert gap is not None, "the standby never bound"
    assert all(t >= killed_at for t in standby_binds), "the standby bound while not leading"
    assert metric(standby_metrics, "wfsched_leader") == 1.0
    # The lease must expire (duration) and be taken at the next retry; generous on a slow box.
    assert gap < LEASE["duration_s"] + LEASE["retry_period_s"] + 10, gap
    assert restarted_is_standby
    assert both_alive
    assert_invariants(verdict, max_unattested=BIND_WORKERS, max_missing_events=None)
