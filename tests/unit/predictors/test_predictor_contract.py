"""Contract of every registered predictor and offset (style.md 2.3), by property testing."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from predictors import base
from scheduler import registry

SPECS = [
    f"{name}{suffix}"
    for name in (
        "lr",
        "lr2",
        "mean",
        "last",
        "ponder",
        "ponder(2)",
        "const",
        "const1000",
        "poly2",
        "poly3",
        "envelope",
        "wittlr",
        "wittpct",
        "wittpct(50)",
        "tovar",
        "steady",
        "steady(3,1)",
    )
    for suffix in ("", "-offset=none", "-offset=90percentile", "-offset=2std")
]

sizes = st.floats(min_value=0, max_value=64 * base.GIB, allow_nan=False)
peaks = st.floats(min_value=1, max_value=64 * base.GIB, allow_nan=False)
events = st.lists(
    st.tuples(st.sampled_from(["observe", "fail", "predict"]), sizes, peaks), max_size=30
)


def test_every_module_is_reachable_by_its_name() -> None:
    for module in registry.PREDICTOR_MODULES:
        assert registry.parse_predictor(module.NAME).module is module
        for alias in module.ALIASES:
            assert registry.parse_predictor(alias.upper()).module is module


@pytest.mark.parametrize("spec", SPECS)
@settings(max_examples=25, deadline=None)
@given(script=events, query=sizes)
def test_predictions_are_none_or_positive_finite_and_versions_monotone(
    spec: str, script: list[tuple[str, float, float]], query: float
) -> None:
    predictor = registry.parse_predictor(spec).make()
    assert isinstance(predictor, base.MemoryPredictor)
    version = predictor.version
    for kind, x, y in script:
        if kind == "observe":
            predictor.observe(x, y)
        elif kind == "fail":
            predictor.observe_failure(x, y)
        assert predictor.version >= version
        version = predictor.version
        before = predictor.predict(query)
        assert before is None or (math.isfinite(before) and before > 0)
        assert predictor.predict(query) == before  # idempotent
        assert predictor.version == version  # predicting changes nothing


priors = st.builds(
    lambda source, values: base.Prior(source=source, peaks=tuple(values)),
    st.sampled_from(list(base.PriorSource)),
    st.lists(peaks, min_size=1, max_size=5),
)


@pytest.mark.parametrize("spec", SPECS)
@settings(max_examples=15, deadline=None)
@given(seeds=st.lists(priors, max_size=3), script=events, query=sizes)
def test_every_predictor_accepts_priors_and_keeps_the_contract(
    spec: str, seeds: list[base.Prior], script: list[tuple[str, float, float]], query: float
) -> None:
    predictor = registry.parse_predictor(spec).make()
    assert isinstance(predictor, base.SeedablePredictor)
    version = predictor.version
    for prior in seeds:
        predictor.seed(prior)
        assert predictor.version >= version
        version = predictor.version
    for kind, x, y in script:
        if kind == "observe":
            predictor.observe(x, y)
        elif kind == "fail":
            predictor.observe_failure(x, y)
        assert predictor.version >= version
        version = predictor.version
        answer = predictor.predict(query)
        assert answer is None or (math.isfinite(answer) and answer > 0)
        assert predictor.predict(query) == answer
        assert predictor.version == version
