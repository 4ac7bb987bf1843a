"""``lr`` / ``linear``: ordinary least squares of peak memory on input size (CWS-exact).

Fit y = a + b·x on raw bytes with the closed form b = Sxy / Sxx, a = ȳ - b·x̄ (centred sums).
No prediction with fewer than two samples or when all inputs are equal (CWS gets NaN there).
The version increases by one per observation. Maturity: stable (CWS default model).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from predictors import base

NAME = "lr"
ALIASES: tuple[str, ...] = ("linear",)
SYNTAX = "lr|linear"


@dataclass(frozen=True, slots=True, kw_only=True)
class Args:
    """``lr`` takes no arguments."""


def parse_args(suffix: str) -> Args | None:
    """Return the arguments for the name suffix after ``lr``; only the empty suffix is ours."""
    return Args() if suffix == "" else None


def ols(x: base.FloatArray, y: base.FloatArray) -> tuple[float, float] | None:
    """Return the OLS (intercept, slope), or ``None`` with < 2 points or all x equal."""
    if x.size < 2:
        return None
    dx = x - x.mean()
    sxx = float(dx @ dx)
    if sxx == 0.0:
        return None
    slope = float(dx @ (y - y.mean())) / sxx
    return float(y.mean()) - slope * float(x.mean()), slope


class LinearModel(base.LineModel):
    """OLS on raw bytes, refitted lazily at the first query after an observation."""

    def _refit(self, previous: tuple[float, float] | None) -> tuple[float, float] | None:
        """Return (intercept, slope) in bytes, or ``None`` when the fit is undefined."""
        del previous  # the closed form needs no start
        return ols(self.samples.x, self.samples.y)

    def predict_many(self, xs: base.FloatArray) -> base.FloatArray:
        """See :meth:`base.Model.predict_many`."""
        fit = self.coefficients()
        if fit is None:
            return np.full(xs.shape, np.nan)
        return fit[0] + fit[1] * xs


def make(args: Args) -> base.Model:
    """Return an empty OLS model."""
    del args
    return LinearModel()
