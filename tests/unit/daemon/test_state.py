"""The scheduler's state machine, driven stimulus by stimulus: no threads, no sleeps, no clock.

Each test feeds translated pods and nodes, bind outcomes and ticks with explicit times into
``SchedulerState`` and asserts on the instructions it returns and on its state.
"""

from __future__ import annotations

import dataclasses

import pytest
from test_loop import node, pod

from scheduler import registry
from scheduler.core import podfacts
from scheduler.kube import keys, translate
from scheduler.runtime import history as history_mod
from scheduler.runtime import metrics, workflows
from scheduler.runtime import state as st
from scheduler.runtime.settings import Settings


def make_state(*, policy="fifo-roundrobin", **settings):
    settings.setdefault("bind_workers", 2)
    return st.SchedulerState(
        settings=Settings(**settings),
        policies=registry.parse_strategy(policy).build(),
        metrics=metrics.Metrics(),
    )


def facts(name, **kwargs) -> podfacts.PodFacts:
    return translate.pod_facts(pod(name, **kwargs))


def add_node(state, name="n1", **kwargs):
    info, problems = translate.node_info(node(name, **kwargs))
    assert not problems
    state.node_changed(name, info)


def add_pod(state, name, *, now=0.0, **kwargs):
    return state.pod_changed(facts(name, **kwargs), deleted=False, now=now)


def binds(instructions):
    return [i for i in instructions if isinstance(i, st.StartBind)]


def events(instructions, reason=None):
    return [
        i
        for i in instructions
        if isinstance(i, st.RecordEvent) and (reason is None or i.reason == reason)
    ]


def start_one(state, name, *, now=0.0):
    """Queue ``name`` on a fresh node and run the cycle that binds it."""
    add_node(state)
    add_pod(state, name, now=now)
    _, out = state.cycle(now=now, leading=True)
    (start,) = binds(out)
    return start


def outcome(start, **kwargs):
    return st.BindOutcome(bind=start.bind, **{"ok": False, **kwargs})


# --- the scheduling cycle ------------------------------------------------------------------------


def test_a_cycle_assumes_and_hands_out_binds_in_queue_order():
    state = make_state()
    add_node(state, cpu="2")
    for name in ("a", "b", "c"):
        assert add_pod(state, name) == []
    assert [state.phase_of(f"uid-{n}") for n in "abc"] == [st.PodPhase.QUEUED] * 3
    result, out = state.cycle(now=0.0, leading=True)
    assert [b.bind.pod.name for b in binds(out)] == ["a", "b"]
    assert state.phase_of("uid-a") is st.PodPhase.BINDING
    assert state.cache.snapshot().requested_on("n1").cpu_millis == 2000  # assumed at once
    # c fits nowhere: one condition and one Warning, not repeated by the next cycle.
    condition = [i for i in out if isinstance(i, st.SetCondition)]
    assert [c.name for c in condition] == ["c"] and condition[0].reason == "Unschedulable"
    assert [e.name for e in events(out, "FailedScheduling")] == ["c"]
    state.mark_dirty()
    _, again = state.cycle(now=1.0, leading=True)
    assert again == []
    assert result is not None and result.cycle_id == 1


def test_a_changed_unschedulable_reason_is_rewritten_at_most_once_per_interval():
    state = make_state(unschedulable_report_interval_s=10.0)
    add_node(state, cpu="2")
    add_pod(state, "big", cpu="3")
    _, out = state.cycle(now=0.0, leading=True)
    assert [c.message for c in out if isinstance(c, st.SetCondition)] == [
        "0/1 nodes are available: 1 Insufficient cpu."
    ]
    add_node(state, "n2", cpu="1")  # the reason now counts two nodes
    _, out = state.cycle(now=4.0, leading=True)
    assert out == []
    state.mark_dirty()
    _, out = state.cycle(now=10.0, leading=True)
    assert [c.message for c in out if isinstance(c, st.SetCondition)] == [
        "0/2 nodes are available: 2 Insufficient cpu."
    ]
    assert [e.name for e in events(out, "FailedScheduling")] == ["big"]


def test_a_follower_places_nothing_and_wants_no_cycle():
    state = make_state()
    add_node(state)
    add_pod(state, "a")
    assert not state.cycle_due(now=0.0, leading=False)
    assert state.cycle(now=0.0, leading=False) == (None, [])
    assert state.cycle_due(now=0.0, leading=True)


# --- a release settles before a cycle ranks it -----------------------------------------------


def workflow_pod(state, name, step, *, now):
    """Queue a task of run ``r`` of workflow ``wf`` at ``now``."""
    labels = {keys.RUN_ID_LABEL: "r", keys.WORKFLOW_LABEL: "wf", keys.STEP_LABEL: step}
    return add_pod(state, name, now=now, labels=labels, annotations={keys.TASK_ID_ANNOTATION: name})


def test_a_cycle_waits_until_arrivals_pause():
    state = make_state(policy="critical_path", arrival_settle_s=0.05, arrival_settle_max_s=0.5)
    add_node(state)
    for now, name in ((0.0, "a"), (0.02, "b"), (0.04, "c")):
        workflow_pod(state, name, "s", now=now)
        assert not state.cycle_due(now=now, leading=True)
    state.tick(now=0.04, leading=True)  # periodic work done: the settle is what is due next
    assert state.wake_at(now=0.04) == pytest.approx(0.09)
    assert not state.cycle_due(now=0.089, leading=True)
    assert state.cycle_due(now=0.09, leading=True)
    state.cycle(now=0.09, leading=True)
    workflow_pod(state, "d", "s", now=1.0)  # a new release waits again
    assert not state.cycle_due(now=1.0, leading=True) and state.cycle_due(now=1.05, leading=True)


def test_a_release_that_keeps_arriving_waits_at_most_the_cap():
    state = make_state(policy="critical_path", arrival_settle_s=0.05, arrival_settle_max_s=0.2)
    add_node(state)
    for i in range(7):  # one every 30 ms, the last at 0.18
        workflow_pod(state, f"t{i}", "s", now=i * 0.03)
        assert not state.cycle_due(now=i * 0.03, leading=True)
    assert state.cycle_due(now=0.2, leading=True)  # not 0.23: the cap counts from the first


@pytest.mark.parametrize(("policy", "settle"), [("fifo", 0.05), ("critical_path", 0.0)])
def test_no_wait_under_an_arrival_ordered_ranking_or_when_turned_off(policy, settle):
    state = make_state(policy=policy, arrival_settle_s=settle)
    add_node(state)
    workflow_pod(state, "a", "s", now=0.0)
    assert state.cycle_due(now=0.0, leading=True)


def test_the_task_with_the_long_tail_gets_the_room_though_it_arrived_last():
    def first_bound(settle_s):
        kept = history_mod.WorkflowHistory()
        kept.learn_step_edges("wf", [("long", "next"), ("next", "last")])
        state = st.SchedulerState(
            settings=Settings(bind_workers=2, arrival_settle_s=settle_s),
            policies=registry.parse_strategy("critical_path").build(),
            metrics=metrics.Metrics(),
            history=kept,
        )
        add_node(state, cpu="1")  # room for one task
        workflow_pod(state, "short", "short", now=0.0)  # the engine creates it first
        if state.cycle_due(now=0.0, leading=True):
            _, out = state.cycle(now=0.0, leading=True)
            return [b.bind.pod.name for b in binds(out)]
        workflow_pod(state, "long", "long", now=0.02)
        now = 0.02
        while not state.cycle_due(now=now, leading=True):
            now += 0.01
        _, out = state.cycle(now=now, leading=True)
        return [b.bind.pod.name for b in binds(out)]

    assert first_bound(0.0) == ["short"]  # decided before the release was whole
    assert first_bound(0.05) == ["long"]


def test_a_cycle_hands_out_no_more_binds_than_free_slots():
    state = make_state(bind_workers=1)  # 16 slots
    add_node(state, cpu="100", memory="100Gi")
    for i in range(40):
        add_pod(state, f"p{i}")
    _, out = state.cycle(now=0.0, leading=True)
    assert len(binds(out)) == 16 == state.max_in_flight_binds
    assert state.bind_slots() == 0 and not state.cycle_due(now=0.0, leading=True)
    for start in binds(out)[:7]:
        state.bind_reported(st.BindOutcome(bind=start.bind, ok=True), now=0.1)
    assert not state.cycle_due(now=0.1, leading=True)  # fewer than half the slots free
    state.bind_reported(st.BindOutcome(bind=binds(out)[7].bind, ok=True), now=0.1)
    assert state.cycle_due(now=0.1, leading=True)
    _, more = state.cycle(now=0.2, leading=True)
    assert len(binds(more)) == 8


# --- the binding cycle's outcomes -----------------------------------------------------------------


def test_a_bind_confirmed_by_the_watch_leaves_only_the_cache_entry():
    state = make_state()
    start = start_one(state, "a")
    state.pod_changed(facts("a", node_name="n1", phase="Running"), deleted=False, now=0.2)
    assert state.pods == {} and "uid-a" not in {t.pod.uid for t in state.queue.tasks()}
    assert state.bind_reported(st.BindOutcome(bind=start.bind, ok=True), now=0.3) == []
    assert state.cache.snapshot().requested_on("n1").cpu_millis == 1000
    assert state.stats.binds_ok == 1


def test_a_refused_bind_returns_to_its_place_with_a_growing_backoff():
    state = make_state(unschedulable_backoff_s=4.0)
    add_node(state, cpu="1")
    add_pod(state, "a")
    add_pod(state, "b")
    now, waits = 0.0, []
    for _ in range(4):
        _, out = state.cycle(now=now, leading=True)
        (start,) = binds(out)
        assert start.bind.pod.name == "a"
        warned = state.bind_reported(outcome(start, status=500, reason="boom"), now=now)
        assert [e.reason for e in warned] == ["FailedScheduling"] and "(500)" in warned[0].note
        assert [t.key.task for t in state.queue.tasks()] == ["a", "b"]
        assert state.cache.snapshot().requested_on("n1").cpu_millis == 0  # forgotten
        key = state.queue.tasks()[0].key
        waited = 0.0
        while state.queue.backing_off(key, now + waited):
            waited += 0.5
        waits.append(waited)
        now += 100.0
    assert waits == [1.0, 2.0, 4.0, 4.0]
    assert state.stats.binds_failed == 4


def test_a_conflict_is_not_reported_and_a_404_drops_the_task():
    state = make_state()
    start = start_one(state, "a")
    assert state.bind_reported(outcome(start, status=409), now=0.1) == []
    assert state.phase_of("uid-a") is st.PodPhase.QUEUED
    _, out = state.cycle(now=5.0, leading=True)
    (again,) = binds(out)
    assert state.bind_reported(outcome(again, status=404), now=5.1) == []
    assert state.pods == {} and len(state.queue) == 0 and state.cache.assumed() == []


def test_an_abandoned_bind_requeues_without_penalty():
    state = make_state()
    start = start_one(state, "a")
    assert state.bind_reported(outcome(start, abandoned=True), now=0.1) == []
    assert state.phase_of("uid-a") is st.PodPhase.QUEUED
    assert not state.queue.backing_off(state.queue.tasks()[0].key, 0.1)
    assert state.cache.assumed() == [] and state.stats.binds_abandoned == 1


def test_a_refused_resize_binds_again_with_the_original_request():
    state = make_state()
    start = start_one(state, "a")
    out = state.bind_reported(outcome(start, status=422, resize_refused=True), now=0.1)
    assert [e.reason for e in out] == ["ResizeRefused"]
    assert state.phase_of("uid-a") is st.PodPhase.QUEUED
    assert not state.queue.backing_off(state.queue.tasks()[0].key, 0.1)


def test_an_outcome_for_a_pod_deleted_meanwhile_changes_nothing():
    state = make_state()
    start = start_one(state, "a")
    state.pod_changed(facts("a"), deleted=True, now=0.1)
    assert state.pods == {} and state.cache.assumed() == []
    assert state.bind_reported(outcome(start, status=500), now=0.2) == []
    assert state.pods == {} and len(state.queue) == 0


def test_an_assumed_pod_the_watch_never_confirms_expires():
    state = make_state(assumed_pod_ttl_s=30.0)
    start = start_one(state, "a")
    state.bind_reported(st.BindOutcome(bind=start.bind, ok=True), now=1.0)
    state.tick(now=30.0, leading=True)
    assert [p.name for p in state.cache.assumed()] == ["a"]
    state.tick(now=31.0, leading=True)
    assert state.cache.assumed() == [] and state.stats.assumed_expired == 1


# --- held pods, DAG documents ---------------------------------------------------------------------


class HoldUntilReleased:
    def __init__(self) -> None:
        self.released = False
        self.seen_finished: list[str] = []

    def describe(self, facts, labels):
        return labels, not self.released

    def finished(self, facts, labels):
        self.seen_finished.append(facts.ref.name)


def test_held_pods_wait_for_their_hook_and_are_released_by_refresh():
    state = make_state()
    hook = HoldUntilReleased()
    state.task_hooks.append(hook)
    add_node(state)
    add_pod(state, "a")
    assert state.phase_of("uid-a") is st.PodPhase.HELD and len(state.queue) == 0
    hook.released = True
    state.refresh_held(now=1.0)
    assert state.phase_of("uid-a") is st.PodPhase.QUEUED
    state.pod_changed(facts("a", node_name="n1", phase="Succeeded"), deleted=False, now=2.0)
    assert hook.seen_finished == ["a"]


def test_a_dag_reference_is_fetched_once_and_a_broken_document_is_reported():
    state = make_state()
    labels = {"wfsched.io/run-id": "r"}
    notes = {"wfsched.io/dag-configmap": "dag"}
    out = add_pod(state, "a", labels=labels, annotations=notes)
    fetch = [i for i in out if isinstance(i, st.FetchDag)]
    assert [(f.run, f.ref) for f in fetch] == [("ns/r", ("ns", "dag"))]
    assert [i for i in add_pod(state, "b", labels=labels, annotations=notes) if i in fetch] == []
    refused = state.dag_loaded(
        st.DagLoaded(run=fetch[0].run, text="{not json", configmap=("ns", "dag", "cm-uid"))
    )
    assert [(e.regarding_kind, e.reason) for e in refused] == [
        ("ConfigMap", "InvalidWorkflowDAG"),
        ("Pod", "InvalidWorkflowDAG"),
    ]


def test_malformed_metadata_is_reported_once():
    state = make_state()
    out = add_pod(state, "a", annotations={"wfsched.io/input-size": "huge"})
    assert [e.reason for e in events(out)] == ["InvalidWorkflowMetadata"]
    again = state.pod_changed(
        facts("a", annotations={"wfsched.io/input-size": "huge"}), deleted=False, now=1.0
    )
    assert events(again) == []


# --- a failing cycle ------------------------------------------------------------------------------


@dataclasses.dataclass
class Poisoned:
    inner: object
    name: str = "poisoned"

    def rank(self, tasks, view, ctx):
        if any(t.key.task == "poison" for t in tasks):
            raise ValueError("cannot rank poison")
        return self.inner.rank(tasks, view, ctx)


def test_the_task_that_breaks_cycles_is_set_aside_and_retried_later():
    state = make_state()
    state.policies = dataclasses.replace(state.policies, ranking=Poisoned(state.policies.ranking))
    add_node(state, cpu="8")
    for name in ("a", "poison", "b"):
        add_pod(state, name)
    result, out = state.cycle(now=0.0, leading=True)
    assert result is None and [e.name for e in events(out, "FailedScheduling")] == ["poison"]
    assert state.phase_of("uid-poison") is st.PodPhase.SET_ASIDE
    state.tick(now=0.0, leading=True)
    assert state.wake_at(now=0.0) == 1.0  # the set-aside task's retry is the next thing due
    _, out = state.cycle(now=0.0, leading=True)
    assert sorted(b.bind.pod.name for b in binds(out)) == ["a", "b"]
    state.tick(now=1.0, leading=True)
    assert state.phase_of("uid-poison") is st.PodPhase.QUEUED
    _, out = state.cycle(now=1.0, leading=True)
    assert "set aside for 2s" in events(out)[0].note


def test_a_policy_that_always_fails_backs_the_whole_cycle_off():
    class Broken:
        name = "broken"

        def rank(self, tasks, view, ctx):
            raise RuntimeError("broken")

    state = make_state()
    state.policies = dataclasses.replace(state.policies, ranking=Broken())
    add_node(state)
    add_pod(state, "a")
    add_pod(state, "b")
    assert state.cycle(now=0.0, leading=True) == (None, [])
    assert not state.cycle_due(now=0.5, leading=True) and state.cycle_due(now=1.0, leading=True)
    state.cycle(now=1.0, leading=True)
    assert not state.cycle_due(now=2.5, leading=True) and state.cycle_due(now=3.0, leading=True)
    assert {state.phase_of("uid-a"), state.phase_of("uid-b")} == {st.PodPhase.QUEUED}


# --- time and memory ------------------------------------------------------------------------------


def test_ticks_ask_for_the_periodic_cycle_and_save_memory_only_when_leading_and_changed():
    from scheduler.runtime import memory as memory_mod

    state = st.SchedulerState(
        settings=Settings(cycle_interval_s=10, memory_save_interval_s=30),
        policies=registry.parse_strategy("fifo").build(),
        metrics=metrics.Metrics(),
        memory=memory_mod.MemoryModel(registry.parse_predictor("ponder")),
    )
    assert state.tick(now=0.0, leading=True) == []  # nothing observed yet
    state.memory.observe(("wf", "step"), 1.0, 1e9)
    assert state.tick(now=10.0, leading=True) == []  # not due before 30 s
    assert state.tick(now=30.0, leading=False) == []  # a follower never saves
    saved = state.tick(now=60.0, leading=True)
    assert len(saved) == 1 and isinstance(saved[0], st.SaveMemory)
    assert state.tick(now=90.0, leading=True) == []  # unchanged since


@pytest.mark.parametrize("leading", [True, False])
def test_the_idle_wake_up_time_is_never_in_the_past_after_a_tick(leading):
    state = make_state()
    for now in (0.0, 3.7, 12.5):
        state.tick(now=now, leading=leading)
        assert state.wake_at(now=now) > now


def test_labels_come_from_the_workflow_convention():
    state = make_state()
    labels, held = state.labels_of(facts("a", labels={"wfsched.io/run-id": "r"}))
    assert isinstance(labels, workflows.TaskLabels) and labels.run == "ns/r" and not held


def test_a_warm_cycle_without_gangs_leaves_the_queue_order_unread(monkeypatch):
    """Reading ``queue.tasks()`` lays out the whole order (O(tasks)); a cycle needs it only to
    keep the clocks of waiting gangs, so without a gang member in the queue it is not read."""
    state = make_state()
    add_node(state, cpu="1")
    for name in ("a", "b", "c"):
        add_pod(state, name)
    state.cycle(now=0.0, leading=True)  # cold: a is bound, b and c wait
    reads = []
    real = state.queue.tasks
    monkeypatch.setattr(state.queue, "tasks", lambda: reads.append(1) or real())
    add_pod(state, "d", now=1.0)
    state.mark_dirty()
    state.cycle(now=1.0, leading=True)
    assert state.queue.gang_member_count == 0 and len(state.queue) == 3
    assert reads == []
    assert state.gangs.board.waiting_since == {}
