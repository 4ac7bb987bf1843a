"""Control-plane faults while a workflow runs, each on a private control plane.

* kube-apiserver crashes (SIGKILL) and comes back; later etcd and kube-apiserver are both
  stopped (SIGTERM) and started again: the daemon's informers must re-list and the workflow
  finish;
* a forced 410: kube-apiserver is killed, a pending pod is deleted directly in etcd and etcd
  is compacted, so the daemon's watch resumes from a version that no longer exists; it must
  re-list, notice the pod is gone (and drop it from its queue), and go on;
* pods deleted while pending: a seeded random subset of the pending pods is deleted in three
  waves; the daemon must drop them without an error loop and bind all the others;
* bindings refused by a ValidatingAdmissionPolicy for a while, and pods bound under the daemon
  by another binder (409 Conflict): the daemon must retry the refused ones and bind each pod
  once.

The daemon runs without leader election here (one replica): an outage longer than the renew
deadline makes a leader exit by design (``test_reliability_failover`` covers the lease).
"""

from __future__ import annotations

import base64
import itertools
import json
import random
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from kubernetes import client
from reliability_helpers import (
    SCHED,
    WFINSTANCES,
    CapacityMonitor,
    ControlPlane,
    PatientPodApi,
    alive,
    assert_invariants,
    bound_log_lines,
    bound_timestamps,
    count_bound,
    count_log_events,
    count_succeeded,
    events_by_reason,
    labelled,
    list_pods,
    make_daemon,
    metric,
    metric_sum,
    pod_manifest,
    record,
    start_component_retrying,
    start_daemon,
    verify,
    wait_until,
)

from scheduler.devtools import replay, simulate
from tests.support import controlplane

pytestmark = [pytest.mark.integration, pytest.mark.slow]


class FaultDriver(threading.Thread):
    """Runs ``(threshold, action)`` steps in order: each fires once ``threshold`` pods of the
    namespace are bound. Records what it did; an exception is kept for the main thread."""

    def __init__(self, plane: ControlPlane, namespace: str, steps) -> None:
        super().__init__(name="faults", daemon=True)
        self.plane = plane
        self.namespace = namespace
        self.steps = steps
        self.done = threading.Event()
        self.log: list[dict] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for threshold, name, action in self.steps:
                while True:
                    try:
                        bound = count_bound(self.plane.core_v1, self.namespace)
                    except Exception:
                        bound = -1
                    if bound >= threshold:
                        break
                    if self.done.wait(0.5):
                        return
                began = time.time()
                details = action() or {}
                self.log.append(
                    {
                        "fault": name,
                        "at_bound": bound,
                        "began": began,
                        "ended": time.time(),
                        "duration_s": round(time.time() - began, 2),
                        **details,
                    }
                )
        except BaseException as exc:
            self.error = exc


def _pause_around(binds: list[float], began: float, ended: float) -> float | None:
    """Longest gap between consecutive bindings that overlaps the fault window."""
    gaps = [b - a for a, b in itertools.pairwise(binds) if b >= began and a <= ended]
    return round(max(gaps), 2) if gaps else None


def _replay_with_faults(plane, tmp_path, *, instance_file, time_scale, nodes, steps_for):
    instance = simulate.load_instance(WFINSTANCES / instance_file)
    plan = replay.ReplayPlan.from_instance(instance, scheduler_name=SCHED, time_scale=time_scale)
    namespace = plane.namespace("fault")
    node_names = plane.nodes(nodes, cpu="4", memory="16Gi")
    daemon = make_daemon(plane, tmp_path, namespace, policy="rank_min-roundrobin")
    start_daemon(daemon)
    driver = FaultDriver(plane, namespace, steps_for(plan, namespace, daemon))
    api = PatientPodApi(plane.core_v1, patience_s=300)
    started = time.monotonic()
    try:
        with CapacityMonitor(plane.core_v1, node_names, interval_s=1.0) as monitor:
            driver.start()
            progress = replay.Replayer(plan, api, namespace=namespace).run(timeout_s=600)
    finally:
        driver.done.set()
        driver.join(timeout=180)
    makespan = time.monotonic() - started
    return plan, namespace, daemon, driver, monitor, progress, makespan, api


# --- kube-apiserver, then etcd + kube-apiserver --------------------------------------------------


@pytest.mark.timeout(900)
def test_apiserver_and_etcd_restarts_mid_workflow(private_plane, tmp_path) -> None:
    plane = private_plane

    def steps(plan, namespace, daemon):
        total = len(plan.tasks)
        return [
            (
                total // 4,
                "kube-apiserver SIGKILL, restarted after 5 s",
                lambda: {
                    "outage_s": round(
                        plane.restart("kube-apiserver", sig=signal.SIGKILL, down_s=5), 2
                    )
                },
            ),
            (
                total * 3 // 5,
                "kube-apiserver + etcd SIGTERM, restarted after 5 s",
                lambda: {"outage_s": round(plane.restart("etcd", "kube-apiserver", down_s=5), 2)},
            ),
        ]

    plan, namespace, daemon, driver, monitor, progress, makespan, api = _replay_with_faults(
        plane,
        tmp_path,
        instance_file="cycles-chameleon-5l-1c-9p-001.json",
        time_scale=0.1,
        nodes=6,
        steps_for=steps,
    )
    is_alive = alive(daemon)
    metrics = daemon.metrics()
    logs = [daemon.log_path]
    verdict = verify(plane.core_v1, namespace, [t.pod_name for t in plan.tasks], monitor, logs)
    binds = bound_timestamps(logs)
    faults = []
    for entry in driver.log:
        entry["binding_pause_s"] = _pause_around(binds, entry.pop("began"), entry.pop("ended"))
        faults.append(entry)
    daemon.stop()
    record(
        "apiserver-restarts",
        {
            "title": "kube-apiserver crash, then etcd + kube-apiserver restart, mid-workflow",
            "workflow": f"cycles-chameleon-5l-1c-9p-001 ({len(plan.tasks)} tasks), time scale 0.1",
            "cluster": "6 KWOK nodes x 4 CPU / 16 GiB, private control plane",
            "injected": "; ".join(f["fault"] for f in faults),
            "injections": len(faults),
            "faults": faults,
            "makespan_s": round(makespan, 1),
            "workflow_succeeded": progress.succeeded,
            "daemon_alive_at_end": is_alive,
            "informer_errors_logged": count_log_events(logs, "informer error; backing off"),
            "informer_relists_logged": count_log_events(logs, "relist diff applied"),
            "watch_expired_logged": count_log_events(logs, "watch expired; listing again"),
            "watch_restarts_metric": metric_sum(metrics, "wfsched_watch_restarts_total"),
            "bind_errors": labelled(metrics, "wfsched_bind_errors_total", "reason"),
            "test_client_retries": api.retries,
            "verdict": verdict.summary(),
        },
    )
    assert driver.error is None, driver.error
    assert len(faults) == 2, driver.log
    assert progress.succeeded == len(plan.tasks)
    assert count_log_events(logs, "informer error; backing off") >= 1, "the faults went unseen"
    assert is_alive, daemon.log_tail()
    assert count_log_events(logs, "event handling failed") == 0
    # Binds just before an outage may lose their best-effort Event: reported, not asserted.
    assert_invariants(verdict, max_missing_events=None)


# --- forced 410 -------------------------------------------------------------------------------


def _unschedulable(plane: ControlPlane, namespace: str, name: str) -> bool:
    pod = plane.core_v1.read_namespaced_pod(name, namespace, _preload_content=False)
    conditions = json.loads(pod.data)["status"].get("conditions") or []
    return any(
        c["type"] == "PodScheduled" and c.get("reason") == "Unschedulable" for c in conditions
    )


@pytest.mark.timeout(900)
def test_forced_410_relists_and_drops_a_pod_deleted_behind_its_back(
    private_plane, tmp_path
) -> None:
    plane = private_plane
    ghost = "ghost"

    def steps(plan, namespace, daemon):
        # Pending for ever (asks for more CPU than any node has): the daemon holds it in its
        # queue as unschedulable. It disappears while the daemon cannot watch.
        plane.core_v1.create_namespaced_pod(namespace, pod_manifest(ghost, cpu="64"))

        def cut_watch() -> dict:
            wait_until(
                lambda: _unschedulable(plane, namespace, ghost),
                timeout_s=60,
                what="the daemon to report the ghost pod unschedulable",
            )
            plane.cluster.stop_component("kube-apiserver", sig=signal.SIGKILL)
            key = base64.b64encode(f"/registry/pods/{namespace}/{ghost}".encode()).decode()
            deleted = controlplane.etcd_post(plane.cluster, "/v3/kv/deleterange", {"key": key})
            assert deleted["deleted"] == "1", deleted
            revision = deleted["header"]["revision"]
            controlplane.etcd_post(
                plane.cluster, "/v3/kv/compaction", {"revision": revision, "physical": True}
            )
            time.sleep(2)
            start_component_retrying(plane.cluster, "kube-apiserver")
            return {"compacted_at_revision": int(revision)}

        return [
            (len(plan.tasks) // 3, "kube-apiserver SIGKILL + etcd delete + compaction", cut_watch)
        ]

    plan, namespace, daemon, driver, monitor, progress, makespan, api = _replay_with_faults(
        plane,
        tmp_path,
        instance_file="cycles-chameleon-5l-1c-9p-001.json",
        time_scale=0.1,
        nodes=4,
        steps_for=steps,
    )
    logs = [daemon.log_path]

    def queue_empty() -> bool:
        return metric_sum(daemon.metrics(), "wfsched_pending_tasks") == 0

    # A safety cycle refreshes the queue gauges at least every cycle_interval_s (10 s).
    deadline = time.monotonic() + 45
    while not (queue_drained := queue_empty()) and time.monotonic() < deadline:
        time.sleep(1)
    metrics = daemon.metrics()
    is_alive = alive(daemon)
    verdict = verify(plane.core_v1, namespace, [t.pod_name for t in plan.tasks], monitor, logs)
    expired = count_log_events(logs, "watch expired; listing again")
    daemon.stop()
    record(
        "forced-410",
        {
            "title": "watch cut with 410 Gone (resourceVersion compacted away) mid-workflow",
            "workflow": f"cycles-chameleon-5l-1c-9p-001 ({len(plan.tasks)} tasks), time scale 0.1",
            "cluster": "4 KWOK nodes x 4 CPU / 16 GiB, private control plane",
            "injected": "kube-apiserver SIGKILL; a pending pod deleted in etcd; etcd compacted; "
            "kube-apiserver restarted",
            "injections": len(driver.log),
            "faults": [
                {k: v for k, v in f.items() if k not in ("began", "ended")} for f in driver.log
            ],
            "makespan_s": round(makespan, 1),
            "workflow_succeeded": progress.succeeded,
            "daemon_alive_at_end": is_alive,
            "watch_expired_logged": expired,
            "watch_restarts_metric": metric_sum(metrics, "wfsched_watch_restarts_total"),
            "informer_relists_logged": count_log_events(logs, "relist diff applied"),
            "deleted_pod_dropped_from_queue": queue_drained,
            "pending_tasks_at_end": metric_sum(metrics, "wfsched_pending_tasks"),
            "test_client_retries": api.retries,
            "verdict": verdict.summary(),
        },
    )
    assert driver.error is None, driver.error
    assert len(driver.log) == 1
    assert progress.succeeded == len(plan.tasks)
    assert is_alive, daemon.log_tail()
    assert expired >= 1, "the daemon's watch never saw the 410"
    assert queue_drained, f"the deleted pod is still queued: {metrics}"
    assert count_log_events(logs, "event handling failed") == 0
    assert_invariants(verdict, max_missing_events=None)


# --- pods deleted while pending -------------------------------------------------------------------


@pytest.mark.timeout(600)
def test_pending_pods_deleted_at_random_are_dropped_without_an_error_loop(
    private_plane, tmp_path
) -> None:
    plane = private_plane
    rng = random.Random(17)
    namespace = plane.namespace("delete")
    nodes = plane.nodes(3, cpu="4", memory="16Gi")
    daemon = make_daemon(plane, tmp_path, namespace, policy="fifo-roundrobin")
    start_daemon(daemon)
    names = [f"p{i:03d}" for i in range(240)]
    deleted: list[str] = []
    waves: list[dict] = []

    def create(name: str) -> None:
        plane.core_v1.create_namespaced_pod(
            namespace, pod_manifest(name, cpu="1", runtime="2s"), _preload_content=False
        )

    def deleter() -> None:
        for threshold in (30, 90, 150):
            wait_until(
                lambda t=threshold: count_bound(plane.core_v1, namespace) >= t,
                timeout_s=180,
                what=f"{threshold} bound",
            )
            pending = sorted(
                p["metadata"]["name"]
                for p in list_pods(plane.core_v1, namespace, field_selector="spec.nodeName=")
                if not p["metadata"].get("deletionTimestamp")
            )
            victims = rng.sample(pending, min(len(pending), 20))
            for name in victims:
                plane.core_v1.delete_namespaced_pod(name, namespace, grace_period_seconds=0)
            deleted.extend(victims)
            waves.append(
                {
                    "at_bound": count_bound(plane.core_v1, namespace),
                    "pending": len(pending),
                    "deleted": len(victims),
                }
            )

    with CapacityMonitor(plane.core_v1, nodes, interval_s=0.5) as monitor:
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(create, names))
            deletion = pool.submit(deleter)
            deletion.result(timeout=400)
        survivors = [n for n in names if n not in set(deleted)]
        wait_until(
            lambda: count_succeeded(plane.core_v1, namespace) >= len(survivors),
            timeout_s=300,
            what="every surviving pod to succeed",
        )
    logs = [daemon.log_path]
    wait_until(
        lambda: metric_sum(daemon.metrics(), "wfsched_pending_tasks") == 0,
        timeout_s=45,
        what="the daemon's queue to drain",
    )
    time.sleep(3)  # an error loop would keep logging after the queue drained
    metrics = daemon.metrics()
    failed_binds = count_log_events(logs, "bind failed")
    errors = metric(metrics, "wfsched_schedule_attempts_total", 'result="error"')
    verdict = verify(plane.core_v1, namespace, survivors, monitor, logs)
    still_there = {p["metadata"]["name"] for p in list_pods(plane.core_v1, namespace)}
    is_alive = alive(daemon)
    daemon.stop()
    record(
        "deleted-while-pending",
        {
            "title": "pending pods deleted at random while the daemon schedules",
            "workflow": f"{len(names)} independent pods (1 CPU, 2 s) on 12 CPU slots",
            "cluster": "3 KWOK nodes x 4 CPU / 16 GiB",
            "injected": f"{len(deleted)} pending pods deleted in {len(waves)} waves (seed 17)",
            "injections": len(deleted),
            "waves": waves,
            "bind_errors": labelled(metrics, "wfsched_bind_errors_total", "reason"),
            "bind_failures_logged": failed_binds,
            "daemon_alive_at_end": is_alive,
            "verdict": verdict.summary(),
        },
    )
    assert len(deleted) >= 30
    assert not (set(deleted) & still_there), "a deleted pod came back"
    assert is_alive, daemon.log_tail()
    # At most one failed bind per deleted pod (a pod deleted while its Binding was in flight);
    # an error loop would retry the same dead pod.
    assert failed_binds <= len(deleted), failed_binds
    assert errors <= len(deleted), errors
    assert count_log_events(logs, "event handling failed") == 0
    assert_invariants(verdict)


# --- bindings denied by admission and taken by another binder -------------------------------------


def _deny_bindings(plane: ControlPlane, name: str, namespace: str, allowed_node: str) -> None:
    """A ValidatingAdmissionPolicy refusing every Binding in ``namespace`` except onto
    ``allowed_node`` (the other binder's node)."""
    admission = client.AdmissionregistrationV1Api(plane.api_client)
    admission.create_validating_admission_policy(
        {
            "metadata": {"name": name},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": namespace}
                    },
                    "resourceRules": [
                        {
                            "apiGroups": [""],
                            "apiVersions": ["v1"],
                            "operations": ["CREATE"],
                            # the daemon's pods/{name}/binding, and the older bindings
                            "resources": ["pods/binding", "bindings"],
                        }
                    ],
                },
                "validations": [
                    {
                        "expression": f"object.target.name == '{allowed_node}'",
                        "message": "bindings are frozen by the reliability test",
                        "reason": "Forbidden",
                    }
                ],
            },
        }
    )
    admission.create_validating_admission_policy_binding(
        {"metadata": {"name": name}, "spec": {"policyName": name, "validationActions": ["Deny"]}}
    )


def _rejections_reported(plane: ControlPlane, namespace: str) -> int:
    """FailedScheduling Warnings that name a rejected Binding."""
    return sum(
        "rejected" in (e.get("message") or "")
        for e in events_by_reason(plane.core_v1, namespace, "FailedScheduling")
    )


def _allow_bindings(plane: ControlPlane, name: str) -> None:
    admission = client.AdmissionregistrationV1Api(plane.api_client)
    admission.delete_validating_admission_policy_binding(name)
    admission.delete_validating_admission_policy(name)


@pytest.mark.timeout(600)
def test_denied_and_stolen_bindings_are_retried_and_never_doubled(plane, tmp_path) -> None:
    """Bindings refused by an admission policy for a while, and pods bound under the daemon by
    another binder (its Binding calls then meet 409 Conflict): every pod ends bound once."""
    rng = random.Random(23)
    namespace = plane.namespace("denied")
    nodes = plane.nodes(3, cpu="4", memory="16Gi")
    # The other binder's node: tainted so wfsched never picks it, large so it never fills.
    rogue_node = plane.nodes(
        1,
        cpu="1000",
        memory="4000Gi",
        pods=1000,
        prefix=f"rogue-{namespace}-",
        taints=[{"key": "reliability/rogue", "value": "1", "effect": "NoSchedule"}],
    )[0]
    policy = f"deny-bindings-{namespace}"
    _deny_bindings(plane, policy, namespace, rogue_node)
    # Admission policies reach the API server's cache asynchronously: wait until one applies.
    probes = itertools.count()

    def probe() -> bool:
        name = f"probe-{next(probes)}"
        plane.core_v1.create_namespaced_pod(
            namespace, pod_manifest(name, scheduler_name="nobody"), _preload_content=False
        )
        status = controlplane.bind_pod(plane.core_v1, namespace, name, nodes[0])
        plane.core_v1.delete_namespaced_pod(name, namespace, grace_period_seconds=0)
        return status == 403

    wait_until(probe, timeout_s=60, what="the policy to apply", interval_s=1.0)

    daemon = make_daemon(plane, tmp_path, namespace, policy="fifo-roundrobin")
    start_daemon(daemon)
    names = [f"p{i:03d}" for i in range(120)]
    stolen: list[str] = []
    races_lost: list[str] = []
    stop_rogue = threading.Event()

    def rogue() -> None:
        while not stop_rogue.is_set() and len(stolen) < 25:
            pending = [
                p["metadata"]["name"]
                for p in list_pods(plane.core_v1, namespace, field_selector="spec.nodeName=")
            ]
            for name in rng.sample(pending, min(3, len(pending))):
                status = controlplane.bind_pod(plane.core_v1, namespace, name, rogue_node)
                (stolen if status == 201 else races_lost).append(name)
            stop_rogue.wait(0.3)

    deny_s = 8.0
    with CapacityMonitor(plane.core_v1, [*nodes, rogue_node], interval_s=0.5) as monitor:
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(
                pool.map(
                    lambda n: plane.core_v1.create_namespaced_pod(
                        namespace, pod_manifest(n, cpu="1", runtime="2s"), _preload_content=False
                    ),
                    names,
                )
            )
        rogue_thread = threading.Thread(target=rogue, daemon=True)
        rogue_thread.start()
        time.sleep(deny_s)
        bound_while_denied = len(
            [
                p
                for p in list_pods(plane.core_v1, namespace, field_selector="spec.nodeName!=")
                if p["spec"]["nodeName"] != rogue_node
            ]
        )
        denied_binds = count_log_events([daemon.log_path], "bind failed")
        _allow_bindings(plane, policy)
        allowed_at = time.monotonic()
        wait_until(
            lambda: count_succeeded(plane.core_v1, namespace) >= len(names),
            timeout_s=300,
            what="every pod to succeed",
        )
        stop_rogue.set()
        rogue_thread.join(10)
    logs = [daemon.log_path]
    metrics = daemon.metrics()
    # The verdict covers the daemon's pods; the other binder's are checked on their own below.
    ours = [n for n in names if n not in set(stolen)]
    verdict = verify(plane.core_v1, namespace, ours, monitor, logs)
    daemon_bound = bound_log_lines(logs, namespace)
    on_rogue = {
        p["metadata"]["name"]
        for p in list_pods(plane.core_v1, namespace)
        if p["spec"].get("nodeName") == rogue_node and p["status"].get("phase") == "Succeeded"
    }
    is_alive = alive(daemon)
    daemon.stop()
    record(
        "denied-and-stolen-bindings",
        {
            "title": "bindings refused by admission, and pods bound by another binder",
            "workflow": f"{len(names)} independent pods (1 CPU, 2 s) on 12 CPU slots; the "
            f"verdict covers the {len(ours)} the other binder left to the daemon",
            "cluster": "3 KWOK nodes x 4 CPU / 16 GiB, and a tainted node of another binder",
            "injected": f"a ValidatingAdmissionPolicy denying every Binding for {deny_s:.0f} s; "
            f"another binder binding {len(stolen)} pending pods under the daemon",
            "injections": 1 + len(stolen),
            "bound_while_denied": bound_while_denied,
            "bind_failures_while_denied": denied_binds,
            "stolen_pods": len(stolen),
            "other_binder_races_lost": len(races_lost),
            "bind_errors": labelled(metrics, "wfsched_bind_errors_total", "reason"),
            "seconds_from_allow_to_done": round(time.monotonic() - allowed_at, 1),
            "daemon_alive_at_end": is_alive,
            "verdict": verdict.summary(),
        },
    )
    assert len(daemon_bound) == len(names) - len(stolen)
    assert bound_while_denied == 0
    assert denied_binds > 0, "no Binding call was refused: the policy did not apply"
    assert stolen, "the other binder bound nothing"
    # A pod the other binder took has no successful Binding of the daemon's.
    assert not set(stolen) & set(daemon_bound), set(stolen) & set(daemon_bound)
    assert _rejections_reported(plane, namespace), "no FailedScheduling Warning for a refusal"
    assert is_alive, daemon.log_tail()
    assert count_log_events(logs, "event handling failed") == 0
    assert on_rogue == set(stolen), "a pod the other binder bound moved or did not finish"
    assert_invariants(verdict)
