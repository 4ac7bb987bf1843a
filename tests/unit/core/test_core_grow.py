"""The grow-in-place policy: when, by how much, how often, and only with room."""

from __future__ import annotations

import pytest

from scheduler.core import cluster, grow

MiB = 1 << 20
POLICY = grow.GrowPolicy(threshold=0.8, factor=1.5, max_grows=3)


def task(name="t", *, node="n1", request=1000, limit=1000, usage=800, grows=0):
    return grow.RunningTask(
        ref=cluster.PodRef(uid=f"u-{name}", namespace="ns", name=name),
        node_name=node,
        container="main",
        request_bytes=request * MiB,
        limit_bytes=limit * MiB,
        usage_bytes=usage * MiB,
        grows=grows,
    )


def test_below_the_threshold_nothing_is_decided() -> None:
    assert grow.plan_grows([task(usage=799)], {"n1": 10**12}, POLICY) == []


def test_a_task_without_a_limit_is_never_grown() -> None:
    assert grow.plan_grows([task(limit=0, usage=5000)], {"n1": 10**12}, POLICY) == []


def test_grow_by_the_factor_request_follows_the_limit() -> None:
    (decision,) = grow.plan_grows([task(request=1000, usage=800)], {"n1": 2000 * MiB}, POLICY)
    assert decision.outcome is grow.GrowOutcome.GROW
    assert decision.new_limit_bytes == 1500 * MiB
    assert decision.new_request_bytes == 1500 * MiB
    assert decision.added_bytes == 500 * MiB
    # A request below the limit rises by the same amount (the limit's headroom is kept).
    (burst,) = grow.plan_grows([task(request=600, usage=900)], {"n1": 2000 * MiB}, POLICY)
    assert (burst.new_request_bytes, burst.new_limit_bytes) == (1100 * MiB, 1500 * MiB)


def test_usage_far_past_the_threshold_grows_beyond_the_factor() -> None:
    # 1400 MiB used under a 1000 MiB limit (a late sample): 1400 / 0.8 = 1750 MiB.
    (decision,) = grow.plan_grows([task(usage=1400)], {"n1": 10**12}, POLICY)
    assert decision.new_limit_bytes == 1750 * MiB
    assert decision.new_limit_bytes * POLICY.threshold >= 1400 * MiB


def test_the_new_limit_is_whole_mib_and_clipped_to_the_cap() -> None:
    odd = grow.RunningTask(
        ref=cluster.PodRef(uid="u", namespace="ns", name="odd"),
        node_name="n1",
        container="main",
        request_bytes=1000 * MiB + 1,
        limit_bytes=1000 * MiB + 1,
        usage_bytes=900 * MiB,
    )
    assert grow.grown_limit(odd, POLICY) % MiB == 0
    capped = grow.GrowPolicy(max_limit_bytes=1200 * MiB)
    (decision,) = grow.plan_grows([task()], {"n1": 10**12}, capped)
    assert decision.new_limit_bytes == 1200 * MiB
    (at_cap,) = grow.plan_grows([task(limit=1200, usage=1100)], {"n1": 10**12}, capped)
    assert at_cap.outcome is grow.GrowOutcome.AT_CAP
    assert at_cap.added_bytes == 0


def test_no_room_leaves_the_task_as_it_is() -> None:
    (decision,) = grow.plan_grows([task()], {"n1": 499 * MiB}, POLICY)
    assert decision.outcome is grow.GrowOutcome.NO_ROOM
    assert decision.new_limit_bytes == 1000 * MiB
    assert decision.free_bytes == 499 * MiB
    (unknown_node,) = grow.plan_grows([task(node="gone")], {"n1": 10**12}, POLICY)
    assert unknown_node.outcome is grow.GrowOutcome.NO_ROOM


def test_at_most_max_grows() -> None:
    (decision,) = grow.plan_grows([task(grows=3)], {"n1": 10**12}, POLICY)
    assert decision.outcome is grow.GrowOutcome.EXHAUSTED


def test_the_most_urgent_task_gets_the_last_room_of_a_node() -> None:
    calm = task("calm", usage=820)
    urgent = task("urgent", usage=990)
    elsewhere = task("elsewhere", node="n2", usage=850)
    decisions = grow.plan_grows(
        [calm, elsewhere, urgent], {"n1": 700 * MiB, "n2": 600 * MiB}, POLICY
    )
    by_name = {d.task.ref.name: d for d in decisions}
    assert [d.task.ref.name for d in decisions] == ["urgent", "elsewhere", "calm"]
    assert by_name["urgent"].outcome is grow.GrowOutcome.GROW
    assert by_name["elsewhere"].outcome is grow.GrowOutcome.GROW
    # 700 - 500 = 200 MiB left on n1: not enough for the second grow there.
    assert by_name["calm"].outcome is grow.GrowOutcome.NO_ROOM
    assert by_name["calm"].free_bytes == 200 * MiB


@pytest.mark.parametrize(
    "kwargs",
    [
        {"threshold": 0.0},
        {"threshold": 1.0},
        {"factor": 1.0},
        {"factor": float("inf")},
        {"max_grows": 0},
        {"max_limit_bytes": -1},
    ],
)
def test_policy_parameters_out_of_range_are_refused(kwargs) -> None:
    with pytest.raises(grow.GrowPolicyError):
        grow.GrowPolicy(**kwargs)
