"""``tovar``: Tovar et al.'s first allocation that minimises expected waste (TPDS 2018).

Input-agnostic. From the peaks observed so far for the process, p_1 <= ... <= p_n, with m =
p_n (the largest) as the retry allocation, the first allocation a is the candidate (one of the
observed peaks) that minimises the expected waste under the empirical peak distribution:

    W(a) = Σ_{p_i <= a} (a - p_i)  +  Σ_{p_i > a} (a + m - p_i)

(a task that fits wastes a - p; one that does not burns a and is then retried at m, which wastes
m - p). Tovar et al. weight by run time; the predictor interface carries no run time, so every
observation weighs one. Ties go to the smaller allocation. No prediction before the first
observation; with one observation the answer is that peak. ``DEFAULT_OFFSET`` is ``none``.
The replay retries at the user's request (or by doubling), not at m: the retry at m is only the
cost model that picks a. Version: one per observation. Maturity: baseline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from predictors import base, offsets

NAME = "tovar"
ALIASES: tuple[str, ...] = ()
SYNTAX = "tovar"

DEFAULT_OFFSET = offsets.NONE
"""The chosen allocation is the whole answer unless the spec asks for a margin."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Args:
    """``tovar`` takes no arguments."""


def parse_args(suffix: str) -> Args | None:
    """Return the arguments for the name suffix after ``tovar``; only the empty suffix."""
    return Args() if suffix == "" else None


def first_allocation(peaks: base.FloatArray) -> float:
    """Return the observed peak that minimises W(a) above (NaN for no peaks)."""
    if peaks.size == 0:
        return math.nan
    ordered = np.sort(peaks)
    n = ordered.size
    largest = float(ordered[-1])
    prefix = np.concatenate(([0.0], np.cumsum(ordered)))
    total = prefix[-1]
    # For candidate a = ordered[k] every p_i <= a is among the first `fits` sorted values (ties
    # included), the rest fail: W = fits·a - Σfit + (n - fits)·(a + m) - Σfail.
    fits = np.searchsorted(ordered, ordered, side="right")
    fit_sum = prefix[fits]
    waste = fits * ordered - fit_sum + (n - fits) * (ordered + largest) - (total - fit_sum)
    return float(ordered[int(np.argmin(waste))])


class TovarModel(base.Model):
    """Tovar's waste-minimising first allocation over the observed peaks."""

    def __init__(self) -> None:
        super().__init__()
        self._value = math.nan

    def _after_observe(self) -> int:
        self._value = first_allocation(self.samples.y)
        return 1

    def predict_many(self, xs: base.FloatArray) -> base.FloatArray:
        """See :meth:`base.Model.predict_many`."""
        return np.full(xs.shape, self._value)


def make(args: Args) -> base.Model:
    """Return an empty Tovar model."""
    del args
    return TovarModel()
