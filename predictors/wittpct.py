"""``wittpct`` / ``wittpct(P)``: Witt et al.'s percentile predictor (HPCS 2019).

Input-agnostic: the P-th percentile (default 95) of the peaks observed so far for the process,
with the Weibull plotting positions of ``offsets.percentile`` (with few samples it is the
largest peak). No prediction before the first observation. ``DEFAULT_OFFSET`` is ``none``: the
percentile is the whole answer (``const0-offset=95percentile`` gives the same numbers). Witt et
al. retry by doubling; see ``wittlr`` for how the replay's retry rule applies. Version: one per
observation. Maturity: baseline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from predictors import base, offsets

NAME = "wittpct"
ALIASES: tuple[str, ...] = ()
SYNTAX = "wittpct|wittpct(P)"

DEFAULT_OFFSET = offsets.NONE
"""No margin on top of the percentile unless the spec asks for one."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Args:
    """Arguments of ``wittpct``.

    Attributes:
        percentile: P in [0, 100].
    """

    percentile: float = 95.0


def parse_args(suffix: str) -> Args | None:
    """Return the arguments for ``wittpct`` or ``wittpct(P)`` (0 <= P <= 100), else ``None``."""
    if suffix == "":
        return Args()
    values = base.parenthesised_numbers(suffix)
    if values is None or len(values) != 1 or not 0 <= values[0] <= 100:
        return None
    return Args(percentile=values[0])


class PercentileModel(base.Model):
    """The P-th percentile of the observed peaks, for every input."""

    def __init__(self, percentile: float) -> None:
        super().__init__()
        self.percentile = percentile
        self._value = math.nan

    def _after_observe(self) -> int:
        self._value = offsets.percentile(self.samples.y, self.percentile)
        return 1

    def predict_many(self, xs: base.FloatArray) -> base.FloatArray:
        """See :meth:`base.Model.predict_many`."""
        return np.full(xs.shape, self._value)


def make(args: Args) -> base.Model:
    """Return an empty percentile model."""
    return PercentileModel(args.percentile)
