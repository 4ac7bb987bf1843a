from decimal import Decimal

import pytest

from scheduler.core import errors, podrequest, resources
from scheduler.core.resources import Resources


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", Decimal(0)),
        ("1", Decimal(1)),
        ("+2", Decimal(2)),
        ("1.5", Decimal("1.5")),
        (".5", Decimal("0.5")),
        ("5.", Decimal(5)),
        ("1e3", Decimal(1000)),
        ("1E3", Decimal(1000)),
        ("2e-3", Decimal("0.002")),
        ("1.5e+2", Decimal(150)),
        ("100n", Decimal("1E-7")),
        ("250u", Decimal("0.00025")),
        ("500m", Decimal("0.5")),
        ("2k", Decimal(2000)),
        ("3M", Decimal(3_000_000)),
        ("1G", Decimal(10**9)),
        ("1T", Decimal(10**12)),
        ("1P", Decimal(10**15)),
        ("1E", Decimal(10**18)),
        ("1Ki", Decimal(1024)),
        ("1Mi", Decimal(2**20)),
        ("1.5Gi", Decimal(3 * 2**29)),
        ("2Ti", Decimal(2 * 2**40)),
        ("1Pi", Decimal(2**50)),
        ("1Ei", Decimal(2**60)),
        ("-0", Decimal(0)),
        (" 7 ", Decimal(7)),
        (3, Decimal(3)),
        (0.25, Decimal("0.25")),
    ],
)
def test_parse_quantity_every_form(text: str | int | float, expected: Decimal) -> None:
    assert resources.parse_quantity(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "abc",
        "1x",
        "1KI",
        "1ki",
        "Ki",
        "1e",
        "1ee3",
        "1e3Ki",
        "--1",
        "1.2.3",
        "-1",
        "-1Gi",
        "-0.5",
        "1 Gi",
        "1e999",
        -1,
        -0.5,
        float("nan"),
        float("inf"),
        True,
        None,
        [1],
    ],
)
def test_parse_quantity_rejects_garbage_and_negatives(text: object) -> None:
    with pytest.raises(errors.QuantityError):
        resources.parse_quantity(text)  # type: ignore[arg-type]


def test_quantity_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="malformed"):
        resources.parse_quantity("nope")


@pytest.mark.parametrize(
    ("text", "millis"),
    [
        ("1", 1000),
        ("0.5", 500),
        ("100m", 100),
        ("1n", 1),
        ("1500u", 2),
        ("1e-3", 1),
        ("2k", 2_000_000),
    ],
)
def test_cpu_millis_rounds_up(text: str, millis: int) -> None:
    assert resources.cpu_millis(text) == millis


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1Ki", 1024),
        ("1.5Gi", 3 * 2**29),
        ("1e3", 1000),
        ("0.5", 1),
        ("128974848", 128974848),
        ("129e6", 129_000_000),
        ("123Mi", 123 * 2**20),
        ("1m", 1),
    ],
)
def test_integer_value_rounds_up(text: str, value: int) -> None:
    assert resources.integer_value(text) == value


def test_too_large_for_int64_rejected() -> None:
    with pytest.raises(errors.QuantityError, match="too large"):
        resources.integer_value("100Ei")


def test_from_quantities_splits_core_and_extended() -> None:
    r = Resources.from_quantities(
        {
            "cpu": "250m",
            "memory": "1Gi",
            "pods": "110",
            "nvidia.com/gpu": "2",
            "ephemeral-storage": "1Ki",
        }
    )
    assert (r.cpu_millis, r.memory_bytes, r.pods) == (250, 2**30, 110)
    assert r.extended == (("ephemeral-storage", 1024), ("nvidia.com/gpu", 2))
    assert r.get("nvidia.com/gpu") == 2
    assert r.get("cpu") == 250
    assert r.get("missing") == 0


def test_extended_is_normalised_for_equality_and_hash() -> None:
    a = Resources.of(extended={"b": 1, "a": 2, "zero": 0})
    b = Resources(extended=(("a", 1), ("b", 1), ("a", 1)))
    assert a == b
    assert hash(a) == hash(b)
    assert a.extended == (("a", 2), ("b", 1))


def test_arithmetic_and_maximum() -> None:
    a = Resources.of(cpu_millis=1000, memory_bytes=10, pods=1, extended={"gpu": 1})
    b = Resources.of(cpu_millis=300, memory_bytes=20, extended={"fpga": 2})
    assert a + b == Resources.of(
        cpu_millis=1300, memory_bytes=30, pods=1, extended={"gpu": 1, "fpga": 2}
    )
    assert a - b == Resources.of(
        cpu_millis=700, memory_bytes=-10, pods=1, extended={"gpu": 1, "fpga": -2}
    )
    assert a.maximum(b) == Resources.of(
        cpu_millis=1000, memory_bytes=20, pods=1, extended={"gpu": 1, "fpga": 2}
    )
    assert a.with_memory(5).memory_bytes == 5


def test_insufficient_only_reports_requested_resources() -> None:
    request = Resources.of(cpu_millis=500, memory_bytes=100, pods=1, extended={"gpu": 1})
    free = Resources.of(cpu_millis=400, memory_bytes=100, pods=0, extended={"fpga": -3})
    assert request.insufficient(free) == ("cpu", "pods", "gpu")
    assert not request.fits(free)
    assert Resources.of(memory_bytes=1).fits(Resources.of(memory_bytes=1, cpu_millis=-5))


# -- effective request --------------------------------------------------------------------


def c(
    cpu: int = 0, mem: int = 0, *, sidecar: bool = False, allocated: Resources | None = None
) -> podrequest.ContainerResources:
    return podrequest.ContainerResources(
        requests=Resources(cpu_millis=cpu, memory_bytes=mem), sidecar=sidecar, allocated=allocated
    )


@pytest.mark.parametrize(
    ("containers", "inits", "overhead", "expected"),
    [
        ([c(100, 10), c(200, 20)], [], None, (300, 30)),
        ([c(100, 10)], [c(500, 5)], None, (500, 10)),  # regular init dominates cpu only
        ([c(100, 10)], [c(50, 5, sidecar=True)], None, (150, 15)),  # sidecar runs alongside
        # sidecar started before a regular init container adds to that container's peak
        ([c(100, 10)], [c(50, 5, sidecar=True), c(400, 40)], None, (450, 45)),
        # a regular init before the sidecar does not include it
        ([c(100, 10)], [c(400, 40), c(50, 5, sidecar=True)], None, (400, 40)),
        ([c(100, 10)], [c(300, 1)], Resources(cpu_millis=10, memory_bytes=1), (310, 11)),
        ([], [], None, (0, 0)),
    ],
)
def test_effective_request(
    containers: list[podrequest.ContainerResources],
    inits: list[podrequest.ContainerResources],
    overhead: Resources | None,
    expected: tuple[int, int],
) -> None:
    request = podrequest.effective_request(
        containers=containers, init_containers=inits, overhead=overhead
    )
    assert (request.cpu_millis, request.memory_bytes, request.pods) == (*expected, 1)


def test_effective_request_uses_max_of_spec_and_resize_status() -> None:
    resized = c(100, 100, allocated=Resources(cpu_millis=50, memory_bytes=300))
    request = podrequest.effective_request(containers=[resized])
    assert (request.cpu_millis, request.memory_bytes) == (100, 300)


def test_pod_level_resources_replace_cpu_and_memory_but_keep_extended() -> None:
    gpu = podrequest.ContainerResources(requests=Resources.of(cpu_millis=100, extended={"gpu": 1}))
    request = podrequest.effective_request(
        containers=[gpu], pod_level=Resources(cpu_millis=2000, memory_bytes=2**30)
    )
    assert (request.cpu_millis, request.memory_bytes, request.get("gpu")) == (2000, 2**30, 1)
