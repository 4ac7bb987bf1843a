"""Crash and restart: ``kill -9`` the daemon several times while a 1,004-task workflow runs.

The workflow is bwa-chameleon-medium (1,000 parallel ``bwa`` tasks between an index and two
merges) replayed on 8 KWOK nodes of 4 CPUs, so hundreds of pods are pending at once and the
daemon binds continuously. A driver thread kills the daemon with SIGKILL at seeded points
(one in each quarter of the binding progress, so kills land in different phases), waits a
seeded pause and starts it again; the restarted process must re-list, pick up every pending
pod, never bind a pod twice, and the workflow must finish.
"""

from __future__ import annotations

import random
import threading
import time

import pytest
from reliability_helpers import (
    SCHED,
    WFINSTANCES,
    CapacityMonitor,
    PatientPodApi,
    alive,
    assert_invariants,
    bound_timestamps,
    count_bound,
    make_daemon,
    metric,
    record,
    start_daemon,
    verify,
)

from scheduler.devtools import replay, simulate

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SEED = 9
KILLS = 4
BIND_WORKERS = 16


def _bound(plane, namespace: str) -> int:
    try:
        return count_bound(plane.core_v1, namespace)
    except Exception:  # a slow list is retried at the next poll
        return -1


@pytest.mark.timeout(1200)
def test_kill_9_at_random_points_during_a_1000_task_workflow(plane, tmp_path) -> None:
    rng = random.Random(SEED)
    instance = simulate.load_instance(WFINSTANCES / "bwa-chameleon-medium-005.json")
    plan = replay.ReplayPlan.from_instance(
        instance, scheduler_name=SCHED, time_scale=0.2, run_id="bwa-crash"
    )
    total = len(plan.tasks)
    namespace = plane.namespace("crash")
    nodes = plane.nodes(8, cpu="4", memory="16Gi")
    daemon = make_daemon(
        plane, tmp_path, namespace, policy="rank_min-roundrobin", bind_workers=BIND_WORKERS
    )
    start_daemon(daemon)

    # One kill point in each quarter of the binding progress (seeded).
    span = (total - 40) // KILLS
    points = [20 + i * span + rng.randrange(span // 4, 3 * span // 4) for i in range(KILLS)]
    pauses = [round(rng.uniform(0.0, 3.0), 2) for _ in range(KILLS)]
    kills: list[dict] = []
    failure: list[BaseException] = []
    done = threading.Event()

    def killer() -> None:
        try:
            for point, pause in zip(points, pauses, strict=True):
                while (bound := _bound(plane, namespace)) < point:
                    if done.wait(0.5):
                        return
                assert daemon.proc is not None
                pid = daemon.proc.pid
                killed_at = time.time()
                daemon.kill()
                time.sleep(pause)
                start_daemon(daemon)
                kills.append(
                    {
                        "at_bound": bound,
                        "pid": pid,
                        "pause_s": pause,
                        "killed_at": killed_at,
                        "ready_after_s": round(time.time() - killed_at, 2),
                    }
                )
        except BaseException as exc:  # reported by the main thread
            failure.append(exc)

    thread = threading.Thread(target=killer, name="killer", daemon=True)
    started = time.monotonic()
    try:
        with CapacityMonitor(plane.core_v1, nodes, interval_s=1.0) as monitor:
            thread.start()
            result = replay.Replayer(plan, PatientPodApi(plane.core_v1), namespace=namespace).run(
                timeout_s=900
            )
    finally:
        done.set()
        thread.join(timeout=120)
    makespan = time.monotonic() - started
    metrics = daemon.metrics()
    is_alive = alive(daemon)
    verdict = verify(
        plane.core_v1, namespace, [t.pod_name for t in plan.tasks], monitor, [daemon.log_path]
    )
    binds = bound_timestamps([daemon.log_path])
    for kill in kills:
        after = [t for t in binds if t > kill["killed_at"]]
        kill["next_binding_after_s"] = round(after[0] - kill["killed_at"], 2) if after else None
        del kill["killed_at"]
    daemon.stop()
    record(
        "crash-restart",
        {
            "title": "kill -9 and restart during a 1,004-task workflow",
            "workflow": f"bwa-chameleon-medium-005 ({total} tasks), time scale 0.2",
            "cluster": f"{len(nodes)} KWOK nodes x 4 CPU / 16 GiB",
            "injected": f"SIGKILL of the daemon x{len(kills)} (seed {SEED}), restart after a "
            "seeded pause of 0-3 s",
            "injections": len(kills),
            "kills": kills,
            "makespan_s": round(makespan, 1),
            "workflow_succeeded": result.succeeded,
            "daemon_alive_at_end": is_alive,
            "last_process_bind_errors": metric(
                metrics, "wfsched_schedule_attempts_total", 'result="error"'
            ),
            "verdict": verdict.summary(),
        },
    )
    assert not failure, failure
    assert len(kills) == KILLS
    assert result.succeeded == total
    assert is_alive
    # A kill right after a Binding call succeeded loses its log record (and its best-effort
    # Event): at most the binds in flight, bind_workers per kill. Events queued behind other
    # side effects are lost with the process too: reported (missing_events), not asserted.
    assert_invariants(verdict, max_unattested=KILLS * BIND_WORKERS, max_missing_events=None)
