"""wfsched under real Kueue (v0.17): Kueue decides when a Job starts and on which flavour of
nodes, wfsched which node and in what workflow order.

The cluster runs kube-controller-manager (Jobs make pods) and Kueue's manager with its
webhooks. Two ResourceFlavors select labelled KWOK nodes (flavour b's nodes are tainted and the
flavour carries the toleration); an unlabelled node catches any pod placed outside its flavour.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from k8s_helpers import DaemonProcess, wait_for
from kubernetes import client, watch

from scheduler.devtools import devcluster
from tests.support import controlplane

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]

SCHED = "workflow-scheduler"
KUEUE = "/apis/kueue.x-k8s.io/v1beta2"
FLAVOUR_LABEL = "wfsched.test/flavour"
QUOTA = {"flavour-a": 2, "flavour-b": 3}
"""CPU quota per flavour: a is tighter than its node (4 CPU), b looser than its node (2 CPU),
so in b wfsched chooses among admitted pods."""
STEPS = ["s1", "s2", "s3", "s4"]


@pytest.fixture(scope="module")
def kueue_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[devcluster.DevCluster]:
    with controlplane.running_cluster(
        tmp_path_factory.mktemp("kueue-cluster"),
        metrics_server=False,
        controller_manager=True,
        kueue=True,
    ) as cluster:
        cluster.create_nodes(1, cpu="4", memory="16Gi", prefix="kq-a-", labels={FLAVOUR_LABEL: "a"})
        cluster.create_nodes(
            1,
            cpu="2",
            memory="16Gi",
            prefix="kq-b-",
            labels={FLAVOUR_LABEL: "b"},
            taints=[{"key": FLAVOUR_LABEL, "value": "b", "effect": "NoSchedule"}],
        )
        cluster.create_nodes(1, cpu="16", memory="64Gi", prefix="kq-free-")
        yield cluster


@pytest.fixture(scope="module")
def core(kueue_cluster: devcluster.DevCluster) -> client.CoreV1Api:
    return client.CoreV1Api(controlplane.api_client(kueue_cluster))


@pytest.fixture
def ns(core: client.CoreV1Api) -> Iterator[str]:
    name = f"kq-{time.monotonic_ns() % 10**8}"
    core.create_namespace({"metadata": {"name": name}})
    yield name
    core.delete_namespace(name)


@pytest.fixture
def daemon(kueue_cluster: devcluster.DevCluster, ns: str, tmp_path: Path) -> Iterator[Any]:
    proc = DaemonProcess(
        str(kueue_cluster.kubeconfig), tmp_path, namespaces=[ns], lease={"enabled": False}
    ).start()
    yield proc
    proc.stop()


def _apply(cluster: devcluster.DevCluster, path: str, body: dict[str, Any]) -> None:
    # Kueue's webhooks may still be warming up right after start: retry briefly.
    admin = cluster.admin()
    deadline = time.monotonic() + 30
    while True:
        try:
            admin.apply(path, body)
            return
        except devcluster.DevClusterError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def _queues(cluster: devcluster.DevCluster, ns: str, name: str, quota: dict[str, int]) -> None:
    """Flavours, a ClusterQueue ``name`` with ``quota`` CPUs per flavour, a LocalQueue."""
    _apply(
        cluster,
        f"{KUEUE}/resourceflavors",
        {
            "apiVersion": "kueue.x-k8s.io/v1beta2",
            "kind": "ResourceFlavor",
            "metadata": {"name": "flavour-a"},
            "spec": {"nodeLabels": {FLAVOUR_LABEL: "a"}},
        },
    )
    _apply(
        cluster,
        f"{KUEUE}/resourceflavors",
        {
            "apiVersion": "kueue.x-k8s.io/v1beta2",
            "kind": "ResourceFlavor",
            "metadata": {"name": "flavour-b"},
            "spec": {
                "nodeLabels": {FLAVOUR_LABEL: "b"},
                "tolerations": [
                    {
                        "key": FLAVOUR_LABEL,
                        "operator": "Equal",
                        "value": "b",
                        "effect": "NoSchedule",
                    }
                ],
            },
        },
    )
    _apply(
        cluster,
        f"{KUEUE}/clusterqueues",
        {
            "apiVersion": "kueue.x-k8s.io/v1beta2",
            "kind": "ClusterQueue",
            "metadata": {"name": name},
            "spec": {
                "namespaceSelector": {
                    "matchLabels": {"kubernetes.io/metadata.name": ns},
                },
                "resourceGroups": [
                    {
                        "coveredResources": ["cpu", "memory"],
                        "flavors": [
                            {
                                "name": flavour,
                                "resources": [
                                    {"name": "cpu", "nominalQuota": str(cpu)},
                                    {"name": "memory", "nominalQuota": "64Gi"},
                                ],
                            }
                            for flavour, cpu in quota.items()
                        ],
                    }
                ],
            },
        },
    )
    _apply(
        cluster,
        f"{KUEUE}/namespaces/{ns}/localqueues",
        {
            "apiVersion": "kueue.x-k8s.io/v1beta2",
            "kind": "LocalQueue",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"clusterQueue": name},
        },
    )

    def active() -> bool:
        status, body = cluster.admin().request("GET", f"{KUEUE}/clusterqueues/{name}")
        conditions = body.get("status", {}).get("conditions", []) if status == 200 else []
        return any(c["type"] == "Active" and c["status"] == "True" for c in conditions)

    wait_for(active, timeout_s=30, what=f"ClusterQueue {name} to be active")


def _job(name: str, queue: str, step: str, depends: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": {"kueue.x-k8s.io/queue-name": queue}},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {
                    "labels": {"wfsched.io/run-id": "kq-run", "wfsched.io/step": step},
                    "annotations": {
                        "wfsched.io/task-id": name,
                        "wfsched.io/depends-on": ",".join(depends),
                        "kwok.wfsched.io/runtime": "3s",
                    },
                },
                "spec": {
                    "schedulerName": SCHED,
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "c",
                            "image": "x",
                            "resources": {"requests": {"cpu": "1", "memory": "1Gi"}},
                        }
                    ],
                },
            },
        },
    }


@dataclass
class PodTrace:
    step: str
    created: float
    node: str = ""
    node_selector: dict[str, str] = field(default_factory=dict)
    bound: float | None = None
    finished: float | None = None
    gated_when_bound: bool = False


class PodTracer:
    """Watches a namespace's pods: when each appeared, was bound, finished; and where."""

    def __init__(self, core: client.CoreV1Api, ns: str) -> None:
        self.core, self.ns = core, ns
        self.pods: dict[str, PodTrace] = {}
        self.gated_seen: set[str] = set()
        self._stop = threading.Event()
        self._watch = watch.Watch()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):
                for event in self._watch.stream(
                    self.core.list_namespaced_pod, self.ns, timeout_seconds=5
                ):
                    self._handle(event["object"])
                    if self._stop.is_set():
                        break

    def _handle(self, pod: Any) -> None:
        now = time.monotonic()
        name = pod.metadata.name
        trace = self.pods.get(name)
        if trace is None:
            step = (pod.metadata.labels or {}).get("wfsched.io/step", "")
            trace = self.pods[name] = PodTrace(step=step, created=now)
        gated = bool(pod.spec.scheduling_gates)
        if gated:
            self.gated_seen.add(name)
        if pod.spec.node_name and trace.bound is None:
            trace.bound, trace.node = now, pod.spec.node_name
            trace.node_selector = dict(pod.spec.node_selector or {})
            trace.gated_when_bound = gated
        if pod.status.phase in ("Succeeded", "Failed") and trace.finished is None:
            trace.finished = now

    def __enter__(self) -> PodTracer:
        self._thread.start()
        time.sleep(0.5)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._watch.stop()
        self._thread.join(timeout=10)


def _max_concurrent(intervals: list[tuple[float, float]]) -> int:
    points = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = peak = 0
    for _, delta in points:
        running += delta
        peak = max(peak, running)
    return peak


def test_a_workflow_of_kueue_jobs_stays_in_its_flavours_quota_and_order(
    kueue_cluster: devcluster.DevCluster, core: client.CoreV1Api, ns: str, daemon: Any
) -> None:
    _queues(kueue_cluster, ns, "cq-wf", QUOTA)
    batch = client.BatchV1Api(core.api_client)
    jobs: list[tuple[str, str, list[str]]] = []
    for i, step in enumerate(STEPS):
        parents = [f"{STEPS[i - 1]}-{k}" for k in range(2)] if i else []
        jobs += [(f"{step}-{k}", step, parents) for k in range(2)]
    with PodTracer(core, ns) as tracer:
        # Created leaves first, so Kueue (first in, first admitted) admits later steps before
        # earlier ones and wfsched must put the workflow's order back within each flavour.
        for name, step, parents in reversed(jobs):
            created = batch.create_namespaced_job(ns, _job(name, "cq-wf", step, parents))
            # Kueue's webhook suspends every queued Job at creation, until it is admitted.
            assert created.spec.suspend is True, name

        def all_done() -> bool:
            finished = [t for t in tracer.pods.values() if t.finished is not None]
            return len(finished) == len(jobs)

        wait_for(all_done, timeout_s=300, interval_s=1, what="all workflow Jobs to finish")

    traces = tracer.pods
    assert len(traces) == len(jobs)
    node_flavour = {"kq-a-0": "flavour-a", "kq-b-0": "flavour-b"}
    by_flavour: dict[str, list[PodTrace]] = {"flavour-a": [], "flavour-b": []}
    for name, trace in traces.items():
        # Placed within the flavour Kueue admitted it to (the node selector Kueue injected).
        assert trace.node in node_flavour, f"{name} placed outside any flavour on {trace.node}"
        flavour = node_flavour[trace.node]
        assert trace.node_selector.get(FLAVOUR_LABEL) == flavour[-1], (name, trace)
        by_flavour[flavour].append(trace)
    assert by_flavour["flavour-a"] and by_flavour["flavour-b"], "the Jobs spread over both"
    for flavour, members in by_flavour.items():
        intervals = [(t.bound or 0.0, t.finished or 0.0) for t in members]
        assert _max_concurrent(intervals) <= QUOTA[flavour], (flavour, intervals)
    # Within flavour b (node smaller than the quota), no pod was bound while a pod of an earlier
    # step had been waiting there for a second or more.
    members = by_flavour["flavour-b"]
    for late in members:
        for early in members:
            if STEPS.index(early.step) < STEPS.index(late.step):
                assert not (early.created + 1.0 < (late.bound or 0.0) < (early.bound or 0.0)), (
                    f"{late.step} bound while {early.step} waited"
                )
    scheduled = devcluster.metric_sample(
        daemon.metrics(), 'wfsched_schedule_attempts_total{result="scheduled"}', default=0
    )
    assert scheduled == len(jobs)


def test_a_gated_pod_is_never_bound_until_kueue_admits_it(
    kueue_cluster: devcluster.DevCluster, core: client.CoreV1Api, ns: str, daemon: Any
) -> None:
    # Kueue's plain-pod integration: a pod with a queue name gets the admission gate at
    # creation; a ClusterQueue without quota keeps it gated.
    _queues(kueue_cluster, ns, "cq-gate", {"flavour-a": 0})
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "gated",
            "labels": {"kueue.x-k8s.io/queue-name": "cq-gate", "wfsched.io/run-id": "g"},
            "annotations": {"kwok.wfsched.io/runtime": "60s"},
        },
        "spec": {
            "schedulerName": SCHED,
            "restartPolicy": "Never",
            "containers": [{"name": "c", "image": "x", "resources": {"requests": {"cpu": "1"}}}],
        },
    }
    with PodTracer(core, ns) as tracer:
        created = core.create_namespaced_pod(ns, pod)
        gates = [g.name for g in created.spec.scheduling_gates or []]
        assert "kueue.x-k8s.io/admission" in gates, gates
        time.sleep(8)
        held = core.read_namespaced_pod("gated", ns)
        assert not held.spec.node_name and held.spec.scheduling_gates
        # Give the queue room: Kueue admits the pod's workload and lifts the gate.
        _queues(kueue_cluster, ns, "cq-gate", {"flavour-a": 1})
        bound = wait_for(
            lambda: core.read_namespaced_pod("gated", ns).spec.node_name,
            timeout_s=60,
            what="the admitted pod to be bound",
        )
    assert bound == "kq-a-0"
    assert "gated" in tracer.gated_seen
    assert not tracer.pods["gated"].gated_when_bound
