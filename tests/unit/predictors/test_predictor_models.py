"""lr, mean, last, const and poly on hand-computed examples and the CWS test vectors."""

import numpy as np
import pytest

from predictors import base, const, last, lr, mean, poly


def fed(model: base.Model, *pairs: tuple[float, float]) -> base.Model:
    for x, y in pairs:
        model.observe(x, y)
    return model


def test_ols_cws_vectors() -> None:
    model = fed(lr.make(lr.Args()), (1, 1), (2, 2))
    assert model.predict(4) == pytest.approx(4)
    assert model.predict(0) is None  # exactly 0: not a usable prediction
    assert float(model.predict_many(np.array([0.0]))[0]) == pytest.approx(0, abs=1e-12)
    assert fed(lr.make(lr.Args()), (1, 1)).predict(4) is None  # one point: no prediction


def test_ols_closed_form_and_undefined_cases() -> None:
    model = fed(lr.make(lr.Args()), (0, 1), (1, 4), (2, 3), (3, 6))
    assert isinstance(model, lr.LinearModel)
    assert model.coefficients() == pytest.approx((1.4, 1.4))
    assert model.version == 4
    same_x = fed(lr.make(lr.Args()), (5, 1), (5, 9))
    assert same_x.predict(5) is None
    negative = fed(lr.make(lr.Args()), (1, 10), (2, 5))
    assert negative.predict(10) is None  # -30: non-positive predictions are None (D23)


def test_mean_is_a_real_running_mean_d2() -> None:
    model = mean.make(mean.Args())
    assert model.predict(1) is None
    fed(model, (0, 1), (5, 2), (9, 6))
    assert model.predict(123) == pytest.approx(3.0)
    assert model.version == 3


def test_last_is_cws_mean_behaviour() -> None:
    model = last.make(last.Args())
    assert model.predict(1) is None
    fed(model, (0, 1), (5, 2), (9, 6))
    assert model.predict(123) == 6.0


def test_const_applies_immediately_d24_and_keeps_version_zero() -> None:
    model = const.make(const.Args(value_bytes=1000))
    assert model.predict(1) == 1000.0
    fed(model, (1, 5000), (2, 7000))
    assert model.predict(1) == 1000.0
    assert model.version == 0
    assert const.make(const.Args()).predict(1) is None  # const0 alone has no opinion


def test_poly2_cws_vector() -> None:
    model = poly.make(poly.Args(degree=2))
    fed(model, (1, 1), (2, 2))
    assert model.predict(1) is None  # needs more than 2 points
    assert model.version == 0
    fed(model, (3, 9))
    assert model.version == 1
    for x, y in ((1, 1), (2, 2), (3, 9)):
        assert model.predict(x) == pytest.approx(y, rel=1e-9)
    # y = 3x^2 - 8x + 6 through those points
    assert model.predict(4) == pytest.approx(22, rel=1e-9)


def test_poly_in_gib_units_and_singular_keeps_previous_fit() -> None:
    gib = base.GIB
    model = poly.make(poly.Args(degree=2))
    fed(model, (1 * gib, 1 * gib), (2 * gib, 4 * gib), (3 * gib, 9 * gib))
    assert model.predict(4 * gib) == pytest.approx(16 * gib, rel=1e-9)
    assert model.version == 1
    fed(model, (3 * gib, 9 * gib))  # 4 points, 3 distinct x: still fits
    assert model.version == 2
    singular = poly.make(poly.Args(degree=2))
    fed(singular, (1, 1), (1, 2), (2, 3))  # only 2 distinct x: singular, no fit
    assert singular.version == 0
    assert singular.predict(1) is None


def test_poly3_fits_a_cubic_exactly() -> None:
    model = fed(poly.make(poly.Args(degree=3)), *((x, x**3 + 1) for x in (1.0, 2.0, 3.0, 4.0)))
    assert model.predict(5) == pytest.approx(126, rel=1e-9)


@pytest.mark.parametrize(
    "factory",
    [lambda: lr.make(lr.Args()), lambda: mean.make(mean.Args()), lambda: poly.make(poly.Args())],
)
def test_invalid_observations_raise(factory: object) -> None:
    model = factory()  # type: ignore[operator]
    for x, y in ((-1, 5), (float("nan"), 5), (1, 0), (1, -3), (1, float("inf"))):
        with pytest.raises(ValueError):
            model.observe(x, y)
    assert len(model.samples) == 0
