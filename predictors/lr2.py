"""``lr2`` / ``linear2``: linear regression with an asymmetric squared loss (CWS semantics).

Units: x and y in GiB. With residual e_i = y_i - (a + b·x_i), minimise

    L(a, b) = Σ w(e_i)·e_i²,   w(e) = 1 if e > 0 (under-prediction), λ = 0.02 if e <= 0,

so over-predicting is 50 times cheaper than under-predicting (this is expectile regression at
level 1 / (1 + λ)). L is convex, continuously differentiable and piecewise quadratic, and strictly
convex once x has two distinct values, so the optimum is unique. CWS approximates it with
Nelder-Mead started at the OLS solution; wfsched solves it exactly: Newton steps on the current
sign pattern (a weighted least-squares solve) with an exact line search along each step (the
derivative along the line is piecewise linear and non-decreasing, so its root is found exactly).
It stops when a full step keeps the sign pattern, i.e. at a stationary point of L.

No prediction with fewer than two samples or when all inputs are equal. Refitted lazily at the
first query after an observation, warm-started from the previous fit. The version increases by
one per observation. Maturity: stable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from predictors import base, lr

NAME = "lr2"
ALIASES: tuple[str, ...] = ("linear2",)
SYNTAX = "lr2|linear2"

LAMBDA = 0.02
"""Weight of over-predictions (non-positive residuals) in the loss."""

_MAX_ITERATIONS = 100


@dataclass(frozen=True, slots=True, kw_only=True)
class Args:
    """``lr2`` takes no arguments."""


def parse_args(suffix: str) -> Args | None:
    """Return the arguments for the name suffix after ``lr2``; only the empty suffix is ours."""
    return Args() if suffix == "" else None


def asymmetric_loss(
    x: base.FloatArray, y: base.FloatArray, coef: tuple[float, float], lam: float = LAMBDA
) -> float:
    """Return L(a, b) for ``coef = (a, b)`` (same units as x and y)."""
    e = y - (coef[0] + coef[1] * x)
    return float(np.sum(np.where(e > 0, 1.0, lam) * e * e))


def fit_asymmetric(
    x: base.FloatArray,
    y: base.FloatArray,
    *,
    lam: float = LAMBDA,
    start: tuple[float, float] | None = None,
) -> tuple[float, float] | None:
    """Return the exact minimiser (a, b) of the asymmetric loss, or ``None`` if undefined.

    Args:
        x: Inputs (any unit; ``lr2`` passes GiB).
        y: Targets, same length.
        lam: Weight of non-positive residuals, 0 < lam <= 1.
        start: Warm start; the OLS solution when ``None``.

    Returns:
        ``None`` with fewer than two points or when all x are equal, else (intercept, slope).
    """
    ols = lr.ols(x, y)
    if ols is None:
        return None
    # Solve in standardised coordinates z = (x - centre) / scale: the same model in exact
    # arithmetic, but well-conditioned even when the inputs differ only in their last digits.
    centre, scale = float(x.mean()), float(x.std())
    if not (scale > 0 and math.isfinite(scale)):
        return None  # distinct enough for OLS, but the spread underflows: no fit
    design = np.column_stack((np.ones_like(x), (x - centre) / scale))
    a, b = start if start is not None else ols
    beta = np.array([a + b * centre, b * scale], dtype=np.float64)
    for _ in range(_MAX_ITERATIONS):
        e = y - design @ beta
        positive = e > 0
        w = np.where(positive, 1.0, lam)
        weighted = design * w[:, None]
        try:
            target = np.linalg.solve(design.T @ weighted, weighted.T @ y)
        except np.linalg.LinAlgError:
            break  # cannot happen with two distinct inputs; keep the best point found
        step = target - beta
        u = design @ step
        if np.array_equal((e - u) > 0, positive) or not np.any(u):
            beta = np.asarray(target, dtype=np.float64)
            break
        beta = beta + _line_search(e, u, lam) * step
    slope = float(beta[1]) / scale
    return float(beta[0]) - slope * centre, slope


def _line_search(e: base.FloatArray, u: base.FloatArray, lam: float) -> float:
    """Return argmin over t >= 0 of Σ w(e_i - t·u_i)·(e_i - t·u_i)² (a descent direction)."""

    def slope(t: float) -> float:
        r = e - t * u
        return float(-2.0 * np.sum(np.where(r > 0, 1.0, lam) * r * u))

    with np.errstate(divide="ignore", invalid="ignore"):
        breaks = e / u
    breaks = np.unique(breaks[np.isfinite(breaks) & (breaks > 0)])
    lo, hi = 0, breaks.size  # the root lies after breaks[lo - 1] and before breaks[hi]
    while lo < hi:
        mid = (lo + hi) // 2
        if slope(float(breaks[mid])) >= 0:
            hi = mid
        else:
            lo = mid + 1
    # On the bracketing segment the sign pattern is fixed: take it strictly inside the segment,
    # where the slope is linear in t, and solve slope(t) = 0 exactly.
    t0 = float(breaks[lo - 1]) if lo > 0 else 0.0
    t1 = float(breaks[lo]) if lo < breaks.size else t0 + 1.0
    r = e - 0.5 * (t0 + t1) * u
    w = np.where(r > 0, 1.0, lam)
    curvature = float(np.sum(w * u * u))
    step = float(np.sum(w * e * u)) / curvature if curvature > 0 else 1.0
    return step if np.isfinite(step) else 1.0


class AsymmetricModel(base.LineModel):
    """The ``lr2`` model; also the regression inside ``ponder``. Coefficients in GiB units."""

    def _refit(self, previous: tuple[float, float] | None) -> tuple[float, float] | None:
        """Fit in GiB units, warm-started from the previous fit."""
        return fit_asymmetric(self.samples.x / base.GIB, self.samples.y / base.GIB, start=previous)

    def predict_many(self, xs: base.FloatArray) -> base.FloatArray:
        """See :meth:`base.Model.predict_many`."""
        fit = self.coefficients()
        if fit is None:
            return np.full(xs.shape, np.nan)
        return (fit[0] + fit[1] * (xs / base.GIB)) * base.GIB


def make(args: Args) -> base.Model:
    """Return an empty asymmetric-loss regression."""
    del args
    return AsymmetricModel()
