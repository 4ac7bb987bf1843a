"""Offsets: the CWS test vectors of cws-semantics.md 5.4 and hand-computed margins."""

import math

import numpy as np
import pytest

from predictors import base, const, lr, offsets


def arr(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float64)


@pytest.mark.parametrize(
    ("values", "p", "expected"),
    [
        ((1, 2, 3, 4), 50, 2.5),
        ((1, 2, 3, 4), 75, 3.75),
        ((1, 2, 2, 3, 4), 50, 2.0),
        ((4, 1, 3, 2), 75, 3.75),  # order does not matter
        ((1, 2, 3, 4), 10, 1.0),  # pos = 0.5 < 1: smallest
        ((1, 2, 3, 4), 95, 4.0),  # pos = 4.75 >= n: largest
        ((7,), 50, 7.0),
    ],
)
def test_percentile_apache_estimator(values: tuple[float, ...], p: float, expected: float) -> None:
    assert offsets.percentile(arr(*values), p) == pytest.approx(expected)
    assert np.percentile(values, p, method="weibull") == pytest.approx(expected)


def test_percentile_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        offsets.percentile(arr(), 50)
    with pytest.raises(ValueError):
        offsets.percentile(arr(1, 2), 101)


@pytest.mark.parametrize(
    ("values", "expected"),
    [((1, 1, 3, 2), 0.916667), ((1, 1, 3, 1), 1.0), ((1, 1, 3), 4 / 3), ((5,), 0.0), ((), 0.0)],
)
def test_sample_variance(values: tuple[float, ...], expected: float) -> None:
    assert offsets.sample_variance(arr(*values)) == pytest.approx(expected, abs=1e-6)


def test_offset_values_on_residuals() -> None:
    d = arr(-3, -1, 0, 2, 6)
    assert offsets.NONE(d) == 0.0
    assert offsets.MAX(d) == 6.0
    assert offsets.MAX(arr(-3, -1)) == 0.0  # never negative
    p50 = offsets.Offset(kind=offsets.OffsetKind.PERCENTILE, value=50)
    assert p50(d) == 0.0
    assert p50(arr(-5, -4)) == 0.0  # clamped at 0
    two_std = offsets.Offset(kind=offsets.OffsetKind.STD, value=2)
    assert two_std(d) == pytest.approx(2 * math.sqrt(float(np.var(d, ddof=1))))
    assert two_std(arr(5)) == 0.0  # n <= 1
    assert offsets.MAX(arr()) == 0.0


def test_max_offset_on_constant_zero_model_is_max_observed() -> None:
    predictor = offsets.OffsetPredictor(const.make(const.Args()), offsets.MAX)
    assert predictor.predict(10) is None  # 0 + no residuals: no prediction
    for y in (1, 2, 3, 1):
        predictor.observe(0, y)
    assert predictor.predict(123) == 3.0


def test_offset_is_added_to_every_prediction_and_cached_per_version() -> None:
    predictor = offsets.OffsetPredictor(lr.make(lr.Args()), offsets.MAX)
    for x, y in ((0, 1), (1, 4), (2, 3), (3, 6)):
        predictor.observe(x, y)
    # OLS: slope 1.4, intercept 1.4; residuals -0.4, 1.2, -0.8, 0.4 -> max 1.2
    assert predictor.margin() == pytest.approx(1.2)
    assert predictor.predict(10) == pytest.approx(1.4 + 14 + 1.2)
    version = predictor.version
    assert predictor.predict(10) == predictor.predict(10)
    assert predictor.version == version
    predictor.observe(4, 10)
    assert predictor.version > version


def test_version_counts_samples_only_when_the_offset_depends_on_them() -> None:
    with_max = offsets.OffsetPredictor(const.make(const.Args(value_bytes=5)), offsets.MAX)
    without = offsets.OffsetPredictor(const.make(const.Args(value_bytes=5)), offsets.NONE)
    for predictor in (with_max, without):
        predictor.observe(1, 7)
        predictor.observe(1, 9)
    assert with_max.version == 2
    assert without.version == 0


def test_failure_floor_d8() -> None:
    predictor = offsets.OffsetPredictor(const.make(const.Args()), offsets.MAX)
    predictor.observe(1, 100 * base.MIB)
    assert predictor.predict(1) == 100 * base.MIB
    version = predictor.version
    predictor.observe_failure(1, 100 * base.MIB)
    assert predictor.version == version + 1
    assert predictor.predict(1) == 101 * base.MIB  # above the allocation that was OOM-killed
    predictor.observe_failure(1, 50 * base.MIB)  # lower than the floor: nothing changes
    assert predictor.version == version + 1
    predictor.observe(1, 300 * base.MIB)
    assert predictor.predict(1) == 300 * base.MIB  # above the floor: unchanged
