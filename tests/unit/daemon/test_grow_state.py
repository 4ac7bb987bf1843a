"""Grow-in-place in the state machine: usage in, resizes out, the room accounted at once."""

from __future__ import annotations

from test_loop import node

from scheduler import registry
from scheduler.kube import translate
from scheduler.runtime import grow, metrics
from scheduler.runtime import state as st
from scheduler.runtime.settings import Settings

MiB = 1 << 20


def make_state(**settings):
    settings.setdefault("grow_in_place", True)
    return st.SchedulerState(
        settings=Settings(bind_workers=2, **settings),
        policies=registry.parse_strategy("fifo-roundrobin").build(),
        metrics=metrics.Metrics(),
    )


def running(name, *, memory="1000Mi", limit="1000Mi", node_name="n1", phase="Running"):
    resources = {"requests": {"cpu": "100m", "memory": memory}}
    if limit:
        resources["limits"] = {"memory": limit}
    return translate.pod_facts(
        {
            "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}"},
            "spec": {
                "schedulerName": "workflow-scheduler",
                "nodeName": node_name,
                "containers": [{"name": "main", "resources": resources}],
            },
            "status": {"phase": phase},
        }
    )


def with_node(state, memory="4000Mi"):
    info, _ = translate.node_info(node("n1", memory=memory))
    state.node_changed("n1", info)


def requested_mib(state) -> int:
    return state.cache.snapshot().requested_on("n1").memory_bytes // MiB


def grown(metrics_obj, result) -> float:
    return metrics_obj.memory_grows.labels(result=result)._value.get()


def test_usage_past_the_threshold_grows_and_counts_the_room_at_once() -> None:
    state = make_state()
    with_node(state)
    state.pod_changed(running("p"), deleted=False, now=0)
    assert state.pod_usage({("ns", "p"): 700 * MiB}) == []
    out = state.pod_usage({("ns", "p"): 850 * MiB})
    (resize,) = out
    assert isinstance(resize, grow.GrowMemory)
    assert (resize.limit_bytes, resize.request_bytes) == (1500 * MiB, 1500 * MiB)
    assert resize.container == "main" and resize.grows == 1
    assert requested_mib(state) == 1500  # counted before the watch shows it
    # In flight: no second decision.
    assert state.pod_usage({("ns", "p"): 900 * MiB}) == []
    state.grow_reported(grow.GrowReported(instruction=resize, ok=True))
    assert grown(state.metrics, "grown") == 1
    # A stale watch event (the old spec) does not give the room back.
    state.pod_changed(running("p"), deleted=False, now=1)
    assert requested_mib(state) == 1500
    # Usage well below the new limit: nothing more.
    assert state.pod_usage({("ns", "p"): 1000 * MiB}) == []
    # The watch catches up; then usage climbs again: a second grow from the new limit.
    state.pod_changed(running("p", memory="1500Mi", limit="1500Mi"), deleted=False, now=2)
    assert requested_mib(state) == 1500
    (again,) = state.pod_usage({("ns", "p"): 1250 * MiB})
    assert isinstance(again, grow.GrowMemory)
    assert again.old_limit_bytes == 1500 * MiB and again.limit_bytes == 2250 * MiB
    assert again.grows == 2


def test_a_refused_grow_gives_the_room_back() -> None:
    state = make_state()
    with_node(state)
    state.pod_changed(running("p"), deleted=False, now=0)
    (resize,) = state.pod_usage({("ns", "p"): 900 * MiB})
    assert requested_mib(state) == 1500
    state.grow_reported(grow.GrowReported(instruction=resize, ok=False, status=422, reason="no"))
    assert requested_mib(state) == 1000
    assert grown(state.metrics, "refused") == 1
    assert state.grower is not None and state.grower.grows_of("uid-p") == 0


def test_a_full_node_means_no_grow_and_one_notice() -> None:
    state = make_state()
    with_node(state, memory="1200Mi")
    state.pod_changed(running("p"), deleted=False, now=0)
    (notice,) = state.pod_usage({("ns", "p"): 900 * MiB})
    assert isinstance(notice, grow.GrowNotice)
    assert notice.outcome == "no_room"
    assert "200 MiB free" in notice.note and "OOM-killed" in notice.note
    assert requested_mib(state) == 1000
    assert grown(state.metrics, "no_room") == 1
    # Reported once per limit, not at every poll.
    assert state.pod_usage({("ns", "p"): 950 * MiB}) == []


def test_only_the_leader_grows_and_only_running_pods_of_ours_with_a_limit() -> None:
    state = make_state()
    with_node(state)
    state.pod_changed(running("p"), deleted=False, now=0)
    assert state.pod_usage({("ns", "p"): 900 * MiB}, leading=False) == []
    state.pod_changed(running("nolimit", limit=""), deleted=False, now=0)
    theirs = translate.pod_facts(
        {
            "metadata": {"name": "theirs", "namespace": "ns", "uid": "uid-theirs"},
            "spec": {
                "schedulerName": "default-scheduler",
                "nodeName": "n1",
                "containers": [{"name": "main", "resources": {"limits": {"memory": "100Mi"}}}],
            },
            "status": {"phase": "Running"},
        }
    )
    state.pod_changed(theirs, deleted=False, now=0)
    out = state.pod_usage(
        {("ns", "p"): 900 * MiB, ("ns", "nolimit"): 5000 * MiB, ("ns", "theirs"): 99 * MiB}
    )
    assert [i.ref.name for i in out] == ["p"]


def test_a_finished_pod_is_forgotten() -> None:
    state = make_state()
    with_node(state)
    state.pod_changed(running("p"), deleted=False, now=0)
    state.pod_changed(running("p", phase="Failed"), deleted=False, now=1)
    assert state.grower is not None and len(state.grower) == 0
    assert state.pod_usage({("ns", "p"): 900 * MiB}) == []


def test_grow_is_off_by_default() -> None:
    state = make_state(grow_in_place=False)
    with_node(state)
    state.pod_changed(running("p"), deleted=False, now=0)
    assert state.grower is None
    assert state.pod_usage({("ns", "p"): 999 * MiB}) == []
