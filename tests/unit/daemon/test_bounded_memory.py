"""Every structure the daemon keeps per run, task or pod is bounded (issue 13, defect 5).

Pure unit tests with an injected clock: the registry forgets idle runs, the memory model drops
marks of departed tasks, the loop keeps runs alive while their pods run, and the informer caches
only what the translation reads (finished pods as bare identities).
"""

from __future__ import annotations

import queue
import random
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler import registry
from scheduler.core import workflow
from scheduler.kube import errors, informer, translate
from scheduler.runtime import loop as loop_mod
from scheduler.runtime import memory, metrics, workflows
from scheduler.runtime.settings import Settings, SettingsError, load_settings

RUN = workflow.RunId("ns/r")


def _labels(run: str = "r", task: str = "t", step: str = "s", **extra: Any) -> workflows.TaskLabels:
    return workflows.TaskLabels(
        run=workflow.RunId(f"ns/{run}"),
        workflow_name=extra.pop("workflow_name", ""),
        engine="wfsched",
        step=workflow.StepName(step),
        task_id=task,
        **extra,
    )


# --- WorkflowRegistry --------------------------------------------------------------------------


def test_idle_learned_runs_are_evicted_after_the_idle_time() -> None:
    reg = workflows.WorkflowRegistry()
    reg.observe_task(_labels("a"))
    reg.observe_task(_labels("b"))
    active = {workflow.RunId("ns/b")}
    assert reg.evict_idle(active=active, now=0.0, idle_s=60) == []  # a: idle from now on
    assert reg.evict_idle(active=active, now=59.0, idle_s=60) == []
    assert reg.evict_idle(active=active, now=60.0, idle_s=60) == ["ns/a"]
    assert reg.dag(workflow.RunId("ns/a")) is None
    assert set(reg.dags) == {"ns/b"}
    assert len(reg) == 1


def test_a_run_active_again_restarts_its_idle_time() -> None:
    reg = workflows.WorkflowRegistry()
    reg.observe_task(_labels("a"))
    run = workflow.RunId("ns/a")
    reg.evict_idle(active=set(), now=0.0, idle_s=60)
    reg.evict_idle(active={run}, now=50.0, idle_s=60)  # a new task of the run is pending
    assert reg.evict_idle(active=set(), now=70.0, idle_s=60) == []
    assert reg.evict_idle(active=set(), now=129.0, idle_s=60) == []
    assert reg.evict_idle(active=set(), now=130.0, idle_s=60) == [run]


def test_runs_created_by_their_owner_are_never_evicted() -> None:
    # The CWS API creates an execution's run with ensure_run and forgets it itself.
    reg = workflows.WorkflowRegistry()
    owned = workflow.RunId("ns/execution")
    reg.ensure_run(owned)
    reg.observe_task(_labels("execution"))
    for now in (0.0, 1e6):
        assert reg.evict_idle(active=set(), now=now, idle_s=1) == []
    assert reg.forget_run(owned)
    assert owned not in reg.dags


def test_dags_is_a_live_view_not_a_copy_per_cycle() -> None:
    reg = workflows.WorkflowRegistry()
    view = reg.dags
    reg.observe_task(_labels("a"))
    assert view is reg.dags and list(view) == ["ns/a"]
    with pytest.raises(TypeError):
        view[workflow.RunId("x")] = None  # type: ignore[index]


def test_learned_step_edges_survive_eviction_and_are_bounded_per_workflow(monkeypatch) -> None:
    reg = workflows.WorkflowRegistry()
    reg.observe_task(_labels("a", task="t1", step="x", workflow_name="wf"))
    reg.observe_task(_labels("a", task="t2", step="y", workflow_name="wf", depends_on=("t1",)))
    reg.evict_idle(active=set(), now=0.0, idle_s=1)
    reg.evict_idle(active=set(), now=1.0, idle_s=1)
    assert len(reg) == 0
    assert reg.learned_edges("wf") == {("x", "y")}
    monkeypatch.setattr(workflows, "MAX_LEARNED_WORKFLOWS", 3)
    for i in range(5):
        reg.observe_task(_labels(f"r{i}", task="t1", step="x", workflow_name=f"wf{i}"))
        reg.observe_task(
            _labels(f"r{i}", task="t2", step="y", workflow_name=f"wf{i}", depends_on=("t1",))
        )
    assert [
        name for name in ("wf", "wf0", "wf1", "wf2", "wf3", "wf4") if reg.learned_edges(name)
    ] == [
        "wf2",
        "wf3",
        "wf4",
    ]


# --- MemoryModel -------------------------------------------------------------------------------


def test_memory_model_keeps_marks_only_for_live_tasks_and_runs() -> None:
    model = memory.MemoryModel(registry.parse_predictor("mean-offset=none"))
    live = workflow.TaskKey(RUN, "live")
    for i in range(1000):
        model.mark_unscalable(workflow.TaskKey(RUN, f"gone-{i}"))
        model.set_workflow(workflow.RunId(f"ns/gone-{i}"), "wf")
    model.mark_unscalable(live)
    model.set_workflow(RUN, "wf")
    model.retain(tasks={live}, runs={RUN})
    assert model.tracked == (1, 1)
    assert model.is_unscalable(live)
    assert model.key(RUN, "s") == ("wf", "s")


# --- the loop, with an injected clock ----------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class QuietKube:
    def __init__(self) -> None:
        self.bound = threading.Event()

    def bind(self, namespace: str, name: str, uid: str, node: str) -> None:
        self.bound.set()

    def set_pod_condition(self, *args: Any) -> None:
        del args

    def create_event(self, **kwargs: Any) -> None:
        del kwargs

    def get_configmap(self, namespace: str, name: str) -> None:
        return None


def _node() -> dict[str, Any]:
    return {
        "metadata": {"name": "n1"},
        "status": {
            "allocatable": {"cpu": "8", "memory": "8Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def _pod(name: str, run: str, *, node: str = "", phase: str = "Pending", containers: int = 1):
    spec: dict[str, Any] = {
        "schedulerName": "workflow-scheduler",
        "containers": [
            {"name": f"c{i}", "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}
            for i in range(containers)
        ],
    }
    if node:
        spec["nodeName"] = node
    return {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": f"uid-{name}",
            "labels": {"wfsched.io/run-id": run, "wfsched.io/workflow": "wf"},
        },
        "spec": spec,
        "status": {"phase": phase},
    }


def _loop(clock: Clock, kube: QuietKube) -> loop_mod.SchedulerLoop:
    model = memory.MemoryModel(registry.parse_predictor("mean-offset=none"))
    return loop_mod.SchedulerLoop(
        settings=Settings(bind_workers=1, finished_run_idle_s=60),
        kube=kube,
        policies=registry.parse_strategy("fifo-roundrobin").build(memory_planner=model),
        metrics=metrics.Metrics(),
        clock=clock,
        memory=model,
    )


def test_a_run_lives_while_its_pod_runs_and_is_forgotten_once_idle() -> None:
    clock, kube = Clock(), QuietKube()
    loop = _loop(clock, kube)
    loop._handle(("nodes", "ADDED", _node()))
    loop._handle(("pods", "ADDED", _pod("p", "r1", containers=2)))  # unscalable: 2 containers
    assert loop.memory is not None and loop.memory.tracked == (1, 1)
    loop.run_one_cycle()
    assert kube.bound.wait(5)
    loop._drain()
    loop._handle(("pods", "MODIFIED", _pod("p", "r1", node="n1", phase="Running")))
    # Running for far longer than the idle time: the run stays, the task's mark goes.
    for _ in range(10):
        clock.now += 100
        loop.evict_idle(clock.now)
    assert loop.registry.dag(workflow.RunId("ns/r1")) is not None
    assert loop.memory.tracked == (0, 1)
    loop._handle(("pods", "MODIFIED", _pod("p", "r1", node="n1", phase="Succeeded")))
    # The finish is counted in the run that was kept (the step defaults to the pod's name).
    assert loop.registry.dag(workflow.RunId("ns/r1")).finished("p") == 1
    for _ in range(2):
        clock.now += 40
        loop.evict_idle(clock.now)
    assert loop.registry.dag(workflow.RunId("ns/r1")) is not None  # idle for 40 s only
    clock.now += 40
    loop.evict_idle(clock.now)
    assert loop.registry.dag(workflow.RunId("ns/r1")) is None
    assert len(loop.registry) == 0 and loop.memory.tracked == (0, 0)
    assert loop.metrics.workflow_runs._value.get() == 0
    # The deletion that follows needs no memory of the pod either.
    assert "uid-p" in loop.state._finished
    loop._handle(("pods", "DELETED", _pod("p", "r1", node="n1", phase="Succeeded")))
    assert "uid-p" not in loop.state._finished and not loop.state._running_runs


def test_many_runs_through_the_loop_leave_nothing_behind() -> None:
    clock, kube = Clock(), QuietKube()
    loop = _loop(clock, kube)
    loop._handle(("nodes", "ADDED", _node()))
    for i in range(200):
        run = f"r{i}"
        loop._handle(("pods", "ADDED", _pod(f"p{i}", run)))
        loop._handle(("pods", "MODIFIED", _pod(f"p{i}", run, node="n1", phase="Running")))
        loop._on_pod_usage(
            [
                {
                    "metadata": {"namespace": "ns", "name": f"p{i}"},
                    "containers": [{"usage": {"memory": "1Mi"}}],
                }
            ]
        )
        loop._handle(("pods", "MODIFIED", _pod(f"p{i}", run, node="n1", phase="Succeeded")))
        # metrics-server reports a pod once more after it finished
        loop._on_pod_usage(
            [
                {
                    "metadata": {"namespace": "ns", "name": f"p{i}"},
                    "containers": [{"usage": {"memory": "1Mi"}}],
                }
            ]
        )
        loop._handle(("pods", "DELETED", _pod(f"p{i}", run, node="n1", phase="Succeeded")))
        clock.now += 1
        loop.evict_idle(clock.now)
    clock.now += 61
    loop.evict_idle(clock.now)
    clock.now += 61
    loop.evict_idle(clock.now)
    assert len(loop.registry) == 0
    assert loop.memory is not None and loop.memory.tracked == (0, 0)
    assert not loop.state._finished and not loop.state._running_runs and not loop.state._peak_usage
    assert not loop.state.pods and not loop.state._uid_by_key and len(loop.queue) == 0


def test_the_idle_time_is_validated() -> None:
    assert load_settings(env={"WFSCHED_FINISHED_RUN_IDLE_S": "30"}).finished_run_idle_s == 30
    with pytest.raises(SettingsError, match="finished_run_idle_s: must be > 0"):
        load_settings(env={"WFSCHED_FINISHED_RUN_IDLE_S": "0"})


# --- what the informer keeps -------------------------------------------------------------------


def _full_pod(name: str, rv: str, phase: str = "Running") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": f"uid-{name}",
            "resourceVersion": rv,
            "labels": {"wfsched.io/run-id": "r"},
            "annotations": {"wfsched.io/input-size": "5"},
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {"x": "y" * 500}}}],
            "ownerReferences": [{"kind": "Job", "name": "j", "uid": "u"}],
        },
        "spec": {
            "schedulerName": "workflow-scheduler",
            "nodeName": "n1",
            "volumes": [{"name": "v", "emptyDir": {}}],
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {"matchExpressions": [{"key": "k", "operator": "In", "values": ["v"]}]}
                        ]
                    },
                    "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 1}],
                },
                "podAntiAffinity": {"x": 1},
            },
            "tolerations": [{"key": "k", "operator": "Exists"}],
            "overhead": {"memory": "10Mi"},
            "initContainers": [
                {
                    "name": "init",
                    "image": "busybox",
                    "restartPolicy": "Always",
                    "resources": {"requests": {"memory": "64Mi"}},
                }
            ],
            "containers": [
                {
                    "name": "main",
                    "image": "busybox",
                    "env": [{"name": "E", "value": "v" * 1000}],
                    "command": ["sh", "-c", "sleep 1"],
                    "resources": {
                        "requests": {"cpu": "1", "memory": "1Gi"},
                        "limits": {"memory": "2Gi"},
                    },
                }
            ],
        },
        "status": {
            "phase": phase,
            "startTime": "2026-01-01T00:00:01Z",
            "conditions": [{"type": "Ready", "status": "True", "message": "m" * 200}],
            "containerStatuses": [
                {
                    "name": "main",
                    "image": "busybox",
                    "imageID": "sha256:" + "0" * 64,
                    "allocatedResources": {"memory": "1Gi"},
                    "state": {
                        "terminated": {
                            "reason": "OOMKilled",
                            "finishedAt": "2026-01-01T00:01:00Z",
                            "exitCode": 137,
                        }
                    },
                }
            ],
        },
    }


def test_slim_pod_keeps_exactly_what_the_translation_reads() -> None:
    full = _full_pod("p", "1")
    slim = translate.slim_pod(full)
    assert translate.pod_facts(slim) == translate.pod_facts(full)
    assert "managedFields" not in slim["metadata"] and "volumes" not in slim["spec"]
    assert "env" not in slim["spec"]["containers"][0]
    assert set(slim["spec"]["affinity"]["nodeAffinity"]) == {
        "requiredDuringSchedulingIgnoredDuringExecution"
    }
    assert len(repr(slim)) < len(repr(full)) / 2


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def _mangled_pods(draw: st.DrawFn) -> dict[str, Any]:
    """A realistic pod with random parts replaced by random JSON."""
    pod = _full_pod("p", "1", phase=draw(st.sampled_from(["Running", "Pending", "Failed"])))
    paths = [
        ("spec", "containers"),
        ("spec", "initContainers"),
        ("spec", "affinity"),
        ("spec", "tolerations"),
        ("spec", "overhead"),
        ("spec", "resources"),
        ("status", "containerStatuses"),
        ("metadata", "labels"),
        ("spec",),
        ("status",),
    ]
    for path in draw(st.lists(st.sampled_from(paths), max_size=3)):
        target = pod
        for key in path[:-1]:
            target = target.get(key) if isinstance(target, dict) else None
        if isinstance(target, dict):
            target[path[-1]] = draw(_json)
    return pod


@settings(max_examples=150, deadline=None)
@given(_mangled_pods())
def test_slim_pod_gives_the_same_facts_and_problems_for_malformed_pods(pod: dict[str, Any]) -> None:
    assert translate.pod_facts(translate.slim_pod(pod)) == translate.pod_facts(pod)


def test_slim_node_gives_the_same_node_info() -> None:
    node = {
        "metadata": {
            "name": "n",
            "uid": "u",
            "resourceVersion": "3",
            "labels": {"a": "b"},
            "managedFields": [{}],
        },
        "spec": {
            "taints": [{"key": "k", "effect": "NoSchedule"}],
            "unschedulable": True,
            "podCIDR": "x",
        },
        "status": {
            "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
            "capacity": {"cpu": "4"},
            "images": [{"names": ["x" * 100], "sizeBytes": 1}] * 50,
            "conditions": [
                {"type": "Ready", "status": "True", "message": "kubelet is posting ready status"}
            ],
        },
    }
    slim = translate.slim_node(node)
    assert translate.node_info(slim) == translate.node_info(node)
    assert "images" not in slim["status"] and "managedFields" not in slim["metadata"]


class ScriptedSource:
    """One LIST, one watch that ends in 410, a second LIST; then an idle watch."""

    def __init__(self, lists: list[tuple[list[dict], str]], watch: list[dict]) -> None:
        self.lists = lists
        self.watch = watch
        self.done = threading.Event()

    def list_objects(self, kind: str, **kwargs: Any) -> tuple[list[dict], str]:
        return self.lists.pop(0)

    def get_object(self, kind: str, name: str, **kwargs: Any) -> None:
        return None

    def open_watch(self, kind: str, **kwargs: Any) -> Any:
        source = self
        closed = threading.Event()

        class Stream:
            def __iter__(self) -> Iterator[dict]:
                if source.watch:
                    events, source.watch = source.watch, []
                    yield from events
                    raise errors.GoneError("expired", http_status=410)
                source.done.set()
                closed.wait(5)

            def close(self) -> None:
                closed.set()

        return Stream()


def test_informer_caches_slim_pods_finished_ones_as_identities_and_still_diffs() -> None:
    source = ScriptedSource(
        lists=[
            ([_full_pod("run", "1"), _full_pod("done", "2", phase="Succeeded")], "10"),
            ([], "20"),  # both vanished during the gap
        ],
        watch=[{"type": "MODIFIED", "object": _full_pod("run", "11")}],
    )
    events: queue.Queue[Any] = queue.Queue()
    inf = informer.Informer(
        source,
        informer.WatchSpec(name="pods", kind="pods"),
        events,
        transform=translate.slim_pod,
        store=translate.stored_pod,
        rng=random.Random(1),
        backoff_base_s=0.01,
    )
    inf.start()
    try:
        assert source.done.wait(5)
        assert inf.snapshot() == {}  # the second list emptied the cache
    finally:
        inf.stop()
    emitted = []
    while not events.empty():
        _, event_type, obj = events.get_nowait()
        emitted.append((event_type, obj))
    assert [(t, o["metadata"]["name"]) for t, o in emitted] == [
        ("ADDED", "run"),
        ("ADDED", "done"),
        ("MODIFIED", "run"),
        ("DELETED", "run"),  # synthetic, from the cache: the slim running pod
        ("DELETED", "done"),  # synthetic: the finished pod's identity
    ]
    for _, obj in emitted:
        assert "managedFields" not in obj["metadata"]
    assert emitted[3][1] == translate.slim_pod(_full_pod("run", "11"))
    assert emitted[4][1] == {
        "metadata": {"name": "done", "namespace": "ns", "uid": "uid-done", "resourceVersion": "2"},
        "status": {"phase": "Succeeded"},
    }
    # The loop reads both deletions without trouble.
    for _, obj in emitted[3:]:
        assert translate.pod_facts(obj).ref.uid.startswith("uid-")
