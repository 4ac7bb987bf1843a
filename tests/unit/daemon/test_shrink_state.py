"""Shrink-in-place in the state machine: a step learned, its running siblings lowered once."""

from __future__ import annotations

import queue

from test_loop import node

from scheduler import registry
from scheduler.core import workflow
from scheduler.kube import keys, translate
from scheduler.runtime import growshell, memory, metrics, shrink
from scheduler.runtime import state as st
from scheduler.runtime.settings import Settings

MiB = 1 << 20
GiB = 1 << 30


def make_state(**settings):
    settings.setdefault("shrink_running", True)
    settings.setdefault("predictor", "mean-offset=none")
    model = memory.MemoryModel(registry.parse_predictor("mean-offset=none"), floor_bytes=0)
    state = st.SchedulerState(
        settings=Settings(bind_workers=2, **settings),
        policies=registry.parse_strategy("fifo-roundrobin").build(memory_planner=model),
        metrics=metrics.Metrics(),
        memory=model,
    )
    info, _ = translate.node_info(node("n1", memory="64Gi"))
    state.node_changed("n1", info)
    return state


def pod(
    name,
    *,
    step="align",
    phase="Running",
    memory_="8Gi",
    limit="8Gi",
    annotations=None,
    containers=1,
    scheduler="workflow-scheduler",
):
    resources = {"requests": {"cpu": "1", "memory": memory_}}
    if limit:
        resources["limits"] = {"memory": limit}
    return translate.pod_facts(
        {
            "metadata": {
                "name": name,
                "namespace": "ns",
                "uid": f"uid-{name}",
                "labels": {"wfsched.io/run-id": "r", "wfsched.io/step": step},
                "annotations": annotations or {},
            },
            "spec": {
                "schedulerName": scheduler,
                "nodeName": "n1",
                "containers": [
                    {"name": f"c{i}", "resources": resources} for i in range(containers)
                ],
            },
            "status": {"phase": phase},
        }
    )


def finish(state, name, peak, *, step="align", now=5.0):
    done = pod(
        name,
        step=step,
        phase="Succeeded",
        annotations={keys.PEAK_MEMORY_ANNOTATION: str(peak)},
    )
    return state.pod_changed(done, deleted=False, now=now)


def shrinks(instructions):
    return [i for i in instructions if isinstance(i, shrink.ShrinkMemory)]


def counted(state, result):
    return state.metrics.memory_shrinks.labels(result=result)._value.get()


def test_running_siblings_shrink_to_the_plan_once_a_task_of_the_step_finished() -> None:
    state = make_state()
    for name in ("a", "b", "c"):
        state.pod_changed(pod(name), deleted=False, now=0)
    state.pod_changed(pod("other", step="sort"), deleted=False, now=0)
    assert shrinks(state.tick(now=1, leading=True)) == []  # nothing known about the step yet
    finish(state, "a", 1 * GiB)
    out = shrinks(state.tick(now=6, leading=True))
    assert sorted(s.ref.name for s in out) == ["b", "c"]  # not the other step's pod
    first = out[0]
    assert (first.request_bytes, first.limit_bytes) == (GiB, GiB)
    assert (first.old_request_bytes, first.old_limit_bytes) == (8 * GiB, 8 * GiB)
    assert first.container == "c0" and first.step == "align"
    assert counted(state, "decided") == 2
    # Once per pod: a later observation of the step does not shrink them again.
    finish(state, "b", 512 * MiB, now=7)
    assert shrinks(state.tick(now=8, leading=True)) == []
    state.shrink_reported(shrink.ShrinkReported(instruction=first, ok=True))
    state.shrink_reported(shrink.ShrinkReported(instruction=out[1], ok=False, status=422))
    assert (counted(state, "shrunk"), counted(state, "refused")) == (1, 1)


def test_a_pod_started_after_the_step_was_learned_is_shrunk_when_first_seen() -> None:
    state = make_state()
    state.pod_changed(pod("a"), deleted=False, now=0)
    finish(state, "a", 2 * GiB)
    state.tick(now=6, leading=True)
    state.pod_changed(pod("late", memory_="8Gi", limit="16Gi"), deleted=False, now=7)
    (late,) = shrinks(state.tick(now=7.5, leading=True))
    assert (late.request_bytes, late.limit_bytes) == (2 * GiB, 16 * GiB)  # the limit stays


def test_a_peak_reported_outside_the_watch_shrinks_siblings_too() -> None:
    # The CWS REST bridge feeds task metrics straight into the model (no pod event).
    state = make_state()
    state.pod_changed(pod("b"), deleted=False, now=0)
    assert shrinks(state.tick(now=1, leading=True)) == []
    model = state.memory
    assert model is not None
    model.observe(model.key(workflow.RunId("ns/r"), "align"), 0.0, float(GiB))
    assert [s.ref.name for s in shrinks(state.tick(now=2, leading=True))] == ["b"]


def test_only_the_leader_shrinks_and_it_catches_up_when_it_leads() -> None:
    state = make_state()
    state.pod_changed(pod("b"), deleted=False, now=0)
    finish(state, "a", GiB)
    assert shrinks(state.tick(now=6, leading=False)) == []
    assert [s.ref.name for s in shrinks(state.tick(now=7, leading=True))] == ["b"]


def test_pods_resized_by_us_grown_foreign_or_multi_container_are_left_alone() -> None:
    state = make_state()
    resized = {keys.ORIGINAL_MEMORY_ANNOTATION: str(8 * GiB)}
    state.pod_changed(pod("resized", annotations=resized), deleted=False, now=0)
    grown = {"wfsched.io/memory-grows": "1"}
    state.pod_changed(pod("grown", annotations=grown), deleted=False, now=0)
    state.pod_changed(pod("foreign", scheduler="default-scheduler"), deleted=False, now=0)
    state.pod_changed(pod("pair", containers=2), deleted=False, now=0)
    state.pod_changed(pod("pending", phase="Pending"), deleted=False, now=0)
    state.pod_changed(pod("small", memory_="1100Mi", limit="1100Mi"), deleted=False, now=0)
    finish(state, "a", GiB)
    assert shrinks(state.tick(now=6, leading=True)) == []  # small: saves under 256 MiB
    assert state.shrinker is not None and len(state.shrinker) == 1  # only "small" is tracked
    state.pod_changed(pod("small"), deleted=True, now=7)
    assert len(state.shrinker) == 0


class CountingHook:
    def __init__(self) -> None:
        self.described: list[str] = []

    def describe(self, facts, labels):
        self.described.append(facts.ref.name)
        return labels, False

    def finished(self, facts, labels):
        pass


def test_running_pods_are_tracked_without_the_task_hooks() -> None:
    # A hook (the CWS bridge) describes pending pods; a running pod must not go through it.
    state = make_state()
    hook = CountingHook()
    state.task_hooks.append(hook)
    state.pod_changed(pod("b"), deleted=False, now=0)
    assert state.shrinker is not None and len(state.shrinker) == 1
    assert hook.described == []


def test_the_model_records_learned_steps_only_once_followed() -> None:
    model = memory.MemoryModel(registry.parse_predictor("mean-offset=none"))
    model.observe(("w", "align"), 0.0, float(GiB))
    assert model.drain_learned() == set()  # nobody follows: nothing kept
    model.follow_learned()
    model.observe(("w", "align"), 0.0, float(GiB))
    model.observe_failure(("w", "sort"), 0.0, float(GiB))
    assert model.drain_learned() == {("w", "align"), ("w", "sort")}
    assert model.drain_learned() == set()


def test_off_by_default() -> None:
    plain = st.SchedulerState(
        settings=Settings(bind_workers=2),
        policies=registry.parse_strategy("fifo-roundrobin").build(),
        metrics=metrics.Metrics(),
    )
    assert plain.shrinker is None


class RecordingKube:
    def __init__(self, refuse: bool = False) -> None:
        self.refuse = refuse
        self.resizes: list[tuple[str, list[dict[str, object]]]] = []
        self.metadata: list[tuple[str, object, object]] = []

    def resize_pod(self, namespace, name, containers):
        if self.refuse:
            raise RuntimeError("resize refused")
        self.resizes.append((name, containers))

    def patch_pod_metadata(self, namespace, name, *, labels=None, annotations=None):
        self.metadata.append((name, labels, annotations))


class RecordingEvents:
    def __init__(self) -> None:
        self.recorded: list[dict[str, object]] = []

    def record(self, **event):
        self.recorded.append(event)


def test_the_shell_sends_the_resize_marks_the_pod_and_reports_once() -> None:
    state = make_state()
    state.pod_changed(pod("b"), deleted=False, now=0)
    finish(state, "a", GiB)
    (instruction,) = shrinks(state.tick(now=6, leading=True))
    kube, recorder, reports = RecordingKube(), RecordingEvents(), queue.Queue()
    growshell.shrink(kube, recorder, reports, instruction)
    lowered = {"requests": {"memory": "1024Mi"}, "limits": {"memory": "1024Mi"}}
    assert kube.resizes == [("b", [{"name": "c0", "resources": lowered}])]
    (marked,) = kube.metadata
    assert marked[2] == {keys.ORIGINAL_MEMORY_ANNOTATION: str(8 * GiB)}
    assert recorder.recorded[0]["reason"] == "MemoryShrunk"
    assert "8192 MiB to 1024 MiB" in str(recorder.recorded[0]["note"])
    assert reports.get_nowait().ok and reports.empty()
    refused, recorder = RecordingKube(refuse=True), RecordingEvents()
    growshell.shrink(refused, recorder, reports, instruction)
    report = reports.get_nowait()
    assert not report.ok and "refused" in report.reason
    assert recorder.recorded[0]["reason"] == "MemoryShrinkFailed"
    assert recorder.recorded[0]["event_type"] == "Warning"
