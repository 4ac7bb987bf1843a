"""``poly<X>``: least-squares polynomial of degree X (default 2) in the input size.

The same model as CWS (OLS with intercept on x, x², ..., x^X) but fitted on x in GiB in a
scaled, well-conditioned basis (``numpy.polynomial.Polynomial.fit``), where CWS uses raw bytes and
is numerically fragile. It fits only when there are more than X samples. When the design is
singular (fewer than X + 1 distinct inputs, the exact-arithmetic criterion), or numpy reports it
as numerically rank-deficient (inputs that differ only in their last digits), the previous fit is
kept. The version increases only on a successful fit. Maturity: experimental (extrapolates badly;
prefer ``lr2`` or ``ponder``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from numpy.polynomial import Polynomial

from predictors import base

NAME = "poly"
ALIASES: tuple[str, ...] = ()
SYNTAX = "poly<degree>"


@dataclass(frozen=True, slots=True, kw_only=True)
class Args:
    """Arguments of ``poly``.

    Attributes:
        degree: The polynomial degree X (>= 1).
    """

    degree: int = 2


def parse_args(suffix: str) -> Args | None:
    """Return the arguments for ``poly<X>`` (``poly`` alone = ``poly2``), else ``None``."""
    if suffix == "":
        return Args()
    if suffix.isdigit() and int(suffix) >= 1:
        return Args(degree=int(suffix))
    return None


class PolyModel(base.Model):
    """Polynomial regression refitted at every observation that allows a fit."""

    def __init__(self, degree: int = 2) -> None:
        super().__init__()
        self.degree = degree
        self._fit: Polynomial | None = None

    def _after_observe(self) -> int:
        x = self.samples.x / base.GIB
        if x.size <= self.degree or np.unique(x).size <= self.degree:
            return 0
        with warnings.catch_warnings():
            warnings.simplefilter("error", np.exceptions.RankWarning)
            try:
                self._fit = Polynomial.fit(x, self.samples.y / base.GIB, self.degree)
            except (np.exceptions.RankWarning, np.linalg.LinAlgError):
                return 0  # numerically singular: keep the previous fit
        return 1

    def predict_many(self, xs: base.FloatArray) -> base.FloatArray:
        """See :meth:`base.Model.predict_many`."""
        if self._fit is None:
            return np.full(xs.shape, np.nan)
        values: base.FloatArray = np.asarray(self._fit(xs / base.GIB), dtype=np.float64)
        return values * base.GIB


def make(args: Args) -> base.Model:
    """Return an empty polynomial model of degree ``args.degree``."""
    return PolyModel(args.degree)
