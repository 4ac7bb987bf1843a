"""``mean``: the running mean of the observed peaks, ignoring the input size.

This is a **real** running mean (the D2 fix): CWS's ``mean`` returns the latest observation
because its counter is never incremented; that behaviour is available as ``last``. No prediction
before the first observation. The version increases by one per observation. Maturity: stable.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from predictors import base

NAME = "mean"
ALIASES: tuple[str, ...] = ()
SYNTAX = "mean"


@dataclass(frozen=True, slots=True, kw_only=True)
class Args:
    """``mean`` takes no arguments."""


def parse_args(suffix: str) -> Args | None:
    """Return the arguments for the name suffix after ``mean``; only the empty suffix is ours."""
    return Args() if suffix == "" else None


class MeanModel(base.Model):
    """Predicts the arithmetic mean of all observed peaks for every input."""

    def __init__(self) -> None:
        super().__init__()
        self._sum = 0.0

    def _after_observe(self) -> int:
        self._sum += float(self.samples.y[-1])
        return 1

    def predict_many(self, xs: base.FloatArray) -> base.FloatArray:
        """See :meth:`base.Model.predict_many`."""
        n = len(self.samples)
        return np.full(xs.shape, self._sum / n if n else np.nan)


def make(args: Args) -> base.Model:
    """Return an empty running-mean model."""
    del args
    return MeanModel()
