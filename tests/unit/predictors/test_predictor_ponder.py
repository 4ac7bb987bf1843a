"""Ponder's branches (cws-semantics.md 5.3): warm-up, correlation, clamps, variance margin."""

import math
from collections.abc import Sequence

import numpy as np
import pytest

from predictors import base, lr2, offsets, ponder

GIB = base.GIB
M = base.PONDER_MARGIN_BYTES


def model_with(xs: Sequence[float], ys: Sequence[float], warmup: int = 5) -> ponder.PonderModel:
    model = ponder.PonderModel(warmup)
    for x, y in zip(xs, ys, strict=True):
        model.observe(x * GIB, y * GIB)
    return model


def reference_variance(x: Sequence[float], d: Sequence[float], query: float) -> float:
    """Plain-Python transcription of the weighted variance, for comparison."""
    n = len(x)
    if n <= 1:
        return 0.0
    far = max(abs(xi - query) for xi in x)
    c = max(1 - n / 10, 0) / 100
    w = [1.0] * n if far == 0 else [1 - abs(xi - query) / far + c for xi in x]
    v1, v2 = sum(w), sum(wi * wi for wi in w)
    mean = sum(wi * di for wi, di in zip(w, d, strict=True)) / v1
    denominator = v1 - v2 / v1
    if denominator <= 0:
        return 0.0
    return sum(wi * (di - mean) ** 2 for wi, di in zip(w, d, strict=True)) / denominator


def test_no_samples_no_prediction() -> None:
    assert ponder.PonderModel().predict(GIB) is None


def test_warm_up_needs_a_strictly_larger_observed_input() -> None:
    model = model_with([1, 3], [2, 1])
    assert model.predict(2 * GIB) == 2 * GIB + M  # maxY + M: 3 GiB was seen
    assert model.predict(0) == 2 * GIB + M
    assert model.predict(3 * GIB) is None  # no strictly larger input
    assert model.predict(4 * GIB) is None


def test_low_or_undefined_correlation_gives_max_plus_margin() -> None:
    negative = model_with([1, 2, 3, 4, 5], [5, 4, 3, 2, 1])
    assert negative.predict(9 * GIB) == 5 * GIB + M
    flat_x = model_with([2, 2, 2, 2, 2], [1, 2, 3, 4, 5])  # r = NaN
    assert flat_x.predict(9 * GIB) == 5 * GIB + M
    weak = model_with([1, 2, 3, 4, 5], [1, 3, 1, 1, 1.5])  # r = 0.05
    assert ponder.pearson(weak.samples.x, weak.samples.y) < 0.3
    assert weak.predict(0) == 3 * GIB + M


def test_perfect_line_clamp_to_min_y_and_extrapolation_above_max_x() -> None:
    model = model_with([1, 2, 3, 4, 5], [1, 2, 3, 4, 5])  # r = 1, lr2 = the line, V = 0
    assert model.predict(0.5 * GIB) == pytest.approx(1 * GIB + M)  # 0.5 < minY: clamp
    assert model.predict(3.5 * GIB) == pytest.approx(3.5 * GIB + M)
    assert model.predict(6 * GIB) == pytest.approx(6 * GIB + M)  # x >= maxX: extrapolate


def test_clamp_to_max_y_below_max_x() -> None:
    xs, ys = [1, 2, 3, 4, 5], [1, 2, 6, 4, 5]  # lr2: a = 25/9, b = 1; r = 0.76
    model = model_with(xs, ys)
    a, b = lr2.fit_asymmetric(np.array(xs, float), np.array(ys, float))  # type: ignore[misc]
    assert a + b * 4.5 > 6  # the line exceeds maxY although x < maxX
    residuals = [(y - (a + b * x)) * GIB for x, y in zip(xs, ys, strict=True)]
    margin = max(M, 2 * math.sqrt(reference_variance(xs, residuals, 4.5)))
    assert margin > M  # the variance term wins here
    assert model.predict(4.5 * GIB) == pytest.approx(6 * GIB + margin)


def test_clamp_to_max_y_at_the_largest_input() -> None:
    xs, ys = [1, 2, 3, 4, 5], [1, 1, 1, 1, 5]  # r = 0.71; the lr2 line at x = 5 is 4.93 < 5
    model = model_with(xs, ys)
    a, b = lr2.fit_asymmetric(np.array(xs, float), np.array(ys, float))  # type: ignore[misc]
    assert a + b * 5 < 5
    residuals = [(y - (a + b * x)) * GIB for x, y in zip(xs, ys, strict=True)]
    margin = max(M, 2 * math.sqrt(reference_variance(xs, residuals, 5)))
    assert model.predict(5 * GIB) == pytest.approx(5 * GIB + margin)
    assert model.predict(0.5 * GIB) == pytest.approx(
        1 * GIB + max(M, 2 * math.sqrt(reference_variance(xs, residuals, 0.5)))
    )  # clamp to minY


def test_weighted_variance_matches_reference() -> None:
    rng = np.random.default_rng(7)
    for n in (2, 3, 9, 10, 14):
        x = rng.uniform(0, 4, n)
        d = rng.normal(0, 1, n)
        queries = np.concatenate([x[:2], rng.uniform(-1, 5, 3)])
        got = ponder.weighted_residual_variance(x, d, queries)
        want = [reference_variance(list(x), list(d), float(q)) for q in queries]
        assert got == pytest.approx(want, rel=1e-9, abs=1e-12)
    assert (
        ponder.weighted_residual_variance(np.array([1.0]), np.array([3.0]), np.array([0.0]))[0] == 0
    )


def test_zero_denominator_gives_zero_variance_d23() -> None:
    # n = 10, query at the one input that differs: every other weight is exactly 0.
    x = np.array([0.0] + [10.0] * 9)
    d = np.arange(10, dtype=float)
    assert ponder.weighted_residual_variance(x, d, np.array([0.0]))[0] == 0.0
    model = model_with([0.0] + [10.0] * 9, [0.1] + [float(i + 1) for i in range(9)])
    value = model.predict(0)
    assert value is not None and math.isfinite(value)


def test_plain_ponder_spec_includes_the_max_offset() -> None:
    model = model_with([1, 2, 3, 4, 5], [1, 2, 3, 4, 5])
    wrapped = offsets.OffsetPredictor(model, offsets.MAX)
    assert wrapped.margin() == 0.0  # every residual is -M
    assert wrapped.predict(3 * GIB) == pytest.approx(3 * GIB + M)


def test_parse_args() -> None:
    assert ponder.parse_args("") == ponder.Args(warmup=5)
    assert ponder.parse_args("(8)") == ponder.Args(warmup=8)
    assert ponder.parse_args("(0)") is None
    assert ponder.parse_args("8") is None
