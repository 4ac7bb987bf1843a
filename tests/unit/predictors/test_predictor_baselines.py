"""Witt et al.'s and Tovar et al.'s baselines: hand-computed answers and default offsets."""

import numpy as np
import pytest

from predictors import base, offsets, tovar
from scheduler import registry

GIB = base.GIB


def test_tovar_minimises_expected_waste_by_hand() -> None:
    # Peaks 1, 1, 1, 10 (GiB), retry at m = 10. W(1) = 0 + (1 + 10 - 10) = 1;
    # W(10) = 3 * 9 + 0 = 27: the small allocation wins despite one failure in four.
    assert tovar.first_allocation(np.array([1.0, 10.0, 1.0, 1.0])) == 1.0
    # Peaks 1, 9, 10: W(1) = 0 + (1 + 1) + (1 + 0) = 3, W(9) = 8 + 0 + (9 + 0) = 17, W(10) = 10.
    assert tovar.first_allocation(np.array([1.0, 9.0, 10.0])) == 1.0
    # Peaks 4, 5: W(4) = 0 + (4 + 0) = 4, W(5) = 1: the largest.
    assert tovar.first_allocation(np.array([4.0, 5.0])) == 5.0
    assert np.isnan(tovar.first_allocation(np.array([])))


def test_tovar_predictor() -> None:
    predictor = registry.parse_predictor("tovar").make()
    assert predictor.predict(0) is None
    for peak in (1, 1, 1, 10):
        predictor.observe(0, peak * GIB)
    assert predictor.predict(123) == pytest.approx(1 * GIB)


def test_witt_lr_default_offset_is_one_std_and_max_equals_lr() -> None:
    spec = registry.parse_predictor("wittlr")
    assert spec.offset == offsets.Offset(kind=offsets.OffsetKind.STD, value=1.0)
    witt, lr = (
        registry.parse_predictor("wittlr-offset=max").make(),
        registry.parse_predictor("lr").make(),
    )
    default = spec.make()
    points = [(1.0, 2.0), (2.0, 5.0), (3.0, 5.0), (4.0, 9.0)]
    for x, y in points:
        for predictor in (witt, lr, default):
            predictor.observe(x * GIB, y * GIB)
    assert witt.predict(5 * GIB) == lr.predict(5 * GIB)
    # OLS: slope 2.1, intercept 0; residuals -0.1, 0.8, -1.3, 0.6 (GiB); sample std below.
    residuals = np.array([-0.1, 0.8, -1.3, 0.6])
    expected = (2.1 * 5 + residuals.std(ddof=1)) * GIB
    assert default.predict(5 * GIB) == pytest.approx(expected)


def test_witt_percentile() -> None:
    predictor = registry.parse_predictor("wittpct(50)").make()
    assert predictor.predict(0) is None
    for peak in (1, 2, 3, 4, 100):
        predictor.observe(0, peak * GIB)
    assert predictor.predict(0) == pytest.approx(3 * GIB)  # the median, no offset on top
    assert registry.parse_predictor("wittpct").args.percentile == 95
    for bad in ("wittpct(101)", "wittpct(x)", "wittpct5"):
        with pytest.raises(ValueError):
            registry.parse_predictor(bad)
