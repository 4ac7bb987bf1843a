"""The daemon (``wfsched run``) against the real kube-apiserver + KWOK.

Each test starts the daemon as a subprocess limited to the test's namespace, so tests never
schedule each other's pods; nodes are the test's own KWOK nodes.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from k8s_helpers import (
    CapacityChecker,
    DaemonProcess,
    PodApiAdapter,
    make_pod,
    read_pod,
    wait_for,
)
from kubernetes import client, watch

from scheduler.devtools import replay, simulate

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
SCHED = "workflow-scheduler"


@pytest.fixture
def daemon(dev_cluster, namespace, tmp_path):
    started: list[DaemonProcess] = []

    def start(**settings) -> DaemonProcess:
        settings.setdefault("namespaces", [namespace])
        settings.setdefault("lease", {"enabled": False})
        proc = DaemonProcess(str(dev_cluster.kubeconfig), tmp_path, **settings).start()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


class BindRecorder:
    """Watches the namespace and records the order in which pods got a node."""

    def __init__(self, core_v1: client.CoreV1Api, namespace: str) -> None:
        self.order: list[str] = []
        self.times: dict[str, float] = {}
        self.created: dict[str, float] = {}
        self._stop = threading.Event()
        self._watch = watch.Watch()
        self._thread = threading.Thread(target=self._run, args=(core_v1, namespace), daemon=True)

    def _run(self, core_v1: client.CoreV1Api, namespace: str) -> None:
        while not self._stop.is_set():
            try:
                for event in self._watch.stream(
                    core_v1.list_namespaced_pod, namespace, timeout_seconds=5
                ):
                    pod = event["object"]
                    name = pod.metadata.name
                    self.created.setdefault(name, time.monotonic())
                    if pod.spec.node_name and name not in self.times:
                        self.times[name] = time.monotonic()
                        self.order.append(name)
                    if self._stop.is_set():
                        break
            except Exception:  # the stream was cut by stop(); the loop condition decides
                continue

    def __enter__(self) -> BindRecorder:
        self._thread.start()
        time.sleep(0.5)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._watch.stop()
        self._thread.join(timeout=10)


def _events(core_v1: client.CoreV1Api, namespace: str, pod: str) -> list[dict]:
    resp = core_v1.list_namespaced_event(
        namespace, field_selector=f"involvedObject.name={pod}", _preload_content=False
    )
    return json.loads(resp.data)["items"]


def test_real_workflow_runs_to_completion_without_overcommit(
    core_v1, namespace, kwok_nodes, daemon
) -> None:
    nodes = kwok_nodes(2, cpu="2", memory="8Gi")
    # A pod of another scheduler already occupies one CPU of the first node.
    foreign = make_pod("foreign", scheduler_name="default-scheduler", cpu="1", runtime="600s")
    foreign["spec"]["nodeName"] = nodes[0]
    core_v1.create_namespaced_pod(namespace, foreign)
    instance = simulate.load_instance(
        DATA / "wfinstances" / "epigenomics-chameleon-hep-1seq-100k-001.json"
    )
    plan = replay.ReplayPlan.from_instance(instance, scheduler_name=SCHED, time_scale=0.01)
    daemon(policy="rank_min-roundrobin")
    with CapacityChecker(core_v1, nodes) as checker:
        progress = replay.Replayer(plan, PodApiAdapter(core_v1), namespace=namespace).run(
            timeout_s=240
        )
    assert progress.succeeded == len(plan.tasks) == 41
    assert checker.samples > 10
    assert checker.violations == []
    for task in plan.tasks:
        pod = read_pod(core_v1, namespace, task.pod_name)
        assert pod["status"]["phase"] == "Succeeded"
        assert pod["spec"]["nodeName"] in nodes
        scheduled = [
            e for e in _events(core_v1, namespace, task.pod_name) if e["reason"] == "Scheduled"
        ]
        assert len(scheduled) == 1


def test_binding_order_follows_the_ranking_when_capacity_is_short(
    core_v1, namespace, kwok_nodes, daemon
) -> None:
    kwok_nodes(1, cpu="1", memory="4Gi")
    dag = {"steps": ["a", "b", "c"], "edges": [["a", "b"], ["b", "c"]]}
    core_v1.create_namespaced_config_map(
        namespace, {"metadata": {"name": "dag"}, "data": {"dag.json": json.dumps(dag)}}
    )
    # Blocker first so every other pod is queued when the daemon decides.
    blocker = make_pod("blocker", cpu="1", runtime="3s")
    core_v1.create_namespaced_pod(namespace, blocker)
    daemon(policy="rank_min-roundrobin")
    wait_for(
        lambda: read_pod(core_v1, namespace, "blocker")["spec"].get("nodeName"), what="blocker"
    )
    # Created in "wrong" order: sinks first, with increasing input sizes inside a step.
    specs = [("c", 1), ("c", 2), ("b", 3), ("b", 1), ("a", 9), ("a", 2)]
    with BindRecorder(core_v1, namespace) as recorder:
        for i, (step, size) in enumerate(specs):
            pod = make_pod(
                f"{step}{i}",
                cpu="1",
                runtime="1s",
                labels={"wfsched.io/run-id": "run1", "wfsched.io/step": step},
                annotations={
                    "wfsched.io/input-size": str(size),
                    "wfsched.io/dag-configmap": "dag",
                },
            )
            core_v1.create_namespaced_pod(namespace, pod)
        wait_for(lambda: len(recorder.order) >= 7, timeout_s=90, what="all pods bound")
    # rank_min: highest rank first (a=2, b=1, c=0), then smaller input first.
    assert [name for name in recorder.order if name != "blocker"] == [
        "a5",
        "a4",
        "b3",
        "b2",
        "c0",
        "c1",
    ]


def test_constraints_are_honoured_and_a_too_big_pod_does_not_block(
    core_v1, namespace, kwok_nodes, daemon
) -> None:
    plain = kwok_nodes(1, cpu="4", memory="8Gi", labels={"disk": "hdd"})[0]
    tainted = kwok_nodes(
        1,
        cpu="4",
        memory="8Gi",
        labels={"disk": "ssd"},
        taints=[{"key": "dedicated", "value": "wf", "effect": "NoSchedule"}],
    )[0]
    cordoned = kwok_nodes(1, cpu="16", memory="64Gi", labels={"disk": "ssd"})[0]
    core_v1.patch_node(cordoned, {"spec": {"unschedulable": True}})
    daemon(policy="fifo-roundrobin")

    tolerating = make_pod("ssd", runtime="60s")
    tolerating["spec"]["nodeSelector"] = {"disk": "ssd"}
    tolerating["spec"]["tolerations"] = [
        {"key": "dedicated", "operator": "Equal", "value": "wf", "effect": "NoSchedule"}
    ]
    untolerated = make_pod("ssd-no-toleration", runtime="60s")
    untolerated["spec"]["nodeSelector"] = {"disk": "ssd"}
    affinity = make_pod("affinity", runtime="60s")
    affinity["spec"]["affinity"] = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [plain]}]}
                ]
            }
        }
    }
    too_big = make_pod("too-big", cpu="64", runtime="5s")
    gated = make_pod("gated", runtime="5s", gates=["example.com/wait"])
    small = [make_pod(f"small{i}", runtime="60s") for i in range(3)]
    for pod in [too_big, tolerating, untolerated, affinity, gated, *small]:
        core_v1.create_namespaced_pod(namespace, pod)

    def node_of(name: str) -> str | None:
        return read_pod(core_v1, namespace, name)["spec"].get("nodeName")

    wait_for(
        lambda: all(node_of(p) for p in ["ssd", "affinity", "small0", "small1", "small2"]),
        timeout_s=30,
        what="feasible pods bound",
    )
    assert node_of("ssd") == tainted
    assert node_of("affinity") == plain
    assert all(node_of(f"small{i}") == plain for i in range(3))
    time.sleep(2)
    assert node_of("ssd-no-toleration") is None
    assert node_of("gated") is None
    assert node_of("too-big") is None

    def unschedulable(name: str) -> dict | None:
        for cond in read_pod(core_v1, namespace, name)["status"].get("conditions", []):
            if cond["type"] == "PodScheduled" and cond["reason"] == "Unschedulable":
                return cond
        return None

    cond = wait_for(lambda: unschedulable("too-big"), timeout_s=20, what="condition")
    assert "Insufficient cpu" in cond["message"]
    cond = wait_for(lambda: unschedulable("ssd-no-toleration"), timeout_s=20, what="condition")
    assert "untolerated taint" in cond["message"]
    events = wait_for(
        lambda: [
            e for e in _events(core_v1, namespace, "too-big") if e["reason"] == "FailedScheduling"
        ],
        timeout_s=20,
        what="FailedScheduling event",
    )
    assert events[0]["type"] == "Warning"
    # Removing the gate makes the pod schedulable.
    core_v1.patch_namespaced_pod("gated", namespace, {"spec": {"schedulingGates": None}})
    wait_for(lambda: node_of("gated"), timeout_s=20, what="ungated pod bound")


def test_deleted_pending_pod_and_kill_9_leave_every_pod_bound_once(
    core_v1, namespace, kwok_nodes, daemon, dev_cluster, tmp_path
) -> None:
    nodes = kwok_nodes(2, cpu="2", memory="8Gi")
    instance = simulate.load_instance(
        DATA / "wfinstances" / "epigenomics-chameleon-hep-1seq-100k-001.json"
    )
    plan = replay.ReplayPlan.from_instance(instance, scheduler_name=SCHED, time_scale=0.02)
    core_v1.create_namespaced_pod(namespace, make_pod("doomed", cpu="64"))
    first = daemon(policy="rank_max-roundrobin")
    core_v1.delete_namespaced_pod("doomed", namespace, grace_period_seconds=0)
    result: dict = {}

    def drive() -> None:
        try:
            result["progress"] = replay.Replayer(
                plan, PodApiAdapter(core_v1), namespace=namespace
            ).run(timeout_s=300)
        except Exception as exc:  # reported by the assertion below
            result["error"] = exc

    driver = threading.Thread(target=drive, daemon=True)
    with CapacityChecker(core_v1, nodes) as checker:
        driver.start()
        wait_for(lambda: len(_bound(core_v1, namespace)) >= 8, timeout_s=120, what="8 bound")
        first.kill()
        time.sleep(1)
        daemon(policy="rank_max-roundrobin")
        driver.join(timeout=300)
    assert "error" not in result, result.get("error")
    assert result["progress"].succeeded == len(plan.tasks)
    assert checker.violations == []
    for task in plan.tasks:
        scheduled = [
            e for e in _events(core_v1, namespace, task.pod_name) if e["reason"] == "Scheduled"
        ]
        assert len(scheduled) == 1, task.pod_name


def _bound(core_v1: client.CoreV1Api, namespace: str) -> list[str]:
    pods = json.loads(core_v1.list_namespaced_pod(namespace, _preload_content=False).data)
    return [p["metadata"]["name"] for p in pods["items"] if p["spec"].get("nodeName")]


def test_only_the_leader_binds_and_a_standby_takes_over(
    core_v1, namespace, kwok_nodes, daemon
) -> None:
    kwok_nodes(2, cpu="8", memory="16Gi")
    lease = {
        "enabled": True,
        "name": "wfsched",
        "namespace": namespace,
        "duration_s": 4,
        "renew_deadline_s": 3,
        "retry_period_s": 1,
    }
    first = daemon(policy="fifo-roundrobin", lease=lease)
    second = daemon(policy="fifo-roundrobin", lease=lease)

    def leaders() -> list[DaemonProcess]:
        return [
            d
            for d in (first, second)
            if d.proc.poll() is None and "wfsched_leader 1.0" in d.metrics()
        ]

    wait_for(lambda: len(leaders()) == 1, timeout_s=20, what="one leader")
    leader = leaders()[0]
    standby = second if leader is first else first
    for i in range(5):
        core_v1.create_namespaced_pod(namespace, make_pod(f"before{i}", runtime="60s"))
    wait_for(lambda: len(_bound(core_v1, namespace)) == 5, timeout_s=20, what="5 bound")
    assert 'wfsched_schedule_attempts_total{result="scheduled"} 5.0' in leader.metrics()
    assert 'wfsched_schedule_attempts_total{result="scheduled"} 0.0' in standby.metrics()
    leader.kill()
    killed_at = time.monotonic()
    for i in range(3):
        core_v1.create_namespaced_pod(namespace, make_pod(f"after{i}", runtime="60s"))
    wait_for(lambda: len(_bound(core_v1, namespace)) == 8, timeout_s=30, what="8 bound")
    gap = time.monotonic() - killed_at
    assert gap < 4 + 3 + 2, gap  # lease duration + retry period + one cycle
    assert "wfsched_leader 1.0" in standby.metrics()


def test_bind_conflicts_between_two_active_replicas_bind_each_pod_once(
    core_v1, namespace, kwok_nodes, daemon
) -> None:
    """Two replicas without leader election race for the same pods: 409s, never doubles."""
    kwok_nodes(2, cpu="32", memory="64Gi")
    first = daemon(policy="fifo-roundrobin", bind_workers=8)
    second = daemon(policy="fifo-roundrobin", bind_workers=8)
    names = [f"race{i}" for i in range(60)]
    for name in names:
        core_v1.create_namespaced_pod(namespace, make_pod(name, runtime="120s"))
    wait_for(lambda: len(_bound(core_v1, namespace)) == len(names), timeout_s=60, what="bound")

    def conflicts(proc: DaemonProcess) -> float:
        for line in proc.metrics().splitlines():
            if line.startswith('wfsched_bind_errors_total{reason="conflict"}'):
                return float(line.split()[1])
        return 0.0

    def scheduled(proc: DaemonProcess) -> float:
        for line in proc.metrics().splitlines():
            if line.startswith('wfsched_schedule_attempts_total{result="scheduled"}'):
                return float(line.split()[1])
        return 0.0

    time.sleep(1)
    # Every pod was bound by exactly one replica; the loser of each race saw a 409.
    assert scheduled(first) + scheduled(second) == len(names)
    assert conflicts(first) + conflicts(second) >= 1
    for name in names:
        events = [e for e in _events(core_v1, namespace, name) if e["reason"] == "Scheduled"]
        assert len(events) == 1, name
    assert first.proc.poll() is None and second.proc.poll() is None
