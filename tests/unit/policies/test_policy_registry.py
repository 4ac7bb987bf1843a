import pytest

from scheduler import registry


@pytest.mark.parametrize(
    ("text", "ranking", "assignment"),
    [
        ("fifo", "fifo", "roundrobin"),
        ("FIFO", "fifo", "roundrobin"),
        ("rank_min-roundrobin", "rank_min", "roundrobin"),
        ("Rank_Min-Fair", "rank_min", "fair"),
        ("lff-rr", "lff_min", "roundrobin"),
        ("leastfinishedfirstmax-f", "lff_max", "fair"),
        ("gs", "gs_min", "roundrobin"),
        ("getsamples-random", "gs_min", "random"),
        ("gs_min", "gs_min", "roundrobin"),
        ("gsm-r", "gs_max", "random"),
        ("getsamplesmax", "gs_max", "roundrobin"),
        ("gs_max-binpack", "gs_max", "binpack"),
        ("r-r", "random", "random"),
        ("max-balanced", "max", "balanced"),
        ("min-loadaware", "min", "loadaware"),
        ("cp-bestfit", "critical_path", "binpack"),
        (" critical_path ", "critical_path", "roundrobin"),
    ],
)
def test_parse_strategy(text: str, ranking: str, assignment: str) -> None:
    spec = registry.parse_strategy(text)
    assert (spec.ranking, spec.assignment) == (ranking, assignment)
    assert str(spec) == f"{ranking}-{assignment}"


@pytest.mark.parametrize(
    ("text", "error", "message"),
    [
        (
            "bogus",
            registry.UnknownPolicyError,
            "unknown ranking policy 'bogus'; allowed: fifo, rank, rank_min",
        ),
        (
            "fifo-bogus",
            registry.UnknownPolicyError,
            "unknown assignment policy 'bogus'; allowed: roundrobin",
        ),
        ("rank_min-fair-x", registry.PolicyError, "3 parts"),
        ("wow", registry.UnknownPolicyError, "aliases: lff"),
        ("", registry.PolicyError, "empty part"),
        ("fifo-", registry.PolicyError, "empty part"),
        ("-fair", registry.PolicyError, "empty part"),
    ],
)
def test_parse_strategy_errors_name_the_allowed_values(
    text: str, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message.replace("(", r"\(")):
        registry.parse_strategy(text)


def test_errors_are_value_errors() -> None:
    assert issubclass(registry.UnknownPolicyError, ValueError)
    assert issubclass(registry.PolicyError, ValueError)


def test_policy_args_validated() -> None:
    with pytest.raises(registry.PolicyError, match=r"unknown argument.*allowed: threshold"):
        registry.ranking("gs").make({"treshold": 3})
    with pytest.raises(registry.PolicyError, match="takes no arguments"):
        registry.assignment("fair").make({"x": 1})
    assert registry.ranking("gs").make({"threshold": 3}).name == "gs_min"


def test_build_gives_fresh_instances() -> None:
    spec = registry.parse_strategy("rank-rr")
    assert spec.build().assignment is not spec.build().assignment
