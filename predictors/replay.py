"""Offline evaluation of an online memory predictor on recorded runs (memory-evaluation.md).

Protocol (fixed; stated with every table):

- One fresh predictor per process and per run; no sharing across processes or runs.
- Decision time d_i = ``start`` (or ``submit`` with ``Decision.SUBMIT``). Task i is predicted
  once, after observing every task j of its process with ``complete_j <= d_i`` in ``complete``
  order (completions before decisions at equal times, ties by task order).
- Every task with a valid peak and input is observed at its recorded completion, whatever its
  simulated allocation (tasks without a request are observed but never scored).
- Allocation: :class:`allocation.AllocationPolicy` (floor, cap, round up to MiB, <= request).
- An attempt fails when its allocation is below the peak; it costs allocation x runtime (time
  to failure = the full runtime). Retry at the user's request, doubling while that is below the
  peak (``Retry.USER``, what nf-cws does), or double the failed allocation (``Retry.DOUBLE``).
- With ``failure_feedback`` the first (scaled) failed attempt is fed back to the predictor as
  a censored observation at start + runtime (D8). Under this protocol the true peak arrives at
  ``complete`` >= start + runtime, so the feedback only matters in between.

Metrics (GB = 10^9 bytes, hours = ms / 3.6e6): usage = peak x runtime, over = (final
allocation - peak) x runtime, under = Σ failed allocations x runtime; wastage = over + under;
MAQ = usage / (usage + wastage), a ratio of sums.
"""

from __future__ import annotations

import collections
import enum
import heapq
import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields

from predictors import allocation, base, traces

_BYTE_MS_PER_GBH = 1e9 * 3.6e6

PredictorFactory = Callable[[], base.MemoryPredictor]
"""Builds an empty predictor for one process; ``None`` instead of a factory = user default."""

Seeds = Callable[[traces.Task], Sequence[base.Prior]]
"""Priors for the process of a task (called once per process with its first task); a predictor
that is a :class:`base.SeedablePredictor` is seeded with them before anything else."""


class Decision(enum.StrEnum):
    """When a task is predicted."""

    START = "start"
    SUBMIT = "submit"


class Retry(enum.StrEnum):
    """What a failed attempt is retried with."""

    USER = "user"
    DOUBLE = "double"


@dataclass(frozen=True, slots=True, kw_only=True)
class GrowInPlace:
    """The offline model of growing a running task's memory limit instead of failing it.

    A task whose allocation is below its peak is grown in place, if its node has room, by
    doubling its limit (capped at the request while below it; :func:`growth_steps`) until the
    peak fits; otherwise it fails and is retried exactly as without growth. Peak-only traces do
    not say when usage reaches the limit, so the cost is stated, not measured:

    - the growth happens at ``grown_from`` x the run time (default 0.5: mid-run; 0 = at the
      start, the pessimistic bound); until then the task uses its whole limit (no waste), after
      it the final allocation minus the peak is wasted;
    - each growth adds ``delay_ms`` at the grown allocation (detection plus resize latency),
      charged as under-allocation cost;
    - the node has room for all of a task's growths with probability ``room_probability``,
      decided per task by a fixed hash of its order: deterministic, no randomness. Without room
      the task fails and is retried exactly as without growth.

    Attributes:
        delay_ms: Cost of one growth, in ms at the grown allocation.
        grown_from: Fraction of the run time after which the grown allocation counts (0..1).
        room_probability: Probability that the node has room for a growth (0..1).
    """

    delay_ms: float = 10_000.0
    grown_from: float = 0.5
    room_probability: float = 1.0

    def __post_init__(self) -> None:
        if self.delay_ms < 0 or not 0 <= self.grown_from <= 1:
            raise ValueError("delay_ms must be >= 0 and grown_from within 0..1")
        if not 0 <= self.room_probability <= 1:
            raise ValueError("room_probability must be within 0..1")

    def has_room(self, order: int) -> bool:
        """Whether the node of this task has room to grow it (a fixed hash, not randomness)."""
        if self.room_probability >= 1:
            return True
        mixed = (order * 2654435761 + 12345) % 2**32
        return mixed / 2**32 < self.room_probability


@dataclass(frozen=True, slots=True, kw_only=True)
class Options:
    """Protocol parameters of a replay.

    Attributes:
        policy: The allocation policy (floor 128 MiB, no cap by default).
        decision: The decision time.
        retry: The retry policy after a failed attempt.
        failure_feedback: Feed the first failed attempt back as a censored observation.
        grow: Grow tasks in place instead of failing them (``None``: off).
    """

    policy: allocation.AllocationPolicy = field(default_factory=allocation.AllocationPolicy)
    decision: Decision = Decision.START
    retry: Retry = Retry.USER
    failure_feedback: bool = True
    grow: GrowInPlace | None = None

    def as_dict(self) -> dict[str, object]:
        """Return the protocol parameters (JSON-ready)."""
        return {
            "decision": str(self.decision),
            "floor_bytes": self.policy.floor_bytes,
            "floor_bytes_per_cpu": self.policy.floor_bytes_per_cpu,
            "cap_bytes": self.policy.cap_bytes,
            "retry": str(self.retry),
            "failure_feedback": self.failure_feedback,
            "grow_in_place": None
            if self.grow is None
            else {
                "delay_ms": self.grow.delay_ms,
                "grown_from": self.grow.grown_from,
                "room_probability": self.grow.room_probability,
            },
            "wastage_unit": "GB*h, GB = 1e9 bytes",
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Metrics:
    """Additive totals of a replay; byte·ms for the memory-time terms.

    Attributes:
        tasks: Scored tasks.
        usage: Σ peak x runtime.
        over: Σ (final allocation - peak) x runtime.
        under: Σ failed allocations x runtime.
        failed_attempts: All failed attempts.
        tasks_with_failures: Tasks with at least one failed attempt.
        cold_starts: Scored tasks for which the predictor returned ``None``.
        excluded: Completed tasks that could not be scored (no request, peak or input).
        growths: Growths in place (with ``Options.grow``; their cost is in ``under``).
        grown_tasks: Tasks grown at least once.
    """

    tasks: int = 0
    usage: float = 0.0
    over: float = 0.0
    under: float = 0.0
    failed_attempts: int = 0
    tasks_with_failures: int = 0
    cold_starts: int = 0
    excluded: int = 0
    growths: int = 0
    grown_tasks: int = 0

    def __add__(self, other: Metrics) -> Metrics:
        return Metrics(
            **{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(Metrics)}
        )

    @property
    def maq(self) -> float | None:
        """Memory allocation quality in [0, 1]; ``None`` when nothing was used."""
        total = self.usage + self.over + self.under
        return self.usage / total if total > 0 else None

    @property
    def wastage_gbh(self) -> float:
        """Over + under, in GB·h."""
        return (self.over + self.under) / _BYTE_MS_PER_GBH

    def as_dict(self) -> dict[str, float | int | None]:
        """Return the report fields (JSON-ready; GB·h with GB = 10^9 bytes)."""
        return {
            "maq": self.maq,
            "wastage_gbh": self.wastage_gbh,
            "over_gbh": self.over / _BYTE_MS_PER_GBH,
            "under_gbh": self.under / _BYTE_MS_PER_GBH,
            "usage_gbh": self.usage / _BYTE_MS_PER_GBH,
            "failures": self.failed_attempts,
            "tasks_with_failures": self.tasks_with_failures,
            "tasks": self.tasks,
            "cold_starts": self.cold_starts,
            "cold_start_share": self.cold_starts / self.tasks if self.tasks else None,
            "excluded": self.excluded,
            "growths": self.growths,
            "grown_tasks": self.grown_tasks,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """What happened to one scored task.

    Attributes:
        task: The task.
        prediction: The predictor's answer (bytes) or ``None``.
        allocation: The first attempt's allocation.
        failed: Allocations of the failed attempts, in order.
        final: The allocation of the successful attempt.
        grown: Allocations grown from, in order (grow-in-place mode).
    """

    task: traces.Task
    prediction: float | None
    allocation: int
    failed: tuple[int, ...]
    final: int
    grown: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class RunResult:
    """The replay of one run: totals and per-task outcomes (in decision order per process)."""

    run: str
    metrics: Metrics
    outcomes: tuple[Outcome, ...]


def attempts(first: int, *, peak: int, request: int, retry: Retry) -> tuple[tuple[int, ...], int]:
    """Return (failed allocations, final allocation) of a task whose first attempt gets ``first``.

    With ``Retry.USER`` a failed attempt below the request is retried at the request; an attempt
    at or above it (the request itself was too small) is retried at twice its allocation.
    """
    failed: list[int] = []
    current = max(first, 1)
    while current < peak:
        failed.append(current)
        current = request if retry is Retry.USER and current < request else 2 * current
    return tuple(failed), current


def replay_run(
    run: traces.Run,
    factory: PredictorFactory | None,
    options: Options = Options(),
    seeds: Seeds | None = None,
) -> RunResult:
    """Replay one run with a fresh predictor per process (``factory=None``: user default).

    With ``seeds``, each process's predictor is first seeded with the priors for it.
    """
    by_process: dict[str, list[traces.Task]] = collections.defaultdict(list)
    excluded = 0
    for task in run.tasks:
        by_process[task.process].append(task)
        excluded += not _scored(task)
    outcomes: list[Outcome] = []
    for tasks in by_process.values():
        outcomes.extend(_replay_process(tasks, factory, options, seeds))
    metrics = sum(
        (_metrics(outcome, options.grow) for outcome in outcomes), Metrics(excluded=excluded)
    )
    return RunResult(run=run.name, metrics=metrics, outcomes=tuple(outcomes))


def replay_runs(
    runs: Iterable[traces.Run], factory: PredictorFactory | None, options: Options = Options()
) -> list[RunResult]:
    """Replay several runs independently (predictors reset between runs)."""
    return [replay_run(run, factory, options) for run in runs]


_OBSERVE, _FAILURE, _DECIDE = 0, 1, 2


def _observable(task: traces.Task) -> bool:
    return task.peak_bytes is not None and task.input_bytes is not None


def _scored(task: traces.Task) -> bool:
    return _observable(task) and task.request_bytes is not None


def _replay_process(
    tasks: list[traces.Task],
    factory: PredictorFactory | None,
    options: Options,
    seeds: Seeds | None,
) -> list[Outcome]:
    """Merge completions and decisions of one process in time order; see the module docstring."""
    predictor = factory() if factory is not None else None
    if seeds is not None and isinstance(predictor, base.SeedablePredictor):
        for prior in seeds(tasks[0]):
            predictor.seed(prior)
    # (time, phase: 0 = completion side, 1 = decision, task order, unique sequence number, kind,
    # task, failed allocation); the sequence number keeps tuples from ever comparing tasks.
    events: list[tuple[float, int, int, int, int, traces.Task, int]] = []
    sequence = itertools.count()
    for task in tasks:
        if _observable(task):
            events.append((task.complete_ms, 0, task.order, next(sequence), _OBSERVE, task, 0))
        if _scored(task):
            submitted = task.submit_ms if options.decision is Decision.SUBMIT else None
            decided = task.start_ms if submitted is None else submitted
            events.append((decided, 1, task.order, next(sequence), _DECIDE, task, 0))
    heapq.heapify(events)
    outcomes: list[Outcome] = []
    while events:
        _, _, _, _, kind, task, failed_allocation = heapq.heappop(events)
        x = float(task.input_bytes or 0)
        if kind == _OBSERVE and predictor is not None:
            predictor.observe(x, float(task.peak_bytes or 0))
        elif kind == _FAILURE and predictor is not None:
            predictor.observe_failure(x, float(failed_allocation))
        elif kind == _DECIDE:
            outcome = _decide(task, predictor, options)
            outcomes.append(outcome)
            if outcome.failed and options.failure_feedback:
                when = task.start_ms + task.realtime_ms
                event = (when, 0, task.order, next(sequence), _FAILURE, task, outcome.failed[0])
                heapq.heappush(events, event)
    return outcomes


def _decide(task: traces.Task, predictor: base.MemoryPredictor | None, options: Options) -> Outcome:
    request, peak = task.request_bytes or 0, task.peak_bytes or 0
    prediction = predictor.predict(float(task.input_bytes or 0)) if predictor else None
    first = options.policy.allocate(prediction, request_bytes=request, cpus=task.cpus)
    failed, final = attempts(first, peak=peak, request=request, retry=options.retry)
    grown: tuple[int, ...] = ()
    if options.grow is not None and failed and options.grow.has_room(task.order):
        grown, final = growth_steps(first, peak=peak, request=request)
        failed = ()
    return Outcome(
        task=task,
        prediction=prediction,
        allocation=first,
        failed=failed,
        final=final,
        grown=grown,
    )


def growth_steps(first: int, *, peak: int, request: int) -> tuple[tuple[int, ...], int]:
    """Return (allocations grown from, final allocation) when growing in place from ``first``.

    Each growth doubles the limit, capped at the request while below it (then doubling on, as a
    retry would when the request itself is too small).
    """
    grown: list[int] = []
    current = max(first, 1)
    while current < peak:
        grown.append(current)
        current = min(2 * current, request) if current < request else 2 * current
    return tuple(grown), current


def _metrics(outcome: Outcome, grow: GrowInPlace | None = None) -> Metrics:
    runtime, peak = outcome.task.realtime_ms, outcome.task.peak_bytes or 0
    over = (outcome.final - peak) * runtime
    under = sum(outcome.failed) * runtime
    if outcome.grown and grow is not None:
        # Until the growth the task uses its whole (too small) limit, by definition of when it
        # is grown: no waste then. After it, the final allocation holds the peak. Each growth
        # costs its delay at the grown allocation.
        sizes = (*outcome.grown[1:], outcome.final)
        over = (outcome.final - peak) * runtime * (1.0 - grow.grown_from)
        under += sum(sizes) * grow.delay_ms
    return Metrics(
        tasks=1,
        usage=peak * runtime,
        over=over,
        under=under,
        failed_attempts=len(outcome.failed),
        tasks_with_failures=int(bool(outcome.failed)),
        cold_starts=int(outcome.prediction is None),
        growths=len(outcome.grown),
        grown_tasks=int(bool(outcome.grown)),
    )
