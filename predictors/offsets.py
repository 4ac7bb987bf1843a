"""Offsets: margins added on top of a model, computed from its in-sample residuals.

For a model f over the observed pairs (x_i, y_i) of a process, the residuals are
d_i = y_i - f(x_i) (pairs where f has no answer are skipped). An offset maps the residuals to a
number of bytes that :class:`OffsetPredictor` adds to every prediction (cws-semantics.md 5.4):

=====================  =====================================================================
``none``               0
``max`` (the default)  max(0, max_i d_i), the largest under-prediction
``<p>percentile``      max(0, Q_p(d)) with Apache's default estimator (Weibull positions)
``<k>std``             k times the sample standard deviation of d (``std`` = 1 std)
``var``                accepted for compatibility, computed as ``1std`` (D3 fix; the grammar
                       warns)
=====================  =====================================================================

The residuals are cached until the model's version or the sample count changes, so a burst of
``predict`` calls between two observations costs one vectorised model evaluation.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import numpy as np

from predictors import base


class OffsetKind(enum.StrEnum):
    """The offset families of the grammar."""

    NONE = "none"
    MAX = "max"
    PERCENTILE = "percentile"
    STD = "std"


@dataclass(frozen=True, slots=True, kw_only=True)
class Offset:
    """A parsed offset.

    Attributes:
        kind: The offset family.
        value: The percentile p (0..100) for ``PERCENTILE``, the multiplier k (>= 0) for ``STD``;
            ignored otherwise.
    """

    kind: OffsetKind
    value: float = 0.0

    def __str__(self) -> str:
        if self.kind is OffsetKind.PERCENTILE:
            return f"{self.value:g}percentile"
        if self.kind is OffsetKind.STD:
            return f"{self.value:g}std"
        return self.kind.value

    def __call__(self, residuals: base.FloatArray) -> float:
        """Return the margin in bytes for these residuals (0 when there are none)."""
        if residuals.size == 0 or self.kind is OffsetKind.NONE:
            return 0.0
        if self.kind is OffsetKind.MAX:
            return max(0.0, float(residuals.max()))
        if self.kind is OffsetKind.PERCENTILE:
            return max(0.0, percentile(residuals, self.value))
        return self.value * math.sqrt(sample_variance(residuals))


NONE = Offset(kind=OffsetKind.NONE)
MAX = Offset(kind=OffsetKind.MAX)


def percentile(values: base.FloatArray, p: float) -> float:
    """Return the p-th percentile with Apache commons-math's default estimator.

    pos = p * (n + 1) / 100 (1-based); pos < 1 gives the smallest value, pos >= n the largest,
    otherwise linear interpolation between the floor(pos)-th order statistic and the next one.
    Equal to ``numpy.percentile(values, p, method="weibull")``.

    Raises:
        ValueError: ``values`` is empty or p is outside 0..100.
    """
    if values.size == 0:
        raise ValueError("percentile of an empty sample")
    if not 0 <= p <= 100:
        raise ValueError(f"percentile must be within 0..100, got {p}")
    ordered = np.sort(values)
    n = ordered.size
    pos = p * (n + 1) / 100
    if pos < 1:
        return float(ordered[0])
    if pos >= n:
        return float(ordered[-1])
    low = math.floor(pos)
    frac = pos - low
    return float(ordered[low - 1] + frac * (ordered[low] - ordered[low - 1]))


def sample_variance(values: base.FloatArray) -> float:
    """Return the sample variance (divisor n - 1), 0 when there are fewer than two values."""
    if values.size <= 1:
        return 0.0
    return float(np.var(values, ddof=1))


class OffsetPredictor:
    """A :class:`base.MemoryPredictor`: a model plus an offset plus the D8 failure floor.

    ``predict(x) = f(x) + offset(residuals of f)``; ``None`` when f has no answer or the sum is
    not positive and finite. Failures fed through :meth:`observe_failure` raise a per-process
    floor: no prediction is returned at or below the largest allocation that was OOM-killed (it
    becomes that allocation plus one MiB). Without failures the answers are exactly CWS's.

    ``version`` = model version + (number of samples, unless the offset is ``none``) + number of
    failures that raised the floor; every term is non-decreasing, and each grows whenever the
    answer may change.
    """

    def __init__(self, model: base.Model, offset: Offset = MAX) -> None:
        self.model = model
        self.offset = offset
        self._failure_floor = 0.0
        self._floor_raises = 0
        self._cache_key: tuple[int, int] | None = None
        self._cached_offset = 0.0

    @property
    def version(self) -> int:
        """See :attr:`base.MemoryPredictor.version`."""
        sample_term = 0 if self.offset.kind is OffsetKind.NONE else len(self.model.samples)
        return self.model.version + sample_term + self._floor_raises

    def observe(self, input_bytes: float, peak_bytes: float) -> None:
        """See :meth:`base.MemoryPredictor.observe`."""
        self.model.observe(input_bytes, peak_bytes)

    def observe_failure(self, input_bytes: float, allocated_bytes: float) -> None:
        """Forward the censored observation to the model and raise the failure floor."""
        self.model.observe_failure(input_bytes, allocated_bytes)
        if allocated_bytes > self._failure_floor:
            self._failure_floor = float(allocated_bytes)
            self._floor_raises += 1

    def seed(self, prior: base.Prior) -> None:
        """Forward a prior to the model (:class:`base.SeedablePredictor`)."""
        self.model.seed(prior)

    def margin(self) -> float:
        """Return the current offset in bytes (cached until the next observation)."""
        if self.offset.kind is OffsetKind.NONE:
            return 0.0
        key = (self.model.version, len(self.model.samples))
        if key != self._cache_key:
            samples = self.model.samples
            fitted = self.model.predict_many(samples.x)
            defined = np.isfinite(fitted)
            self._cached_offset = self.offset(samples.y[defined] - fitted[defined])
            self._cache_key = key
        return self._cached_offset

    def predict(self, input_bytes: float) -> float | None:
        """See :meth:`base.MemoryPredictor.predict`."""
        raw = float(self.model.predict_many(base.as_array(input_bytes))[0])
        value = base.sanitize(raw + self.margin()) if math.isfinite(raw) else None
        if value is not None and self._failure_floor and value <= self._failure_floor:
            value = self._failure_floor + base.MIB
        return value
