"""The scheduling loop's bookkeeping, driven by synthetic watch events and a fake API.

(The real API server runs in tests/integration/test_daemon_*.py; here only the loop's logic.)
"""

import threading
import time

import pytest

from scheduler import registry
from scheduler.runtime import loop as loop_mod
from scheduler.runtime import metrics
from scheduler.runtime.settings import Settings


class FakeKube:
    def __init__(self, fail=None):
        self.binds = []
        self.conditions = []
        self.events = []
        self.fail = fail or {}
        self.lock = threading.Lock()

    def bind(self, namespace, name, uid, node):
        status = self.fail.pop(name, None)
        if status:
            err = RuntimeError(f"HTTP {status}")
            err.http_status = status
            raise err
        with self.lock:
            self.binds.append((name, node))

    def set_pod_condition(self, namespace, name, condition):
        self.conditions.append((name, condition))

    def create_event(self, **kwargs):
        self.events.append(kwargs)

    def get_configmap(self, namespace, name):
        return None


def node(name, cpu="4", memory="8Gi"):
    return {
        "metadata": {"name": name, "labels": {}},
        "spec": {},
        "status": {
            "allocatable": {"cpu": cpu, "memory": memory, "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def pod(
    name,
    *,
    cpu="1",
    node_name=None,
    phase="Pending",
    labels=None,
    annotations=None,
    scheduler="workflow-scheduler",
):
    spec = {
        "schedulerName": scheduler,
        "containers": [{"name": "c", "resources": {"requests": {"cpu": cpu, "memory": "1Gi"}}}],
    }
    if node_name:
        spec["nodeName"] = node_name
    return {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": f"uid-{name}",
            "labels": labels or {},
            "annotations": annotations or {},
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "spec": spec,
        "status": {"phase": phase},
    }


def make_loop(kube, policy="fifo-roundrobin"):
    return loop_mod.SchedulerLoop(
        settings=Settings(bind_workers=2),
        kube=kube,
        policies=registry.parse_strategy(policy).build(),
        metrics=metrics.Metrics(),
    )


def settle(loop, kube, expected_binds, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        loop._drain()
        if loop.stats.binds_ok >= expected_binds:
            return
        time.sleep(0.01)
    raise AssertionError(f"only {kube.binds} bound")


def test_binds_in_ranked_order_and_respects_capacity():
    kube = FakeKube()
    loop = make_loop(kube)
    loop._handle(("nodes", "ADDED", node("n1", cpu="2")))
    for i in range(3):
        loop._handle(("pods", "ADDED", pod(f"p{i}")))
    loop._handle(("pods", "ADDED", pod("other", scheduler="default-scheduler")))
    loop.run_one_cycle()
    settle(loop, kube, 2)
    assert [b[0] for b in kube.binds] == ["p0", "p1"]
    # p2 did not fit: it stays queued and is reported unschedulable once.
    assert [t.key.task for t in loop.queue.tasks()] == ["p2"]
    time.sleep(0.1)
    assert kube.conditions and kube.conditions[0][1]["reason"] == "Unschedulable"
    assert any(e["reason"] == "FailedScheduling" for e in kube.events)
    # The watch confirms p0 and p1 on n1, then p0 finishes: p2 fits now.
    loop._handle(("pods", "MODIFIED", pod("p0", node_name="n1", phase="Running")))
    loop._handle(("pods", "MODIFIED", pod("p1", node_name="n1", phase="Running")))
    loop.run_one_cycle()
    assert len(kube.binds) == 2
    loop._handle(("pods", "MODIFIED", pod("p0", node_name="n1", phase="Succeeded")))
    loop.run_one_cycle()
    settle(loop, kube, 3)
    assert kube.binds[-1] == ("p2", "n1")


def test_assumed_pods_are_not_double_booked_before_the_watch_confirms():
    kube = FakeKube()
    loop = make_loop(kube)
    loop._handle(("nodes", "ADDED", node("n1", cpu="1")))
    loop._handle(("pods", "ADDED", pod("a")))
    loop.run_one_cycle()
    loop._handle(("pods", "ADDED", pod("b")))
    loop.run_one_cycle()  # a is assumed on n1 though no watch event confirmed it yet
    settle(loop, kube, 1)
    assert kube.binds == [("a", "n1")]


@pytest.mark.parametrize("status", [409, 403, 500])
def test_failed_bind_forgets_and_requeues_with_backoff(status):
    kube = FakeKube(fail={"a": status})
    loop = make_loop(kube)
    loop._handle(("nodes", "ADDED", node("n1", cpu="1")))
    loop._handle(("pods", "ADDED", pod("a")))
    loop.run_one_cycle()
    deadline = time.monotonic() + 5
    while not loop.stats.binds_failed and time.monotonic() < deadline:
        loop._drain()
        time.sleep(0.01)
    assert [t.key.task for t in loop.queue.tasks()] == ["a"]
    assert loop.queue.backing_off(loop.queue.tasks()[0].key, loop.clock())
    assert loop.cache.snapshot().requested_on("n1").cpu_millis == 0
    loop.shutdown()
    # A refusal is reported on the pod; a conflict (somebody else bound it) is not.
    warned = [e for e in kube.events if e["reason"] == "FailedScheduling"]
    if status == 409:
        assert warned == []
    else:
        assert len(warned) == 1 and f"rejected ({status})" in warned[0]["note"]


def test_404_on_bind_drops_the_task():
    kube = FakeKube(fail={"a": 404})
    loop = make_loop(kube)
    loop._handle(("nodes", "ADDED", node("n1")))
    loop._handle(("pods", "ADDED", pod("a")))
    loop.run_one_cycle()
    deadline = time.monotonic() + 5
    while not loop.stats.binds_failed and time.monotonic() < deadline:
        loop._drain()
        time.sleep(0.01)
    assert len(loop.queue) == 0


def test_deleted_pending_pod_leaves_the_queue_at_once():
    loop = make_loop(FakeKube())
    loop._handle(("pods", "ADDED", pod("a")))
    assert len(loop.queue) == 1
    loop._handle(("pods", "DELETED", pod("a")))
    assert len(loop.queue) == 0


def test_malformed_annotations_still_schedule_and_warn():
    kube = FakeKube()
    loop = make_loop(kube)
    loop._handle(("nodes", "ADDED", node("n1")))
    loop._handle(
        (
            "pods",
            "ADDED",
            pod(
                "a",
                labels={"wfsched.io/run-id": "r"},
                annotations={"wfsched.io/input-size": "huge"},
            ),
        )
    )
    loop.run_one_cycle()
    settle(loop, kube, 1)
    time.sleep(0.1)
    assert any(e["reason"] == "InvalidWorkflowMetadata" for e in kube.events)


def test_garbage_events_are_refused_by_their_handlers_not_by_the_catch_all():
    kube = FakeKube()
    loop = make_loop(kube)
    for junk in [
        ("pods", "ADDED", {}),
        ("pods", "ADDED", {"metadata": 3}),
        ("nodes", "ADDED", {}),
        (
            "pods",
            "ADDED",
            {
                "metadata": {"name": "x", "namespace": "n", "uid": "u"},
                "spec": {
                    "schedulerName": "workflow-scheduler",
                    "containers": "nope",
                    "tolerations": 5,
                },
            },
        ),
        ("weird",),
        None,
    ]:
        loop._handle(junk)
    # Each piece of junk is refused where it is read; none reaches _handle's catch-all, which
    # only exists so that a defect cannot stop scheduling (and counts when it does).
    assert loop.stats.handler_errors == 0
    assert loop.metrics.event_handling_errors._value.get() == 0
    loop.run_one_cycle()
    # The pod with a well-formed identity but broken spec is known and reported, not dropped.
    assert loop.state.pods["u"].problems_reported
    loop._handle(("nodes", "ADDED", node("n1")))
    loop._handle(("pods", "ADDED", pod("good")))
    loop.run_one_cycle()
    settle(loop, kube, 2)  # the broken pod requests nothing: it is scheduled too
    assert sorted(kube.binds) == [("good", "n1"), ("x", "n1")]


def test_the_catch_all_counts_a_handler_that_raises():
    loop = make_loop(FakeKube())

    class Exploding:
        def apply(self, loop):
            raise RuntimeError("boom")

    loop._handle(Exploding())
    assert loop.stats.handler_errors == 1
    assert loop.metrics.event_handling_errors._value.get() == 1


def test_finished_pods_count_towards_their_step():
    loop = make_loop(FakeKube(), policy="gs_min")
    labels = {"wfsched.io/run-id": "r", "wfsched.io/step": "s"}
    done = pod("d", node_name="n1", phase="Succeeded", labels=labels)
    loop._handle(("pods", "ADDED", done))
    loop._handle(("pods", "MODIFIED", done))  # counted once
    assert loop.registry.dag("ns/r").finished("s") == 1
