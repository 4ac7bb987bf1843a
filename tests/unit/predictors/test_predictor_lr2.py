"""lr2: the exact asymmetric least-squares solver against hand values and Nelder-Mead."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from predictors import base, lr, lr2


def nelder_mead(f, start, *, iterations: int = 2000) -> np.ndarray:  # type: ignore[no-untyped-def]
    """A plain Nelder-Mead with CWS's initial simplex [[a,b],[a+1,b],[a,b+1]] (reference)."""
    a, b = float(start[0]), float(start[1])
    simplex = [(f(p), p) for p in (np.array([a, b]), np.array([a + 1, b]), np.array([a, b + 1]))]
    for _ in range(iterations):
        simplex.sort(key=lambda item: item[0])
        (f0, p0), (f1, p1), (f2, p2) = simplex
        if np.abs(p2 - p0).max() + np.abs(p1 - p0).max() < 1e-13:
            break
        centre = (p0 + p1) / 2
        reflected = centre + (centre - p2)
        fr = f(reflected)
        if fr < f0:
            expanded = centre + 2 * (centre - p2)
            fe = f(expanded)
            simplex[2] = (fe, expanded) if fe < fr else (fr, reflected)
        elif fr < f1:
            simplex[2] = (fr, reflected)
        else:
            contracted = centre + 0.5 * (p2 - centre)
            fc = f(contracted)
            if fc < f2:
                simplex[2] = (fc, contracted)
            else:
                shrunk = [p0 + 0.5 * (p - p0) for p in (p1, p2)]
                simplex = [(f0, p0)] + [(f(p), p) for p in shrunk]
    return min(simplex, key=lambda item: item[0])[1]


def test_two_points_are_interpolated() -> None:
    fit = lr2.fit_asymmetric(np.array([1.0, 3.0]), np.array([2.0, 8.0]))
    assert fit == pytest.approx((-1.0, 3.0))


def test_expectile_by_hand() -> None:
    # At x = 0 and x = 1 the peaks are {0, 1}: the fit is flat at the minimiser of
    # (1 - m)^2 + 0.02 m^2, i.e. m = 1 / 1.02.
    x = np.array([0.0, 0.0, 1.0, 1.0])
    y = np.array([0.0, 1.0, 0.0, 1.0])
    a, b = lr2.fit_asymmetric(x, y)  # type: ignore[misc]
    assert a == pytest.approx(1 / 1.02, abs=1e-12)
    assert b == pytest.approx(0.0, abs=1e-12)


def test_undefined_cases() -> None:
    assert lr2.fit_asymmetric(np.array([1.0]), np.array([1.0])) is None
    assert lr2.fit_asymmetric(np.array([2.0, 2.0]), np.array([1.0, 3.0])) is None


def test_model_units_are_gib_and_fit_is_lazy() -> None:
    model = lr2.make(lr2.Args())
    assert isinstance(model, lr2.AsymmetricModel)
    for x, y in ((1, 2), (3, 8)):
        model.observe(x * base.GIB, y * base.GIB)
    assert model.coefficients() == pytest.approx((-1.0, 3.0))
    assert model.predict(2 * base.GIB) == pytest.approx(5 * base.GIB)
    assert model.version == 2


@settings(max_examples=80, deadline=None)
@given(
    points=st.lists(  # byte counts in GiB, as lr2 sees them
        st.tuples(
            st.integers(min_value=0, max_value=8 * base.GIB).map(lambda b: b / base.GIB),
            st.integers(min_value=0, max_value=8 * base.GIB).map(lambda b: b / base.GIB),
        ),
        min_size=2,
        max_size=25,
    )
)
def test_exact_solution_is_at_least_as_good_as_nelder_mead(
    points: list[tuple[float, float]],
) -> None:
    x = np.array([p[0] for p in points])
    y = np.array([p[1] for p in points])
    fit = lr2.fit_asymmetric(x, y)
    if np.unique(x).size < 2:
        assert fit is None
        return
    assert fit is not None

    def loss(beta: np.ndarray) -> float:
        return lr2.asymmetric_loss(x, y, (float(beta[0]), float(beta[1])))

    ols = lr.ols(x, y)
    assert ols is not None
    reference = nelder_mead(loss, ols)
    assert loss(np.array(fit)) <= loss(reference) + 1e-9 * (1 + loss(reference))
    # First-order optimality: the weighted residuals are orthogonal to [1, x].
    e = y - (fit[0] + fit[1] * x)
    w = np.where(e > 0, 1.0, lr2.LAMBDA)
    scale = 1 + float(np.abs(y).sum() + np.abs(x * y).sum())
    assert abs(float(np.sum(w * e))) <= 1e-8 * scale
    assert abs(float(np.sum(w * e * x))) <= 1e-8 * scale
