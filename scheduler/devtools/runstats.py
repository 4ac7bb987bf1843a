"""Figures of one replayed run, computed from its attempts (pure).

Durations are what the replay observed (bound to finished); memory-time figures are converted
back to the trace's time (divided by the replay's ``time_scale``), so GiB-hours are comparable
with the original run whatever the scale.

- **allocated**: memory request x duration, over every attempt (failed ones included); a
  request changed while the attempt ran (shrunk or grown in place) counts piece by piece;
- **wastage**: allocated minus used, where a successful attempt used its peak and a failed
  attempt used nothing worth keeping (its whole allocation is waste, as in Ponder's papers);
- **CPU utilisation**: CPU requested x duration over (nodes x CPU per node x makespan), the
  share of the cluster's CPU the run kept busy;
- **memory utilisation**: memory used (peak, or the limit an OOM-killed attempt filled) x
  duration over (nodes x memory per node x makespan).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from scheduler.devtools import replay

GIB_HOUR = float(2**30) * 3600.0


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterShape:
    """The identical fake nodes a run had."""

    nodes: int
    cpu_millis: int
    memory_bytes: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RunStats:
    """The figures of one run (see the module docstring)."""

    makespan_s: float
    allocated_gibh: float
    wasted_gibh: float
    failed_attempts: int
    cpu_utilisation: float
    memory_utilisation: float
    attempts: int

    def to_json(self) -> dict[str, Any]:
        """The figures as a JSON-ready dict."""
        return asdict(self)


def _duration(attempt: replay.Attempt) -> float:
    if attempt.bound_s is None or attempt.finished_s is None:
        return 0.0
    return max(0.0, attempt.finished_s - attempt.bound_s)


def _used_bytes(attempt: replay.Attempt) -> int:
    if attempt.outcome == "succeeded":
        smallest = min((r for _, _, r in attempt.memory_steps()), default=attempt.memory_bytes)
        return min(attempt.peak_bytes or 0, smallest or (attempt.peak_bytes or 0))
    return attempt.final_limit_bytes or attempt.memory_bytes


def run_stats(
    attempts: Sequence[replay.Attempt],
    *,
    makespan_s: float,
    time_scale: float,
    cluster: ClusterShape,
) -> RunStats:
    """Compute the figures of a finished run."""
    allocated = wasted = cpu_work = used_work = 0.0
    failed = 0
    for attempt in attempts:
        duration = _duration(attempt)
        held = sum((end - start) * request for start, end, request in attempt.memory_steps())
        allocated += held
        used = _used_bytes(attempt)
        used_work += used * duration
        cpu_work += attempt.cpu_millis * duration
        if attempt.outcome == "succeeded":
            wasted += held - used * duration
        else:
            failed += attempt.outcome in ("oom", "failed")
            wasted += held
    capacity_s = max(makespan_s, 1e-9) * cluster.nodes
    return RunStats(
        makespan_s=makespan_s,
        allocated_gibh=allocated / time_scale / GIB_HOUR,
        wasted_gibh=wasted / time_scale / GIB_HOUR,
        failed_attempts=failed,
        cpu_utilisation=cpu_work / (capacity_s * cluster.cpu_millis),
        memory_utilisation=used_work / (capacity_s * cluster.memory_bytes),
        attempts=len(attempts),
    )


def geometric_mean(values: Iterable[float]) -> float:
    """Geometric mean of positive values (NaN when there are none)."""
    logs = [math.log(v) for v in values if v > 0]
    return math.exp(sum(logs) / len(logs)) if logs else math.nan
