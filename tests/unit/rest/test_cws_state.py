"""CwsState on its own: registrations, DAG, batches, pod matching, metrics, cleanup (pure)."""

from __future__ import annotations

import pytest
from rest_helpers import NS, facts, labels_of, make_state

from scheduler import cws
from scheduler.core import resources, workflow
from scheduler.runtime import workflows

P, OP = workflow.VertexKind.PROCESS, workflow.VertexKind.OPERATOR
RUN = workflow.RunId(f"{NS}/run1")


def registered(**kwargs):
    state = make_state(**kwargs)
    state.register(cws.Registration(name="run1", strategy="rank_min", namespace=NS), now=0.0)
    return state


def task(process="A", pod="p1", size=0, memory=1 << 30, repetition=0):
    return cws.TaskRegistration(
        process=process, pod_name=pod, input_size=size, memory_bytes=memory, repetition=repetition
    )


def snapshot(state):
    exe = state.executions["run1"]
    dag = state._registry.dag(exe.run)
    return (
        dict(exe.vertices),
        dict(exe.edges),
        dict(dag.ranks()),
        dag.version,
        set(exe.implicit),
    )


def test_register_validates_strategy_predictor_and_duplicates() -> None:
    state = make_state(namespaces=[NS])
    reply = state.register(
        cws.Registration(name="e", strategy="GS-Fair", namespace=NS, memory_predictor="lr"),
        now=0.0,
    )
    assert reply["strategy"] == "gs_min-fair"
    assert state.executions["e"].predictor.text == "lr"
    cases = [
        (cws.Registration(name="e", strategy="fifo", namespace=NS), cws.ErrorKind.DUPLICATE),
        (cws.Registration(name="x", strategy="nope", namespace=NS), cws.ErrorKind.UNKNOWN_NAME),
        (cws.Registration(name="x", strategy="a-b-c", namespace=NS), cws.ErrorKind.INVALID),
        (
            cws.Registration(name="x", strategy="fifo", namespace=NS, memory_predictor="magic"),
            cws.ErrorKind.INVALID,
        ),
        (cws.Registration(name="x", strategy="fifo", namespace="other"), cws.ErrorKind.INVALID),
        (
            cws.Registration(name="x", strategy="fifo", namespace=NS, min_memory=10, max_memory=5),
            cws.ErrorKind.INVALID,
        ),
    ]
    for reg, kind in cases:
        with pytest.raises(cws.CwsError) as err:
            state.register(reg, now=0.0)
        assert err.value.kind is kind, reg
    assert list(state.executions) == ["e"]


def test_default_predictor_applies_when_the_registration_names_none() -> None:
    state = make_state(default_predictor="mean")
    state.register(cws.Registration(name="a", strategy="fifo"), now=0)
    state.register(cws.Registration(name="b", strategy="fifo", memory_predictor="default"), now=0)
    state.register(cws.Registration(name="c", strategy="fifo", memory_predictor="lr"), now=0)
    assert [state.executions[n].predictor.text for n in "abc"] == ["mean", "mean", "lr"]
    assert make_state().executions == {}
    plain = make_state()
    plain.register(cws.Registration(name="a", strategy="fifo"), now=0)
    assert plain.executions["a"].predictor is None


def test_unknown_execution_is_refused_with_the_cws_message() -> None:
    state = make_state()
    with pytest.raises(cws.CwsError) as err:
        state.start_batch("ghost", now=0)
    assert err.value.kind is cws.ErrorKind.UNKNOWN_EXECUTION
    assert err.value.message == "There is no scheduler for ghost"


def test_dag_feeds_the_runs_workflow_dag_and_ranks() -> None:
    state = registered()
    state.add_vertices(
        "run1",
        [
            cws.Vertex(uid=1, kind=P, label="A"),
            cws.Vertex(uid=2, kind=OP, label="map"),
            cws.Vertex(uid=3, kind=P, label="B"),
            cws.Vertex(uid=4, kind=P, label="C"),
        ],
    )
    state.add_edges(
        "run1",
        [
            cws.Edge(uid=10, source=1, target=2),
            cws.Edge(uid=11, source=2, target=3),
            cws.Edge(uid=12, source=3, target=4),
            cws.Edge(uid=13, source=None, target=1),
        ],
    )
    dag = state._registry.dag(RUN)
    assert dict(dag.ranks()) == {"A": 2, "B": 1, "C": 0}
    state.remove_edges("run1", [12, 999])
    assert dict(dag.ranks()) == {"A": 1, "B": 0, "C": 0}
    state.remove_vertices("run1", [2])
    assert dict(dag.ranks()) == {"A": 0, "B": 0, "C": 0}
    assert 10 not in state.executions["run1"].edges


@pytest.mark.parametrize(
    ("vertices", "edges", "needle"),
    [
        ([cws.Vertex(uid=1, kind=OP, label="x")], [], "uid 1 already exists"),
        ([cws.Vertex(uid=9, kind=P, label="A")], [], "already vertex 1"),
        ([cws.Vertex(uid=9, kind=P, label=None)], [], "needs a label"),
        (
            [cws.Vertex(uid=8, kind=P, label="N"), cws.Vertex(uid=9, kind=P, label="N")],
            [],
            "already vertex 8",
        ),
        ([], [cws.Edge(uid=20, source=1, target=77)], "unknown vertex 77"),
        ([], [cws.Edge(uid=20, source=3, target=1)], "cycle"),
        ([], [cws.Edge(uid=20, source=1, target=1)], "cycle"),
        ([], [cws.Edge(uid=10, source=3, target=1)], "uid 10 already exists"),
        (
            [],
            [cws.Edge(uid=20, source=1, target=3), cws.Edge(uid=21, source=3, target=1)],
            "cycle",
        ),
    ],
)
def test_bad_dag_requests_change_nothing(vertices, edges, needle) -> None:
    state = registered()
    state.add_vertices(
        "run1", [cws.Vertex(uid=1, kind=P, label="A"), cws.Vertex(uid=3, kind=P, label="B")]
    )
    state.add_edges("run1", [cws.Edge(uid=10, source=1, target=3)])
    before = snapshot(state)
    with pytest.raises(cws.CwsError) as err:
        if vertices:
            state.add_vertices("run1", [cws.Vertex(uid=5, kind=P, label="new"), *vertices])
        else:
            state.add_edges("run1", edges)
    assert err.value.kind is cws.ErrorKind.INVALID
    assert needle in err.value.message
    assert snapshot(state) == before


def test_identical_reposts_are_no_ops() -> None:
    state = registered()
    vs = [cws.Vertex(uid=1, kind=P, label="A"), cws.Vertex(uid=2, kind=P, label="B")]
    es = [cws.Edge(uid=1, source=1, target=2)]
    state.add_vertices("run1", vs)
    state.add_edges("run1", es)
    before = snapshot(state)
    assert state.add_vertices("run1", vs) == {"added": 0}
    assert state.add_edges("run1", es)["added"] == 0
    assert snapshot(state) == before


def test_task_of_unknown_process_is_registered_implicitly_then_replaced_by_its_vertex() -> None:
    state = registered()
    reply = state.register_task("run1", 1, task(process="Z"), now=0)
    assert reply == {"memoryInBytes": None, "rank": 0}
    assert "Z" in state._registry.dag(RUN).ranks()
    state.add_vertices(
        "run1", [cws.Vertex(uid=1, kind=P, label="Y"), cws.Vertex(uid=2, kind=P, label="Z")]
    )
    state.add_edges("run1", [cws.Edge(uid=1, source=2, target=1)])
    assert state._registry.dag(RUN).rank("Z") == 1
    assert state.register_task("run1", 2, task(process="Z", pod="p2"), now=0)["rank"] == 1


def test_duplicate_task_id_for_another_pod_is_a_conflict() -> None:
    state = registered()
    state.register_task("run1", 1, task(pod="p1"), now=0)
    state.register_task("run1", 1, task(pod="p1", size=5), now=0)  # same pod: a retry
    with pytest.raises(cws.CwsError) as err:
        state.register_task("run1", 1, task(pod="other"), now=0)
    assert err.value.kind is cws.ErrorKind.DUPLICATE


def describe(state, name, *, now=0.0, **kwargs):
    f = facts(name, **kwargs)
    return state.describe(f, labels_of(f), now=now)


def test_pods_are_matched_by_name_and_relabelled() -> None:
    state = registered()
    state.register_task("run1", 42, task(process="A", pod="p1", size=123, repetition=2), now=0)
    labels, held = describe(state, "p1")
    assert not held
    assert (labels.run, labels.step, labels.task_id, labels.input_size, labels.attempt) == (
        RUN,
        "A",
        "42",
        123,
        2,
    )
    assert state.executions["run1"].tasks[42].state is cws.TaskState.UNSCHEDULED
    # Pods of other engines pass through untouched.
    other = facts("x", execution=None)
    assert state.describe(other, labels_of(other), now=0) == (labels_of(other), False)


def test_batch_holds_until_closed_and_every_pod_seen() -> None:
    state = registered()
    state.start_batch("run1", now=0)
    for i in range(3):
        state.register_task("run1", i, task(pod=f"p{i}"), now=0)
    assert describe(state, "p0")[1] is True
    assert describe(state, "p1")[1] is True
    state.end_batch("run1", 3, now=1)
    assert not state.take_effects().refresh_held
    assert describe(state, "p2")[1] is True  # completes the batch: released in arrival order
    assert state.take_effects().refresh_held
    assert [describe(state, f"p{i}")[1] for i in range(3)] == [False, False, False]


def test_end_batch_without_batch_is_a_no_op_and_start_keeps_the_open_one() -> None:
    state = registered()
    assert state.end_batch("run1", 0, now=0) == {"batch": None}
    assert state.start_batch("run1", now=0) == state.start_batch("run1", now=0) == {"batch": 1}


def test_batch_times_out_when_a_pod_never_appears() -> None:
    state = registered(batch_timeout_s=30)
    state.start_batch("run1", now=0)
    state.register_task("run1", 1, task(pod="p1"), now=0)
    state.register_task("run1", 2, task(pod="never"), now=0)
    assert describe(state, "p1")[1]
    state.end_batch("run1", 2, now=10)
    state.tick(now=39)
    assert describe(state, "p1")[1]
    state.tick(now=40)
    effects = state.take_effects()
    assert effects.refresh_held and effects.batch_timeouts == 1
    assert describe(state, "p1")[1] is False


def test_delete_task_releases_its_batch_and_withdraws_its_pod() -> None:
    state = registered()
    state.start_batch("run1", now=0)
    state.register_task("run1", 1, task(pod="p1"), now=0)
    state.register_task("run1", 2, task(pod="p2"), now=0)
    describe(state, "p1")
    state.end_batch("run1", 2, now=0)
    state.take_effects()
    assert state.delete_task("run1", 1) == {"deleted": True}
    effects = state.take_effects()
    assert effects.redescribe == ["uid-p1"]
    assert describe(state, "p1")[1] is True  # withdrawn: never scheduled
    assert state.delete_task("run1", 2) == {"deleted": True}
    assert state.take_effects().refresh_held  # the batch lost its last unready task
    assert state.delete_task("run1", 2) == {"deleted": False}
    with pytest.raises(cws.CwsError):
        state.delete_task("run1", 3)


def test_unregistered_pods_wait_for_the_grace_period_then_run_alone() -> None:
    state = make_state(registration_grace_s=30, adopt_unregistered=True)
    assert describe(state, "lost", now=0)[1] is True
    assert describe(state, "lost", now=29)[1] is True
    state.tick(now=31)
    assert state.take_effects().refresh_held
    labels, held = describe(state, "lost", now=31)
    assert not held and labels.step == "lost"


def test_late_registration_of_a_waiting_pod_refreshes_it() -> None:
    state = registered()
    assert describe(state, "p1", now=0)[1] is True
    state.register_task("run1", 1, task(pod="p1"), now=1)
    assert state.take_effects().refresh_held
    labels, held = describe(state, "p1", now=1)
    assert not held and labels.task_id == "1"


def test_metrics_feed_the_process_predictor_once() -> None:
    state = make_state()
    state.register(cws.Registration(name="run1", strategy="fifo", memory_predictor="mean"), now=0)
    state.register_task("run1", 1, task(size=10), now=0)
    good = cws.TaskMetrics(ram_request=1, peak_vmem=1, peak_rss=300 << 20, realtime=5)
    assert state.task_metrics("run1", 1, good) == {"observed": True}
    assert state.task_metrics("run1", 1, good) == {"observed": False, "duplicate": True}
    effects = state.take_effects()
    assert effects.observations == [
        cws.Observation(run="default/run1", step="A", input_bytes=10, peak_bytes=300 << 20)
    ]
    reply = state.register_task("run1", 2, task(pod="p2", size=10, memory=1 << 30), now=0)
    assert reply["memoryInBytes"] == 300 << 20
    retry = state.register_task("run1", 3, task(pod="p3", repetition=1), now=0)
    assert retry["memoryInBytes"] is None
    state.register_task("run1", 4, task(pod="p4"), now=0)
    for bad in (
        cws.TaskMetrics(peak_rss=0, realtime=1),
        cws.TaskMetrics(peak_rss=5, realtime=None),
        cws.TaskMetrics(),
    ):
        state.executions["run1"].tasks[4].metrics = None
        assert state.task_metrics("run1", 4, bad) == {"observed": False}
    assert state.executions["run1"].observations == {"A": 1}
    with pytest.raises(cws.CwsError) as err:
        state.task_metrics("run1", 99, good)
    assert err.value.kind is cws.ErrorKind.UNKNOWN_TASK


def test_plan_uses_the_executions_predictor_and_floor() -> None:
    state = make_state()
    state.register(
        cws.Registration(name="run1", strategy="fifo", memory_predictor="mean", min_memory=0),
        now=0,
    )
    state.register_task("run1", 1, task(), now=0)
    state.task_metrics("run1", 1, cws.TaskMetrics(peak_rss=(100 << 20) + 1, realtime=1))
    queued = workflow.Task(
        key=workflow.TaskKey(workflow.RunId("default/run1"), "2"),
        step=workflow.StepName("A"),
        submission=1,
        request=resources.Resources(cpu_millis=1000, memory_bytes=1 << 30),
    )
    assert state.plans_memory(queued.run)
    assert state.plan(queued) == 101 << 20
    assert not state.plans_memory(workflow.RunId("default/other"))


def test_finished_pods_set_the_final_state() -> None:
    state = registered()
    state.register_task("run1", 1, task(pod="p1"), now=0)
    state.register_task("run1", 2, task(pod="p2"), now=0)
    ok = facts("p1", phase="Succeeded")
    labels, held = state.describe(ok, labels_of(ok), now=0)
    assert labels.step == "A" and not held
    state.finished(ok, labels)
    bad = facts("p2", phase="Failed")
    state.finished(bad, state.describe(bad, labels_of(bad), now=0)[0])
    tasks = state.executions["run1"].tasks
    assert tasks[1].state is cws.TaskState.FINISHED
    assert tasks[2].state is cws.TaskState.FINISHED_WITH_ERROR


def test_delete_execution_forgets_everything() -> None:
    reg = workflows.WorkflowRegistry()
    state = make_state(workflows_registry=reg)
    state.register(cws.Registration(name="run1", strategy="fifo", namespace=NS), now=0)
    state.add_vertices("run1", [cws.Vertex(uid=1, kind=P, label="A")])
    state.start_batch("run1", now=0)
    state.register_task("run1", 1, task(), now=0)
    assert reg.dag(RUN) is not None
    assert state.delete("run1") == {"execution": "run1", "tasks": 1}
    assert state.take_effects().refresh_held
    assert reg.dag(RUN) is None
    assert state.executions == {} and state.by_run(RUN) is None
    with pytest.raises(cws.CwsError):
        state.info("run1")
    # The name can be registered again, with a fresh DAG.
    state.register(cws.Registration(name="run1", strategy="fifo", namespace=NS), now=0)
    assert dict(reg.dag(RUN).ranks()) == {}


def test_the_floor_per_cpu_applies_to_registered_tasks_with_cpus() -> None:
    state = make_state(min_memory_per_cpu_bytes=512 << 20)
    state.register(cws.Registration(name="run1", strategy="fifo", memory_predictor="mean"), now=0)
    state.register_task("run1", 1, task(size=10), now=0)
    metrics = cws.TaskMetrics(ram_request=1, peak_vmem=1, peak_rss=300 << 20, realtime=5)
    state.task_metrics("run1", 1, metrics)
    four_cpus = cws.TaskRegistration(
        process="A", pod_name="p2", input_size=10, memory_bytes=8 << 30, cpus=4
    )
    assert state.register_task("run1", 2, four_cpus, now=0)["memoryInBytes"] == 2 << 30
    no_cpus = task(pod="p3", size=10, memory=8 << 30)  # cpus not given: the flat floor only
    assert state.register_task("run1", 3, no_cpus, now=0)["memoryInBytes"] == 300 << 20
