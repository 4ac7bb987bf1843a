"""Resize before bind in the loop: what is patched and what the cache reserves (defect 9).

Driven by synthetic watch events and a recording fake API; the real API server's view of the
same pods is checked in tests/integration/test_resize_accounting.py.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from scheduler import registry
from scheduler.core import workflow
from scheduler.kube import translate
from scheduler.runtime import loop as loop_mod
from scheduler.runtime import memory, metrics
from scheduler.runtime.settings import Settings

MI = 1 << 20
GI = 1 << 30


class RecordingKube:
    """Binds, resizes and label patches succeed and are recorded."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.binds: list[tuple[str, str]] = []
        self.resizes: list[tuple[str, list[dict[str, Any]]]] = []

    def bind(self, namespace: str, name: str, uid: str, node: str) -> None:
        with self.lock:
            self.binds.append((name, node))

    def resize_pod(self, namespace: str, name: str, containers: list[dict[str, Any]]) -> None:
        with self.lock:
            self.resizes.append((name, containers))

    def patch_pod_metadata(self, namespace: str, name: str, **changes: Any) -> None:
        del namespace, name, changes

    def set_pod_condition(self, namespace: str, name: str, condition: dict[str, Any]) -> None:
        del namespace, name, condition

    def create_event(self, **kwargs: Any) -> None:
        del kwargs

    def get_configmap(self, namespace: str, name: str) -> None:
        return None

    def put_configmap(self, *args: Any, **kwargs: Any) -> None:
        del args, kwargs


def _node(name: str, memory_q: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {},
        "status": {
            "allocatable": {"cpu": "64", "memory": memory_q, "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def _pod(
    name: str,
    *,
    request: str,
    limit: str | None,
    init: str | None = None,
    overhead: str | None = None,
) -> dict[str, Any]:
    resources: dict[str, Any] = {"requests": {"cpu": "100m", "memory": request}}
    if limit is not None:
        resources["limits"] = {"memory": limit}
    spec: dict[str, Any] = {
        "schedulerName": "workflow-scheduler",
        "containers": [{"name": "main", "resources": resources}],
    }
    if init is not None:
        spec["initContainers"] = [
            {"name": "stage-in", "resources": {"requests": {"cpu": "100m", "memory": init}}}
        ]
    if overhead is not None:
        spec["overhead"] = {"memory": overhead}
    return {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": f"uid-{name}",
            "labels": {"wfsched.io/run-id": "r", "wfsched.io/step": "align"},
        },
        "spec": spec,
        "status": {"phase": "Pending"},
    }


def _loop(kube: RecordingKube) -> loop_mod.SchedulerLoop:
    model = memory.MemoryModel(registry.parse_predictor("mean-offset=none"), floor_bytes=0)
    model.observe(model.key(workflow.RunId("ns/r"), "align"), 0, 200 * MI)
    spec = registry.parse_strategy("fifo-roundrobin")
    return loop_mod.SchedulerLoop(
        settings=Settings(bind_workers=2),
        kube=kube,
        policies=spec.build(memory_planner=model),
        metrics=metrics.Metrics(),
        memory=model,
    )


def _bind_all(loop: loop_mod.SchedulerLoop, kube: RecordingKube, count: int) -> None:
    loop.run_one_cycle()
    deadline = time.monotonic() + 5
    while len(kube.binds) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    loop._drain()
    assert len(kube.binds) == count


@pytest.mark.parametrize(
    ("limit", "patched"),
    [
        # Burstable, limit above the request: only the request is lowered, the limit stays.
        ("2Gi", {"requests": {"memory": "200Mi"}}),
        # Limit equal to the request: both move together (QoS class unchanged).
        ("1Gi", {"requests": {"memory": "200Mi"}, "limits": {"memory": "200Mi"}}),
        # No limit: only the request.
        (None, {"requests": {"memory": "200Mi"}}),
    ],
)
def test_resize_lowers_the_limit_only_where_it_equals_the_request(
    limit: str | None, patched: dict[str, Any]
) -> None:
    kube = RecordingKube()
    loop = _loop(kube)
    loop._handle(("nodes", "ADDED", _node("n", "8Gi")))
    loop._handle(("pods", "ADDED", _pod("p", request="1Gi", limit=limit)))
    _bind_all(loop, kube, 1)
    assert kube.resizes == [("p", [{"name": "main", "resources": patched}])]


def test_cache_reserves_the_resized_pod_as_kube_scheduler_accounts_it() -> None:
    kube = RecordingKube()
    loop = _loop(kube)
    loop._handle(("nodes", "ADDED", _node("n", "8Gi")))
    raw = _pod("p", request="1Gi", limit="2Gi", init="512Mi", overhead="256Mi")
    loop._handle(("pods", "ADDED", raw))
    _bind_all(loop, kube, 1)
    assert kube.resizes[0][1][0]["resources"] == {"requests": {"memory": "200Mi"}}
    # The pod as the API server now holds it: container 200Mi, init 512Mi, overhead 256Mi.
    raw["spec"]["containers"][0]["resources"]["requests"]["memory"] = "200Mi"
    implied = translate.pod_facts(raw).request.memory_bytes
    assert implied == 768 * MI
    assert loop.cache.snapshot().requested_on("n").memory_bytes == implied


def test_a_node_is_never_overcommitted_by_resized_pods_with_init_and_overhead() -> None:
    kube = RecordingKube()
    loop = _loop(kube)
    loop._handle(("nodes", "ADDED", _node("n", "4Gi")))
    for i in range(20):
        loop._handle(
            (
                "pods",
                "ADDED",
                _pod(f"p{i}", request="1Gi", limit="1Gi", init="512Mi", overhead="256Mi"),
            )
        )
    _bind_all(loop, kube, 5)  # 5 x 768 MiB fit in 4 GiB; 200 MiB each would let 20 in
    assert loop.cache.snapshot().requested_on("n").memory_bytes == 5 * 768 * MI


def test_late_events_of_the_resize_do_not_bind_the_pod_twice() -> None:
    # The resize and the label patch change the pending pod before the Binding; the watch may
    # deliver those changes after the bind worker reported success. They describe an older
    # state of a pod already bound: the pod must not be queued and bound again.
    kube = RecordingKube()
    loop = _loop(kube)
    loop._handle(("nodes", "ADDED", _node("n", "8Gi")))
    raw = _pod("p", request="1Gi", limit="1Gi")
    loop._handle(("pods", "ADDED", raw))
    _bind_all(loop, kube, 1)
    resized = _pod("p", request="200Mi", limit="200Mi")
    resized["metadata"]["labels"]["commonworkflowscheduler/memoryscaled"] = "true"
    loop._handle(("pods", "MODIFIED", resized))  # still unbound in this older event
    assert loop.run_one_cycle() is None  # nothing to place
    time.sleep(0.1)
    loop._drain()
    assert kube.binds == [("p", "n")]
    bound = _pod("p", request="200Mi", limit="200Mi")
    bound["spec"]["nodeName"] = "n"
    loop._handle(("pods", "MODIFIED", bound))
    assert loop.cache.snapshot().requested_on("n").memory_bytes == 200 * MI
