"""``last``: the latest observed peak, i.e. what CWS's ``mean`` actually computes (defect D2).

Offered only to reproduce CWS results; prefer ``mean``. No prediction before the first
observation. The version increases by one per observation. Maturity: compatibility only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from predictors import base

NAME = "last"
ALIASES: tuple[str, ...] = ()
SYNTAX = "last"


@dataclass(frozen=True, slots=True, kw_only=True)
class Args:
    """``last`` takes no arguments."""


def parse_args(suffix: str) -> Args | None:
    """Return the arguments for the name suffix after ``last``; only the empty suffix is ours."""
    return Args() if suffix == "" else None


class LastModel(base.Model):
    """Predicts the most recent observed peak for every input."""

    def predict_many(self, xs: base.FloatArray) -> base.FloatArray:
        """See :meth:`base.Model.predict_many`."""
        y = self.samples.y
        return np.full(xs.shape, y[-1] if y.size else np.nan)


def make(args: Args) -> base.Model:
    """Return an empty latest-value model."""
    del args
    return LastModel()
