"""Gangs in the state machine and the gang binding cycle, without threads or a server."""

from __future__ import annotations

import pytest
from test_loop import node, pod

from scheduler import registry
from scheduler.kube import translate
from scheduler.runtime import gangbind, metrics
from scheduler.runtime import gangs as gangs_mod
from scheduler.runtime import state as st
from scheduler.runtime.settings import Settings, SettingsError, load_settings


def make_state(**settings):
    settings.setdefault("bind_workers", 2)
    return st.SchedulerState(
        settings=Settings(**settings),
        policies=registry.parse_strategy("fifo-roundrobin").build(),
        metrics=metrics.Metrics(),
    )


def add_node(state, name="n1", cpu="4"):
    info, _ = translate.node_info(node(name, cpu=cpu))
    state.node_changed(name, info)


def group_pod(name, group, **kwargs):
    raw = pod(name, labels={"wfsched.io/run-id": "r", "wfsched.io/step": "mpi"}, **kwargs)
    raw["spec"]["schedulingGroup"] = {"podGroupName": group}
    return raw


def annotated_pod(name, size, step="mpi", **kwargs):
    labels = {"wfsched.io/run-id": "r", "wfsched.io/step": step}
    return pod(name, labels=labels, annotations={"wfsched.io/gang-size": size}, **kwargs)


def pod_group(name, min_count=None, *, policy=None):
    spec_policy = policy or {"gang": {"minCount": min_count}}
    return {
        "metadata": {"name": name, "namespace": "ns", "uid": f"pg-{name}"},
        "spec": {"schedulingPolicy": spec_policy},
    }


def add(state, raw, now=0.0):
    return state.pod_changed(translate.pod_facts(raw), deleted=False, now=now)


def gang_binds(out):
    return [i for i in out if isinstance(i, gangs_mod.StartGangBind)]


def test_translation_reads_scheduling_group_and_pod_group_policies():
    facts = translate.pod_facts(group_pod("p", "g1"))
    assert facts.scheduling_group == "g1"
    assert translate.slim_pod(group_pod("p", "g1"))["spec"]["schedulingGroup"] == {
        "podGroupName": "g1"
    }
    assert translate.pod_group_info(pod_group("g1", 3)).min_count == 3
    assert translate.pod_group_info(pod_group("g", policy={"basic": {}})).min_count is None
    bad = translate.pod_group_info(pod_group("g", 0))
    assert bad.min_count is None and "minCount" in bad.problem
    broken = pod("p")
    broken["spec"]["schedulingGroup"] = {"podGroupName": 7}
    assert translate.pod_facts(broken).problems[0].field == "spec.schedulingGroup.podGroupName"


def test_pod_group_gang_waits_for_its_pod_group_then_binds_as_one():
    state = make_state()
    add_node(state)
    for i in range(3):
        add(state, group_pod(f"p{i}", "g1"))
    _, out = state.cycle(now=1.0, leading=True)
    assert gang_binds(out) == []  # the PodGroup has not been seen
    state.pod_group_changed(translate.pod_group_info(pod_group("g1", 3)), deleted=False, now=2)
    _, out = state.cycle(now=2.0, leading=True)
    (start,) = gang_binds(out)
    assert start.gang == "podgroup:ns/g1"
    assert [m.bind.pod.name for m in start.members] == ["p0", "p1", "p2"]
    assert not [i for i in out if isinstance(i, st.StartBind)]


def test_annotation_gang_and_a_malformed_size_reported():
    state = make_state()
    add_node(state, cpu="2")
    add(state, annotated_pod("a0", "2"))
    add(state, annotated_pod("a1", "2"))
    out = add(state, annotated_pod("x", "two", step="other"))
    assert any("gang-size" in i.note for i in out if isinstance(i, st.RecordEvent))
    _, out = state.cycle(now=0.0, leading=True)
    (start,) = gang_binds(out)
    assert start.gang == "step:ns/r/mpi"
    assert len(start.members) == 2


def test_bound_members_count_and_a_failed_member_returns_the_gang():
    state = make_state()
    add_node(state, cpu="2")
    add(state, annotated_pod("a0", "2"))
    add(state, annotated_pod("a1", "2"))
    _, out = state.cycle(now=0.0, leading=True)
    (start,) = gang_binds(out)
    first, second = start.members
    assert state.gangs.board_for_cycle().bound == {"step:ns/r/mpi": 2}
    state.bind_reported(st.BindOutcome(bind=first.bind, ok=True), now=1)
    state.bind_reported(st.BindOutcome(bind=second.bind, ok=False, status=409), now=1)
    assert state.gangs.board_for_cycle().bound == {"step:ns/r/mpi": 1}
    assert state.phase_of("uid-a1") is st.PodPhase.QUEUED


def _bind_outcomes(results):
    calls = []

    def bind_one(member):
        calls.append(member.bind.pod.name)
        ok, status = results[member.bind.pod.name]
        return st.BindOutcome(bind=member.bind, ok=ok, status=status)

    return calls, bind_one


def _gang_start(state_names=("a0", "a1", "a2")):
    state = make_state()
    add_node(state, cpu="4")
    for name in state_names:
        add(state, annotated_pod(name, str(len(state_names))))
    _, out = state.cycle(now=0.0, leading=True)
    (start,) = gang_binds(out)
    return start


def test_gang_binding_all_ok():
    start = _gang_start()
    calls, bind_one = _bind_outcomes({n: (True, 0) for n in ("a0", "a1", "a2")})
    deleted = []
    outcomes = gangbind.bind_gang(start, bind_one=bind_one, delete_pod=lambda *a: deleted.append(a))
    assert [o.ok for o in outcomes] == [True, True, True]
    assert calls == ["a0", "a1", "a2"] and deleted == []


def test_a_failed_member_deletes_the_bound_ones_and_never_sends_the_rest():
    start = _gang_start()
    calls, bind_one = _bind_outcomes({"a0": (True, 0), "a1": (False, 409), "a2": (True, 0)})
    deleted = []
    outcomes = gangbind.bind_gang(start, bind_one=bind_one, delete_pod=lambda *a: deleted.append(a))
    assert calls == ["a0", "a1"]  # a2 never sent
    assert [(o.ok, o.abandoned) for o in outcomes] == [(True, False), (False, False), (False, True)]
    assert deleted == [("ns", "a0", "uid-a0")]
    assert outcomes[2].reason == st.GANG_NOT_SENT


def test_never_sent_members_return_to_the_queue_without_penalty_and_are_counted_apart():
    state = make_state()
    add_node(state, cpu="4")
    for name in ("a0", "a1", "a2"):
        add(state, annotated_pod(name, "3"))
    _, out = state.cycle(now=0.0, leading=True)
    (start,) = gang_binds(out)
    calls, bind_one = _bind_outcomes({"a0": (False, 409), "a1": (True, 0), "a2": (True, 0)})
    for outcome in gangbind.bind_gang(start, bind_one=bind_one, delete_pod=None):
        state.bind_reported(outcome, now=1.0)
    assert calls == ["a0"]
    assert [state.phase_of(f"uid-a{i}") for i in range(3)] == [st.PodPhase.QUEUED] * 3
    assert not state.queue.backing_off(start.members[1].bind.task, 1.0)
    assert state.queue.backing_off(start.members[0].bind.task, 1.0)
    sample = state.metrics.bind_errors.labels(reason="gang_undone")._value.get()
    assert sample == 2


def test_lost_leadership_midway_deletes_nothing():
    start = _gang_start()

    def bind_one(member):
        if member.bind.pod.name == "a0":
            return st.BindOutcome(bind=member.bind, ok=True)
        return st.BindOutcome(bind=member.bind, ok=False, abandoned=True)

    deleted = []
    outcomes = gangbind.bind_gang(start, bind_one=bind_one, delete_pod=lambda *a: deleted.append(a))
    assert [o.ok for o in outcomes] == [True, False, False] and deleted == []


def test_pod_group_with_basic_policy_makes_no_gang():
    state = make_state()
    add_node(state)
    state.pod_group_changed(
        translate.pod_group_info(pod_group("b", policy={"basic": {}})), deleted=False, now=0
    )
    add(state, group_pod("p0", "b"))
    _, out = state.cycle(now=0.0, leading=True)
    assert gang_binds(out) == [] and len([i for i in out if isinstance(i, st.StartBind)]) == 1


def test_gang_settings_from_yaml_and_environment_and_bad_values_named(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("gangs:\n  timeout_s: 5\n  reserve_after_s: 2\n")
    loaded = load_settings(config, env={"WFSCHED_GANGS__RESERVE_FOR_S": "9"})
    assert (loaded.gangs.timeout_s, loaded.gangs.reserve_after_s) == (5.0, 2.0)
    assert loaded.gangs.reserve_for_s == 9.0
    config.write_text("gangs:\n  timeout_s: -1\n  reserve_for_s: 0\n")
    with pytest.raises(SettingsError) as info:
        load_settings(config, env={})
    assert "gangs.timeout_s: must be >= 0" in str(info.value)
    assert "gangs.reserve_for_s: must be > 0" in str(info.value)
