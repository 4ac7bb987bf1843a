"""Contracts shared by every memory predictor: the predictor interface, the sample store and units.

Data flow: the daemon (or the offline replay) calls ``observe(input_bytes, peak_bytes)`` when a
task of a process finishes, ``observe_failure(input_bytes, allocated_bytes)`` when a scaled task
was OOM-killed, and ``predict(input_bytes)`` for every queued task of that process whose
predictor ``version`` changed since the task was last predicted. One predictor instance serves one
process (abstract task) of one workflow run.

A predictor is a *model* (``lr``, ``ponder``, ...; a :class:`Model`) wrapped in an *offset*
(``offsets.OffsetPredictor``), which adds a margin computed from the model's in-sample residuals.
Everything here is pure: no I/O, no clock, no global randomness.
"""

from __future__ import annotations

import abc
import enum
import math
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
"""A one-dimensional float64 array; ``NaN`` marks "no prediction" in vectorised answers."""

MIB = 1 << 20
"""One mebibyte in bytes: allocations are rounded up to whole MiB."""

GIB = 1 << 30
"""One gibibyte in bytes: the unit ``lr2``, ``ponder`` and ``poly`` fit in."""

PONDER_MARGIN_BYTES = 128 * MIB
"""Ponder's minimum margin M (134 217 728 bytes), also the default allocation floor."""


def parenthesised_numbers(suffix: str) -> list[float] | None:
    """The finite numbers of a spec suffix ``(a)`` or ``(a,b,...)``, else ``None``.

    Used by the models whose names take arguments, e.g. ``envelope(1.5)`` or ``steady(3,1)``.
    """
    if not (suffix.startswith("(") and suffix.endswith(")")):
        return None
    try:
        values = [float(part) for part in suffix[1:-1].split(",")]
    except ValueError:
        return None
    return values if all(math.isfinite(v) for v in values) else None


@runtime_checkable
class MemoryPredictor(Protocol):
    """An online predictor of a task's peak memory from its input size, for one process.

    Invariants every implementation keeps (checked by the contract tests):

    - ``predict`` returns ``None`` ("no opinion": the task keeps its current plan) or a positive
      finite number of bytes. It never mutates the predictor, so it is idempotent.
    - ``version`` never decreases. If two ``predict`` calls with the same argument may differ,
      the version differs between them; the daemon re-predicts a queued task only when the
      version changed since the task's last prediction.
    - No I/O, no clock, no global randomness.
    """

    @property
    def version(self) -> int:
        """A counter that increases whenever the answers of ``predict`` may have changed."""
        ...

    def observe(self, input_bytes: float, peak_bytes: float) -> None:
        """Learn from a finished task: its input size and measured peak memory, in bytes.

        Raises:
            ValueError: ``input_bytes`` is negative or not finite, or ``peak_bytes`` is not a
                positive finite number (CWS: such metrics are not a valid observation).
        """
        ...

    def observe_failure(self, input_bytes: float, allocated_bytes: float) -> None:
        """Learn from an OOM-killed attempt: a censored observation, peak > ``allocated_bytes``.

        This is the D8 fix (CWS learns nothing from failures). Predictors that have no use for
        it may ignore it, but must accept the call.

        Raises:
            ValueError: Same input checks as :meth:`observe`, applied to ``allocated_bytes``.
        """
        ...

    def predict(self, input_bytes: float) -> float | None:
        """Return the memory to request for a task with this input size, or ``None``."""
        ...


class PriorSource(enum.StrEnum):
    """Where a prior comes from, from the most to the least specific."""

    RUN = "run"
    """The same process (full qualified name) in earlier runs of the same workflow."""
    TOOL = "tool"
    """The same tool (process short name and container image) in other pipelines."""


TOOL_PRIOR_INFLATION = 2.0
"""Level multiplier of a prior from another pipeline (``PriorSource.TOOL``): the same tool is fed
data of another size there. Shared by the predictors that answer from priors."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Prior:
    """Peaks seen elsewhere for the same step, offered to a predictor before its own data.

    Attributes:
        source: How closely the prior matches this process.
        peaks: Positive finite peaks in bytes (at least one).
    """

    source: PriorSource
    peaks: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.peaks or not all(math.isfinite(p) and p > 0 for p in self.peaks):
            raise ValueError("a prior needs at least one positive finite peak")

    def merged(self, held: Prior | None) -> Prior | None:
        """The prior to hold after offering this one to a predictor holding ``held``.

        A prior from earlier runs of the same workflow supersedes one from other pipelines;
        two from the same source pool their peaks. ``None``: keep ``held`` unchanged.
        """
        if held is None:
            return self
        if held.source is PriorSource.RUN and self.source is not PriorSource.RUN:
            return None
        if held.source is self.source:
            return Prior(source=self.source, peaks=held.peaks + self.peaks)
        return self


@runtime_checkable
class SeedablePredictor(MemoryPredictor, Protocol):
    """A predictor that also accepts priors (an optional extension of the contract).

    ``seed`` may be called any number of times, before or between observations; it changes the
    ``version`` when it may change an answer. Predictors that have no use for priors ignore them
    (``Model.seed`` does), so callers may seed every predictor the registry makes.
    """

    def seed(self, prior: Prior) -> None:
        """Offer a prior for this process."""
        ...


class Samples:
    """Append-only store of (input, peak) pairs in bytes with cached numpy views."""

    __slots__ = ("_x", "_x_array", "_y", "_y_array")

    def __init__(self) -> None:
        self._x: list[float] = []
        self._y: list[float] = []
        self._x_array: FloatArray | None = None
        self._y_array: FloatArray | None = None

    def add(self, x: float, y: float) -> None:
        """Append one pair; invalidates the cached arrays."""
        self._x.append(float(x))
        self._y.append(float(y))
        self._x_array = None
        self._y_array = None

    def __len__(self) -> int:
        return len(self._x)

    @property
    def x(self) -> FloatArray:
        """Inputs in bytes, in observation order (do not mutate the returned array)."""
        if self._x_array is None:
            self._x_array = np.asarray(self._x, dtype=np.float64)
        return self._x_array

    @property
    def y(self) -> FloatArray:
        """Peaks in bytes, in observation order (do not mutate the returned array)."""
        if self._y_array is None:
            self._y_array = np.asarray(self._y, dtype=np.float64)
        return self._y_array


def check_observation(input_bytes: float, peak_bytes: float) -> None:
    """Validate one observation or censored observation.

    Raises:
        ValueError: The input is negative or not finite, or the peak is not positive and finite.
    """
    if not math.isfinite(input_bytes) or input_bytes < 0:
        raise ValueError(f"input size must be a finite number >= 0, got {input_bytes!r}")
    if not math.isfinite(peak_bytes) or peak_bytes <= 0:
        raise ValueError(f"peak memory must be a finite number > 0, got {peak_bytes!r}")


def sanitize(value: float) -> float | None:
    """Map a raw model output to the predictor contract: ``None`` unless positive and finite.

    This is the D23 fix: CWS turns NaN into 0 bytes and lets negative values through.
    """
    if math.isfinite(value) and value > 0:
        return float(value)
    return None


def as_array(xs: npt.ArrayLike) -> FloatArray:
    """Return ``xs`` as a one-dimensional float64 array."""
    return np.atleast_1d(np.asarray(xs, dtype=np.float64))


class Model(abc.ABC):
    """A raw model (no offset) over the samples of one process.

    Subclasses implement :meth:`predict_many`; the scalar :meth:`predict` is derived from it so
    the two can never disagree. ``observe`` stores the sample and increments ``version`` by one;
    subclasses with other version rules (``const``, ``poly``) override :meth:`_after_observe`.
    Failures are ignored by default: the offset wrapper applies the D8 floor for every model.
    """

    def __init__(self) -> None:
        self.samples = Samples()
        self._version = 0

    @property
    def version(self) -> int:
        """See :attr:`MemoryPredictor.version`."""
        return self._version

    def observe(self, input_bytes: float, peak_bytes: float) -> None:
        """See :meth:`MemoryPredictor.observe`."""
        check_observation(input_bytes, peak_bytes)
        self.samples.add(input_bytes, peak_bytes)
        self._version += self._after_observe()

    def _after_observe(self) -> int:
        """Update derived state after a new sample; return the version increment (default 1)."""
        return 1

    def observe_failure(self, input_bytes: float, allocated_bytes: float) -> None:
        """See :meth:`MemoryPredictor.observe_failure`; plain models ignore failures."""
        check_observation(input_bytes, allocated_bytes)

    def seed(self, prior: Prior) -> None:
        """See :meth:`SeedablePredictor.seed`; plain models ignore priors."""
        del prior

    def predict(self, input_bytes: float) -> float | None:
        """See :meth:`MemoryPredictor.predict`."""
        return sanitize(float(self.predict_many(as_array(input_bytes))[0]))

    @abc.abstractmethod
    def predict_many(self, xs: FloatArray) -> FloatArray:
        """Return the raw model output in bytes for each input, ``NaN`` where there is none.

        Values may be zero or negative (the offset wrapper and :func:`sanitize` handle them).
        Must not mutate the model.
        """


class LineModel(Model):
    """A model with a straight-line fit ``(intercept, slope)``, refitted lazily.

    The fit is recomputed at the first query after each new observation (never on the hot
    observe path); ``_refit`` receives the previous fit, e.g. as a warm start.
    """

    def __init__(self) -> None:
        super().__init__()
        self._fit: tuple[float, float] | None = None
        self._fit_version = -1

    def coefficients(self) -> tuple[float, float] | None:
        """Return (intercept, slope), or ``None`` when the fit is undefined."""
        if self._fit_version != self.version:
            self._fit = self._refit(self._fit)
            self._fit_version = self.version
        return self._fit

    @abc.abstractmethod
    def _refit(self, previous: tuple[float, float] | None) -> tuple[float, float] | None:
        """Fit the samples; ``None`` when the fit is undefined."""
