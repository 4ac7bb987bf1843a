"""``steady`` / ``steady(K)`` / ``steady(K,C)``: headroom from the spread of a step's peaks.

Designed from what fails elsewhere (docs/memory-prediction.md, issue 16): a margin proportional
to the *size* of the peaks (``envelope``) is ruinous on tasks of tens of GB, scaling by input
size is costly where the input does not explain the peak, and tasks that start before any
sibling finished keep the whole request. ``steady`` therefore:

1. **Spread model** (input-agnostic): level L = the largest known peak (observed peaks and
   OOM-killed allocations), spread s = the sample standard deviation of the observed peaks,
   shrunk towards a prior relative spread c·L with ``PRIOR_WEIGHT`` pseudo-observations:

       s_eff² = ((n - 1)·s² + n0·(c·L)²) / (n - 1 + n0),  answer = L + K·g·s_eff

   With one observation the margin is K·c·L; as peaks accumulate it becomes K·g times their
   spread, whatever their size (constant peaks → almost no margin).
2. **Regression model** (only where the input explains the peak): least squares of peak on
   input, used only with n >= 3, a positive slope and R² >= ``MIN_R2``; answer = fit(x) +
   K·g·r_eff (residual standard deviation shrunk the same way towards c·ȳ), at least the
   smallest peak seen.
3. **Per-step model choice by online accuracy**: before each observation is stored, both models
   predict it and are charged ``cost(a, y) = a - y`` if a >= y, else ``a + FAILURE_PENALTY·y``
   (a failed attempt burns its allocation and a retry); the regression answers only while its
   accumulated cost is strictly lower.
4. **Failure budget**: the chosen answer's prequential misses (observations above what it would
   have answered) beyond ``FAILURE_BUDGET`` of the scored observations widen the margin:
   g = 1 + max(0, misses - budget·scored).
5. **Priors** (``seed``): before the first own observation, a prior answers: L = the largest
   prior peak (times ``TOOL_INFLATION`` for a prior from another pipeline), margin K·c'·L with
   c' the prior's own relative spread shrunk towards c. After that, c' replaces c as the prior
   relative spread. A prior from earlier runs of the same workflow supersedes one from other
   pipelines.

K (``headroom``, default 2) and c (``prior_spread``, default 0.5) are the tunable parameters;
the evaluator chooses them per held-out workflow from the other workflows only. Everything else
is a fixed constant, set before any evaluation. Constant time per call (running moments).
Version: one per observation, per failure that raises L, per seed. Maturity: experimental.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from predictors import base, offsets

NAME = "steady"
ALIASES: tuple[str, ...] = ()
SYNTAX = "steady|steady(K)|steady(K,C)"

DEFAULT_OFFSET = offsets.NONE
"""The margin is built in; no offset on top unless the spec asks for one."""

PRIOR_WEIGHT = 2.0
"""n0: pseudo-observations behind the prior relative spread."""

MIN_R2 = 0.5
"""The regression model competes only when the input explains at least this share of variance."""

FAILURE_PENALTY = 2.0
"""Online-accuracy cost of a miss, in multiples of the peak, on top of the burnt allocation."""

FAILURE_BUDGET = 0.05
"""Share of scored observations that may be missed before the margin widens."""

TOOL_INFLATION = base.TOOL_PRIOR_INFLATION
"""Level multiplier for a prior from another pipeline (data sizes differ between pipelines)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Args:
    """Arguments of ``steady``.

    Attributes:
        headroom: K >= 0, the margin in spreads.
        prior_spread: c > 0, the prior relative spread (standard deviation / largest peak).
    """

    headroom: float = 2.0
    prior_spread: float = 0.5


def parse_args(suffix: str) -> Args | None:
    """Return the arguments for ``steady``, ``steady(K)`` or ``steady(K,C)``, else ``None``."""
    if suffix == "":
        return Args()
    values = base.parenthesised_numbers(suffix)
    if values is None or len(values) > 2 or values[0] < 0:
        return None
    if len(values) == 2:
        return Args(headroom=values[0], prior_spread=values[1]) if values[1] > 0 else None
    return Args(headroom=values[0])


class _Moments:
    """Running means and co-moments of (x, y) (Welford), in GiB for numerical range."""

    __slots__ = ("cxx", "cxy", "cyy", "mx", "my", "n")

    def __init__(self) -> None:
        self.n = 0
        self.mx = self.my = self.cxx = self.cxy = self.cyy = 0.0

    def add(self, x: float, y: float) -> None:
        self.n += 1
        dx = x - self.mx
        dy = y - self.my
        self.mx += dx / self.n
        self.my += dy / self.n
        self.cxx += dx * (x - self.mx)
        self.cxy += dx * (y - self.my)
        self.cyy += dy * (y - self.my)


def _cost(answer: float, peak: float) -> float:
    return answer - peak if answer >= peak else answer + FAILURE_PENALTY * peak


class SteadyModel(base.Model):
    """The ``steady`` model; see the module docstring. Internally in GiB."""

    def __init__(self, args: Args) -> None:
        super().__init__()
        self.args = args
        self._moments = _Moments()
        self._level = 0.0  # largest peak lower bound, GiB
        self._smallest = math.inf
        self._spread_cost = 0.0
        self._regression_cost = 0.0
        self._misses = 0
        self._scored = 0
        self._prior: base.Prior | None = None
        self._prior_level = 0.0
        self._prior_relative_spread = args.prior_spread

    # --- learning -------------------------------------------------------------------------

    def observe(self, input_bytes: float, peak_bytes: float) -> None:
        """Score both models on this observation (prequential), then store it."""
        base.check_observation(input_bytes, peak_bytes)
        x, y = input_bytes / base.GIB, peak_bytes / base.GIB
        if self._moments.n:
            spread = self._spread_answer()
            regression = self._regression_answer(x)
            chosen = self._choose(spread, regression)
            self._spread_cost += _cost(spread, y)
            self._regression_cost += _cost(spread if regression is None else regression, y)
            self._scored += 1
            self._misses += chosen < y
        self._moments.add(x, y)
        self._level = max(self._level, y)
        self._smallest = min(self._smallest, y)
        super().observe(input_bytes, peak_bytes)

    def observe_failure(self, input_bytes: float, allocated_bytes: float) -> None:
        """Fold "peak > allocated_bytes" into the level L."""
        base.check_observation(input_bytes, allocated_bytes)
        bound = allocated_bytes / base.GIB
        if bound > self._level:
            self._level = bound
            self._version += 1

    def seed(self, prior: base.Prior) -> None:
        """Adopt a prior unless one from a more specific source is already held."""
        merged = prior.merged(self._prior)
        if merged is None:
            return
        self._prior = prior = merged
        peaks = np.asarray(prior.peaks, dtype=np.float64) / base.GIB
        level = float(peaks.max())
        observed = float(peaks.std(ddof=1)) / level if peaks.size > 1 else 0.0
        m = peaks.size
        c = self.args.prior_spread
        self._prior_relative_spread = math.sqrt(
            ((m - 1) * observed**2 + PRIOR_WEIGHT * c**2) / (m - 1 + PRIOR_WEIGHT)
        )
        inflation = TOOL_INFLATION if prior.source is base.PriorSource.TOOL else 1.0
        self._prior_level = level * inflation
        self._version += 1

    # --- answering ------------------------------------------------------------------------

    def _widening(self) -> float:
        return 1.0 + max(0.0, self._misses - FAILURE_BUDGET * self._scored)

    def _shrunk(self, variance: float, dof: int, prior_scale: float) -> float:
        c = self._prior_relative_spread
        pooled = (dof * variance + PRIOR_WEIGHT * (c * prior_scale) ** 2) / (dof + PRIOR_WEIGHT)
        return math.sqrt(pooled)

    def _spread_answer(self) -> float:
        m = self._moments
        variance = m.cyy / (m.n - 1) if m.n > 1 else 0.0
        spread = self._shrunk(variance, max(m.n - 1, 0), self._level)
        return self._level + self.args.headroom * self._widening() * spread

    def _regression_answer(self, x: float) -> float | None:
        m = self._moments
        if m.n < 3 or m.cxx <= 0 or m.cyy <= 0 or m.cxy <= 0:
            return None
        if m.cxy * m.cxy < MIN_R2 * m.cxx * m.cyy:
            return None
        slope = m.cxy / m.cxx
        fit = m.my + slope * (x - m.mx)
        residual_variance = max(0.0, (m.cyy - slope * m.cxy) / (m.n - 2))
        sigma = self._shrunk(residual_variance, m.n - 2, m.my)
        return max(self._smallest, fit + self.args.headroom * self._widening() * sigma)

    def _choose(self, spread: float, regression: float | None) -> float:
        if regression is not None and self._regression_cost < self._spread_cost:
            return regression
        return spread

    def _prior_answer(self) -> float:
        level = max(self._prior_level, self._level)
        return level + self.args.headroom * self._prior_relative_spread * level

    def predict_many(self, xs: base.FloatArray) -> base.FloatArray:
        """See :meth:`base.Model.predict_many` (bytes; NaN before any data or prior)."""
        if self._moments.n == 0:
            if self._prior is None:
                return np.full(xs.shape, np.nan)
            return np.full(xs.shape, self._prior_answer() * base.GIB)
        spread = self._spread_answer()
        answers = [self._choose(spread, self._regression_answer(float(x) / base.GIB)) for x in xs]
        return np.asarray(answers, dtype=np.float64) * base.GIB


def make(args: Args) -> base.Model:
    """Return an empty ``steady`` model."""
    return SteadyModel(args)
