"""``envelope`` / ``envelope(K)``: wfsched's own predictor: a scaled envelope of the largest peak.

Why: under the allocation policy a task without a prediction keeps the user's request U, and a
failed attempt costs its allocation plus a retry at U. Predicting allocation A therefore beats
abstaining whenever the failure probability is below 1 - A/U, which for nf-core presets (U is
often 10 to 100 times the peak) is almost always. Ponder abstains during its warm-up whenever
the input is at least as large as every input seen so far; on the development traces that is
where almost all of its waste beyond the unavoidable first tasks comes from. ``envelope`` answers
from the first observation on, with a margin that is proportional to the peak (the 128 MiB floor
makes it free for small tasks) and shrinks as evidence accumulates.

With n exact observations, Y the largest known peak lower bound (observed peaks and OOM-killed
allocations), X the largest input among them, M = 128 MiB and K = 2 (default):

    predict(x) = Y · max(1, x / X) · (1 + K / sqrt(n)) + M        (no prediction while n = 0)

- ``Y · max(1, x / X)``: never below the largest peak seen (peaks are not monotone in the input
  across tasks of a process), extrapolated proportionally for inputs beyond any seen.
- ``1 + K / sqrt(n)``: headroom for the heavy upper tail of peaks within a process (2x to 48x
  jumps occur in the traces); it decays like the standard error of an estimate from n samples.
- OOM feedback (D8): ``observe_failure(x, a)`` records "peak > a" as a lower bound: Y and X take
  it into account, so later predictions exceed a; n counts exact observations only.
- Priors (``seed``, optional): before the first own observation, a prior answers as one
  observation would: ``max(P, Y) · (1 + K) + M`` with P the largest prior peak, times
  ``base.TOOL_PRIOR_INFLATION`` (2) for a prior from another pipeline. A prior from earlier runs
  of the same workflow supersedes one from other pipelines. The first own peak replaces it.

Constants fixed on the development traces (``trace-1`` of each nf-core workflow) before the
evaluation traces (``trace-2`` to ``trace-5``) were replayed; see docs/memory-prediction.md. The
default ``max`` offset adds nothing (every in-sample residual is negative). The version
increases per observation and per failure that raises Y or X. Maturity: experimental.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from predictors import base

NAME = "envelope"
ALIASES: tuple[str, ...] = ()
SYNTAX = "envelope|envelope(K)"

DEFAULT_HEADROOM = 2.0
"""K: the relative margin is K / sqrt(n) (2 = 3x the largest peak after one observation)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Args:
    """Arguments of ``envelope``.

    Attributes:
        headroom: K >= 0, the relative margin after one observation.
        margin_bytes: M, the additive margin.
    """

    headroom: float = DEFAULT_HEADROOM
    margin_bytes: int = base.PONDER_MARGIN_BYTES


def parse_args(suffix: str) -> Args | None:
    """Return the arguments for ``envelope`` or ``envelope(K)`` (K a number >= 0), else None."""
    if suffix == "":
        return Args()
    values = base.parenthesised_numbers(suffix)
    if values is None or len(values) != 1 or values[0] < 0:
        return None
    return Args(headroom=values[0])


class EnvelopeModel(base.Model):
    """The envelope model; see the module docstring."""

    def __init__(self, args: Args) -> None:
        super().__init__()
        self.args = args
        self._largest_peak = 0.0
        self._largest_input = 0.0
        self._prior: base.Prior | None = None
        self._prior_level = 0.0

    def _after_observe(self) -> int:
        self._raise(float(self.samples.x[-1]), float(self.samples.y[-1]))
        return 1

    def _raise(self, x: float, y: float) -> bool:
        """Fold one lower bound into (Y, X); return whether either grew."""
        grew = y > self._largest_peak or x > self._largest_input
        self._largest_peak = max(self._largest_peak, y)
        self._largest_input = max(self._largest_input, x)
        return grew

    def observe_failure(self, input_bytes: float, allocated_bytes: float) -> None:
        """Record "peak > allocated_bytes" for this input (see the module docstring)."""
        base.check_observation(input_bytes, allocated_bytes)
        if self._raise(input_bytes, allocated_bytes):
            self._version += 1

    def seed(self, prior: base.Prior) -> None:
        """Adopt a prior (see the module docstring) unless a more specific one is held."""
        merged = prior.merged(self._prior)
        if merged is None:
            return
        self._prior = merged
        inflation = base.TOOL_PRIOR_INFLATION if merged.source is base.PriorSource.TOOL else 1.0
        self._prior_level = max(merged.peaks) * inflation
        self._version += 1

    def predict_many(self, xs: base.FloatArray) -> base.FloatArray:
        """See :meth:`base.Model.predict_many`."""
        n = len(self.samples)
        if n == 0:
            if self._prior is None:
                return np.full(xs.shape, np.nan)
            level = max(self._prior_level, self._largest_peak)
            return np.full(xs.shape, level * (1.0 + self.args.headroom) + self.args.margin_bytes)
        growth = np.maximum(1.0, xs / max(self._largest_input, 1.0))
        headroom = 1.0 + self.args.headroom / math.sqrt(n)
        return self._largest_peak * growth * headroom + self.args.margin_bytes


def make(args: Args) -> base.Model:
    """Return an empty envelope model."""
    return EnvelopeModel(args)
