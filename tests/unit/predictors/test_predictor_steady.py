"""``steady``: spread-relative headroom, model choice by online accuracy, budget and priors."""

import math

import pytest

from predictors import base, steady
from scheduler import registry

GIB = base.GIB


def _make(spec: str = "steady(2,0.5)") -> base.MemoryPredictor:
    return registry.parse_predictor(spec).make()


def test_cold_start_without_prior_then_margin_from_the_prior_spread() -> None:
    predictor = _make()
    assert predictor.predict(1) is None
    predictor.observe(1, 4 * GIB)
    # n = 1: s_eff = c * L = 0.5 * 4; answer = 4 + 2 * 2 = 8 GiB.
    assert predictor.predict(1) == pytest.approx(8 * GIB)


def test_margin_follows_the_spread_and_the_prior_part_decays() -> None:
    narrow, wide = _make(), _make()
    for i in range(20):
        narrow.observe(i, (40 + 0.01 * (i % 2)) * GIB)
        wide.observe(i, (40 - 10 * (i % 2)) * GIB)
    margin_narrow = (narrow.predict(0) or 0) - 40.01 * GIB
    margin_wide = (wide.predict(0) or 0) - 40 * GIB
    assert margin_wide > margin_narrow > 0
    # The prior part (c * L with 2 pseudo-observations) shrinks like sqrt(2 / (n + 1)): after 20
    # nearly equal peaks it is about 0.31 of the margin after one, i.e. still proportional to L
    # (docs/memory-prediction.md discusses what this costs on large peaks).
    one = _make()
    one.observe(0, 40 * GIB)
    first_margin = (one.predict(0) or 0) - 40 * GIB
    assert margin_narrow == pytest.approx(first_margin * math.sqrt(2 / 21), rel=1e-3)


def test_expected_spread_answer_by_hand() -> None:
    predictor = _make()
    for peak in (1.0, 2.0, 3.0):
        predictor.observe(0, peak * GIB)
    # No misses (each answer covered the next peak), so g = 1 and the answer is L + K * s_eff.
    values = [1.0, 2.0, 3.0]
    mean = sum(values) / 3
    variance = sum((v - mean) ** 2 for v in values) / 2
    s_eff = math.sqrt((2 * variance + 2 * (0.5 * 3) ** 2) / (2 + 2))
    assert predictor.predict(0) == pytest.approx((3 + 2 * s_eff) * GIB)


def test_regression_only_where_the_input_explains_the_peak() -> None:
    linear, flat = _make(), _make()
    for i in range(1, 30):
        linear.observe(i * GIB, (0.5 * i) * GIB)  # peak = input / 2 exactly
        flat.observe(i * GIB * (1000 if i % 2 else 1), 5 * GIB)  # constant peak, input x1000
    # The regression tracks the line (below the largest peak for a small input).
    assert (linear.predict(2 * GIB) or 0) < 14.5 * GIB
    # Flat step: no input scaling at all, whatever the input.
    assert flat.predict(1e6 * GIB) == flat.predict(1.0)


def test_failure_budget_widens_the_margin() -> None:
    steady_peaks, jumpy = _make(), _make()
    for _ in range(10):
        steady_peaks.observe(0, 1 * GIB)
        jumpy.observe(0, 1 * GIB)
    jumpy.observe(0, 3 * GIB)  # a miss: above the previous answer
    # After the miss, g = 1 + (1 - 0.05 * 10) = 1.5 multiplies the spread term.
    model = steady.SteadyModel(steady.Args(headroom=2.0, prior_spread=0.5))
    for _ in range(10):
        model.observe(0, 1 * GIB)
    model.observe(0, 3 * GIB)
    peaks = [1.0] * 10 + [3.0]
    mean = sum(peaks) / 11
    variance = sum((p - mean) ** 2 for p in peaks) / 10
    s_eff = math.sqrt((10 * variance + 2 * (0.5 * 3) ** 2) / 12)
    assert model.predict(0) == pytest.approx((3 + 2 * 1.5 * s_eff) * GIB)
    assert jumpy.predict(0) == model.predict(0)
    assert (steady_peaks.predict(0) or 0) < 3 * GIB


def test_priors_answer_cold_starts_run_prior_wins() -> None:
    predictor = registry.parse_predictor("steady(2,0.5)").make()
    assert isinstance(predictor, base.SeedablePredictor)
    predictor.seed(base.Prior(source=base.PriorSource.TOOL, peaks=(1 * GIB,)))
    # Tool prior: level 2 x 1 GiB; relative spread c = 0.5 -> 2 + 2 * 0.5 * 2 = 4 GiB.
    assert predictor.predict(0) == pytest.approx(4 * GIB)
    version = predictor.version
    predictor.seed(base.Prior(source=base.PriorSource.RUN, peaks=(1 * GIB, 1 * GIB, 1 * GIB)))
    assert predictor.version > version
    # Run prior: level 1 GiB, spread shrunk: sqrt((2 * 0 + 2 * 0.25) / 4) = 0.354.
    assert predictor.predict(0) == pytest.approx((1 + 2 * math.sqrt(0.5 / 4)) * GIB)
    predictor.seed(base.Prior(source=base.PriorSource.TOOL, peaks=(50 * GIB,)))
    assert predictor.predict(0) == pytest.approx((1 + 2 * math.sqrt(0.5 / 4)) * GIB)


def test_failure_feedback_raises_the_level() -> None:
    predictor = _make()
    predictor.observe(0, 1 * GIB)
    before, version = predictor.predict(0), predictor.version
    predictor.observe_failure(0, 5 * GIB)
    assert predictor.version > version and (predictor.predict(0) or 0) > 5 * GIB > (before or 0)


@pytest.mark.parametrize("suffix", ["", "(1)", "(1.5,0.25)"])
def test_parse(suffix: str) -> None:
    assert steady.parse_args(suffix) is not None


@pytest.mark.parametrize("suffix", ["(", "(-1)", "(1,0)", "(1,2,3)", "(a)", "x", "(inf)"])
def test_parse_rejects(suffix: str) -> None:
    assert steady.parse_args(suffix) is None
