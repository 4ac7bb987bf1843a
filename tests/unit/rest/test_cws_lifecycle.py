"""CwsState over time: pods of other CWS instances, idle expiry, and store/restore (pure)."""

from __future__ import annotations

import json

import pytest
from rest_helpers import NS, facts, labels_of, make_state

from scheduler import cws
from scheduler.core import workflow
from scheduler.cws import snapshot
from scheduler.runtime import workflows

P, OP = workflow.VertexKind.PROCESS, workflow.VertexKind.OPERATOR
RUN = workflow.RunId(f"{NS}/run1")


def describe(state, name, *, now=0.0, **kwargs):
    f = facts(name, **kwargs)
    return state.describe(f, labels_of(f), now=now)


def register(state, name="run1", now=0.0, **kwargs):
    kwargs.setdefault("strategy", "rank_min")
    return state.register(cws.Registration(name=name, namespace=NS, **kwargs), now=now)


def task(process="A", pod="p1", size=0, memory=1 << 30):
    return cws.TaskRegistration(process=process, pod_name=pod, input_size=size, memory_bytes=memory)


# --- pods of executions never registered here (another CWS may own them) ---------------------


def test_pods_of_an_unknown_execution_are_held_for_ever_by_default() -> None:
    state = make_state(registration_grace_s=30)
    for now in (0, 31, 3600, 86_400 * 7):
        state.tick(now=now)
        assert describe(state, "theirs", execution="cws-run", now=now)[1] is True
    assert not state.take_effects().refresh_held  # nothing for the loop to re-describe


def test_registering_the_execution_later_re_describes_its_held_pods() -> None:
    state = make_state(registration_grace_s=30)
    assert describe(state, "p1", now=0)[1] is True
    register(state, now=5)
    assert state.take_effects().refresh_held
    state.register_task("run1", 1, task(pod="p1"), now=6)
    labels, held = describe(state, "p1", now=6)
    assert not held and labels.task_id == "1"


def test_pods_of_a_deleted_execution_get_the_grace_period_not_the_foreign_hold() -> None:
    state = make_state(registration_grace_s=30)
    register(state)
    state.delete("run1")
    assert describe(state, "late", now=0)[1] is True
    state.tick(now=31)
    assert describe(state, "late", now=31)[1] is False  # ours once: scheduled after grace


def test_opt_in_adopts_pods_of_unknown_executions_after_the_grace_period() -> None:
    state = make_state(registration_grace_s=30, adopt_unregistered=True)
    assert describe(state, "orphan", execution="nobody", now=0)[1] is True
    state.tick(now=31)
    assert describe(state, "orphan", execution="nobody", now=31)[1] is False


# --- idle executions expire -------------------------------------------------------------------


def test_an_execution_never_deleted_expires_after_the_idle_time() -> None:
    reg = workflows.WorkflowRegistry()
    state = make_state(workflows_registry=reg, idle_expiry_s=100, max_executions=2)
    register(state, "a", now=0)
    register(state, "b", now=0)
    with pytest.raises(cws.CwsError) as refused:
        register(state, "c", now=10)
    assert refused.value.kind is cws.ErrorKind.LIMIT
    state.take_changes()
    state.tick(now=50)
    state.start_batch("b", now=60)  # b is used; a is not
    state.tick(now=100)
    assert set(state.executions) == {"b"}
    assert reg.dag(workflow.RunId(f"{NS}/a")) is None  # its DAG is freed too
    assert state.take_changes()[1] == {"a"}  # and its stored document removed
    register(state, "c", now=100)  # room again
    state.tick(now=159)
    assert set(state.executions) == {"b", "c"}
    state.tick(now=160)
    assert set(state.executions) == {"c"}


def test_pod_events_and_reads_keep_an_execution_alive() -> None:
    state = make_state(idle_expiry_s=100)
    register(state, now=0)
    state.register_task("run1", 1, task(pod="p1"), now=0)
    describe(state, "p1", now=90)  # its pod shows up
    state.tick(now=150)
    assert "run1" in state.executions
    state.tick(now=185)
    state.info("run1")  # a read counts (at the state's last known time, 185)
    state.tick(now=280)
    assert "run1" in state.executions
    state.tick(now=285)
    assert state.executions == {}


def test_expiry_zero_keeps_executions_for_ever() -> None:
    state = make_state(idle_expiry_s=0)
    register(state, now=0)
    state.tick(now=10**9)
    assert "run1" in state.executions


# --- store and restore ------------------------------------------------------------------------


def build_run(state) -> None:
    register(state, memory_predictor="mean-offset=none", now=0)
    state.add_vertices(
        "run1",
        [
            cws.Vertex(uid=1, kind=P, label="A"),
            cws.Vertex(uid=2, kind=OP),
            cws.Vertex(uid=3, kind=P, label="B"),
        ],
    )
    state.add_edges(
        "run1",
        [
            cws.Edge(uid=1, source=1, target=2),
            cws.Edge(uid=2, source=2, target=3),
            cws.Edge(uid=3, source=None, target=3),
        ],
    )
    state.register_task("run1", 1, task("A", "a1", size=10), now=0)
    state.register_task("run1", 2, task("Z", "z1", size=20), now=0)  # implicit process Z
    describe(state, "a1", now=1)
    metrics = cws.TaskMetrics(ram_request=1, peak_vmem=1, peak_rss=300 << 20, realtime=5)
    state.task_metrics("run1", 1, metrics)
    ok = facts("a1", phase="Succeeded")
    state.finished(ok, state.describe(ok, labels_of(ok), now=2)[0], now=2)
    state.start_batch("run1", now=3)
    state.register_task("run1", 3, task("B", "b1"), now=3)
    state.register_task("run1", 4, task("B", "b2"), now=3)
    describe(state, "b1", now=4)
    state.end_batch("run1", 2, now=5)


def test_a_restored_execution_continues_where_it_was() -> None:
    old = make_state()
    build_run(old)
    documents, removed = old.take_changes()
    assert set(documents) == {"run1"} and not removed
    wire = json.loads(json.dumps(documents["run1"]))  # what the store writes and reads

    new_registry = workflows.WorkflowRegistry()
    new = make_state(workflows_registry=new_registry)
    assert describe(new, "b2", now=100)[1] is True  # seen before the restore: held
    assert new.restore(wire, now=100) == "run1"
    assert new.take_effects().refresh_held
    before, after = old.info("run1"), new.info("run1")
    for key in ("strategy", "memoryPredictor", "vertices", "edges", "ranks", "tasks"):
        assert after[key] == before[key], key
    assert after["observations"] == {"A": 1}
    assert new_registry.dag(RUN).finished("A") == 1
    # The predictor was retrained from the stored metrics: same plan as before the failover.
    assert new.register_task("run1", 9, task("A", "a9", size=10), now=101)["memoryInBytes"] == (
        300 << 20
    )
    # The open batch (closed, one pod missing) is still held until its last pod appears.
    assert describe(new, "b1", now=101)[1] is True
    assert describe(new, "b2", now=101)[1] is True
    assert new.take_effects().refresh_held  # b2 was the last one: released
    assert describe(new, "b1", now=102)[1] is False
    assert new.task_state("run1", 1, pod_state=lambda uid: None)["state"] == "FINISHED"


def test_a_pod_that_finished_before_the_restore_is_claimed_by_it() -> None:
    old = make_state()
    register(old)
    old.register_task("run1", 1, task(pod="p1"), now=0)
    documents, _ = old.take_changes()
    new = make_state()
    done = facts("p1", phase="Succeeded")
    new.finished(done, labels_of(done), now=5)  # no replica knew the execution then
    new.restore(documents["run1"], now=6)
    assert new.task_state("run1", 1, pod_state=lambda uid: None)["state"] == "FINISHED"


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda d: d.update(version=7), "version"),
        (lambda d: d["registration"].pop("strategy"), "registration.strategy"),
        (lambda d: d["tasks"].append([1, 2]), "tasks"),
        (lambda d: d["vertices"].append(["x", "PROCESS", "Q"]), "malformed"),
        (lambda d: d.update(nextBatch=0), "nextBatch"),
        (lambda d: d["edges"].append([99, 1, 12345]), "DAG"),
    ],
)
def test_a_damaged_document_is_refused_and_changes_nothing(mutate, needle) -> None:
    old = make_state()
    build_run(old)
    document = json.loads(json.dumps(old.take_changes()[0]["run1"]))
    mutate(document)
    new = make_state()
    with pytest.raises(ValueError, match=needle):
        new.restore(document, now=0)
    assert new.executions == {}


def test_restoring_an_execution_that_exists_is_a_duplicate() -> None:
    state = make_state()
    register(state)
    document = state.take_changes()[0]["run1"]
    with pytest.raises(cws.CwsError) as refused:
        state.restore(document, now=1)
    assert refused.value.kind is cws.ErrorKind.DUPLICATE


def test_documents_keep_file_counts_not_file_lists() -> None:
    state = make_state()
    register(state)
    spec = cws.TaskRegistration(process="A", pod_name="p1", input_files=20_000)
    state.register_task("run1", 1, spec, now=0)
    document = state.take_changes()[0]["run1"]
    row = dict(zip(snapshot.TASK_FIELDS, document["tasks"][0], strict=True))
    assert row["inputFiles"] == 20_000
    assert len(json.dumps(document)) < 1000
