"""Shrink in place, the pure policy: how far a running task's memory is lowered, and when not."""

from __future__ import annotations

import pytest

from scheduler.core import shrink

MiB = 1 << 20
GiB = 1 << 30
POLICY = shrink.ShrinkPolicy()


def decide(request=36 * GiB, limit=36 * GiB, planned=2 * GiB, usage=0, policy=POLICY):
    return shrink.plan_shrink(
        request_bytes=request,
        limit_bytes=limit,
        planned_bytes=planned,
        usage_bytes=usage,
        policy=policy,
    )


def test_a_limit_equal_to_the_request_moves_with_it_to_the_plan() -> None:
    decision = decide()
    assert decision == shrink.ShrinkDecision(new_request_bytes=2 * GiB, new_limit_bytes=2 * GiB)
    assert decision.saved_bytes(36 * GiB) == 34 * GiB


def test_a_higher_limit_stays_and_no_limit_stays_none() -> None:
    assert decide(limit=48 * GiB) == shrink.ShrinkDecision(
        new_request_bytes=2 * GiB, new_limit_bytes=48 * GiB
    )
    assert decide(limit=0) == shrink.ShrinkDecision(new_request_bytes=2 * GiB, new_limit_bytes=0)


def test_never_below_the_usage_over_its_headroom_and_rounded_up_to_a_mib() -> None:
    # 3 GiB used: at least 3 GiB / 0.8 = 3.75 GiB, above the plan of 2 GiB.
    assert decide(usage=3 * GiB).new_request_bytes == 3840 * MiB
    odd = decide(planned=2 * GiB + 1)
    assert odd.new_request_bytes == 2 * GiB + MiB


@pytest.mark.parametrize(
    ("requested", "planned", "usage"),
    [
        (36 * GiB, 36 * GiB, 0),  # the plan is the request
        (36 * GiB, 40 * GiB, 0),  # the plan is above it
        (1 * GiB, 900 * MiB, 0),  # saves 124 MiB: under 256 MiB
        (8 * GiB, 7.5 * GiB, 0),  # saves 512 MiB, but under a tenth
        (36 * GiB, 2 * GiB, 30 * GiB),  # used too much to shrink by a tenth
        (0, 2 * GiB, 0),  # no request
        (36 * GiB, 0, 0),  # no plan
    ],
)
def test_nothing_is_done_when_it_does_not_pay(requested, planned, usage) -> None:
    assert decide(request=requested, limit=requested, planned=int(planned), usage=usage) is None


def test_the_thresholds_are_checked() -> None:
    for bad in (
        {"min_saving_bytes": -1},
        {"min_saving_fraction": 1.0},
        {"min_saving_fraction": -0.1},
        {"usage_headroom": 0.0},
        {"usage_headroom": 1.5},
    ):
        with pytest.raises(shrink.ShrinkPolicyError):
            shrink.ShrinkPolicy(**bad)
    # No thresholds at all: any saving counts.
    lenient = shrink.ShrinkPolicy(min_saving_bytes=0, min_saving_fraction=0.0)
    assert decide(request=GiB, limit=GiB, planned=GiB - MiB, policy=lenient) is not None
