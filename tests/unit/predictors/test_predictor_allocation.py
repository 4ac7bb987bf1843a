"""The allocation policy: floor, cap, round up to MiB, never above the user's request (D4)."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from predictors import allocation, base

MIB = base.MIB
POLICY = allocation.AllocationPolicy()


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0, 0), (1, MIB), (MIB - 1, MIB), (MIB, MIB), (MIB + 1, 2 * MIB), (5 * MIB, 5 * MIB)],
)
def test_round_up_to_full_mib(value: int, expected: int) -> None:
    assert allocation.round_up_to_mib(value) == expected


def test_round_up_rejects_bad_values() -> None:
    for bad in (-1, math.nan, math.inf):
        with pytest.raises(ValueError):
            allocation.round_up_to_mib(bad)


@pytest.mark.parametrize(
    ("prediction", "request_bytes", "expected"),
    [
        (None, 4096 * MIB, 4096 * MIB),  # no opinion: the request stays
        (math.nan, 4096 * MIB, 4096 * MIB),
        (-5.0, 4096 * MIB, 4096 * MIB),
        (0.0, 4096 * MIB, 4096 * MIB),
        (10 * MIB, 4096 * MIB, 128 * MIB),  # floor
        (200.5 * MIB, 4096 * MIB, 201 * MIB),  # rounded up
        (5000 * MIB, 4096 * MIB, 4096 * MIB),  # capped at the request
        (10 * MIB, 100 * MIB, 100 * MIB),  # the floor never exceeds the request (D4)
        (99.5 * MIB, 100 * MIB - 7, 100 * MIB - 7),  # rounding never exceeds it either
    ],
)
def test_allocate(prediction: float | None, request_bytes: int, expected: int) -> None:
    assert POLICY.allocate(prediction, request_bytes=request_bytes) == expected


def test_cap_and_floor_order_d4() -> None:
    policy = allocation.AllocationPolicy(floor_bytes=256 * MIB, cap_bytes=1024 * MIB)
    assert policy.allocate(2048 * MIB, request_bytes=4096 * MIB) == 1024 * MIB
    assert policy.allocate(10 * MIB, request_bytes=4096 * MIB) == 256 * MIB
    assert policy.allocate(2048 * MIB, request_bytes=512 * MIB) == 512 * MIB
    assert policy.allocate(10 * MIB, request_bytes=200 * MIB) == 200 * MIB


def test_floor_per_cpu_scales_with_the_requested_cpus() -> None:
    policy = allocation.AllocationPolicy(floor_bytes=128 * MIB, floor_bytes_per_cpu=1024 * MIB)
    request = 64 * 1024 * MIB
    assert policy.allocate(200 * MIB, request_bytes=request, cpus=4) == 4096 * MIB
    assert policy.allocate(200 * MIB, request_bytes=request, cpus=0.5) == 512 * MIB
    assert policy.allocate(9000 * MIB, request_bytes=request, cpus=4) == 9000 * MIB  # above it
    # CPUs not known: only the flat floor
    assert policy.allocate(10 * MIB, request_bytes=request) == 128 * MIB
    assert policy.allocate(10 * MIB, request_bytes=request, cpus=math.nan) == 128 * MIB
    assert policy.allocate(10 * MIB, request_bytes=request, cpus=0) == 128 * MIB
    # the flat floor still wins for a task with few CPUs, and neither exceeds the request
    assert policy.allocate(10 * MIB, request_bytes=request, cpus=0.1) == 128 * MIB
    assert policy.allocate(10 * MIB, request_bytes=3000 * MIB, cpus=4) == 3000 * MIB
    # no opinion: the request stays whatever the floor
    assert policy.allocate(None, request_bytes=request, cpus=4) == request


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError):
        POLICY.allocate(1.0, request_bytes=0)
    with pytest.raises(ValueError):
        allocation.AllocationPolicy(floor_bytes=-1)
    with pytest.raises(ValueError):
        allocation.AllocationPolicy(floor_bytes_per_cpu=-1)
    with pytest.raises(ValueError):
        allocation.AllocationPolicy(cap_bytes=0)


@given(
    prediction=st.none() | st.floats(allow_nan=True, allow_infinity=True),
    request=st.integers(min_value=1, max_value=1 << 45),
    floor=st.integers(min_value=0, max_value=1 << 40),
    cap=st.none() | st.integers(min_value=1, max_value=1 << 45),
    per_cpu=st.integers(min_value=0, max_value=1 << 36),
    cpus=st.none() | st.floats(allow_nan=True, allow_infinity=True),
)
def test_allocation_never_exceeds_the_request(
    prediction: float | None,
    request: int,
    floor: int,
    cap: int | None,
    per_cpu: int,
    cpus: float | None,
) -> None:
    policy = allocation.AllocationPolicy(
        floor_bytes=floor, cap_bytes=cap, floor_bytes_per_cpu=per_cpu
    )
    planned = policy.allocate(prediction, request_bytes=request, cpus=cpus)
    assert 0 < planned <= request
    assert planned == request or planned % MIB == 0
