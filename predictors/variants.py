"""Synthetic production-like variants of recorded runs, to test predictors beyond test profiles.

The shared nf-core traces are test-profile runs: requests about 33x the peaks, 90th-percentile
peak 0.4 GB, no peak above 16 GB. Production runs of nf-core pipelines look different (issue 16):
requests about 2.6x the peaks (run-time weighted), 90th-percentile peak about 6 GB, three
quarters of the memory-time in tasks peaking above 16 GB, and steps whose peak is constant while
their input varies a thousandfold. :func:`production_variant` rewrites one run towards that
regime, keeping its tasks, times and process structure. Deterministic (stable hashes of names,
no randomness); every number is a stated constant, not fitted to any predictor's result:

1. Scale every peak by g so that the run's 90th-percentile peak is ``P90_TARGET``.
2. Heavy steps: the processes that hold the first ``HEAVY_SHARE`` of memory-time (largest
   first) are scaled further so that their 25th-percentile peak is ``HEAVY_PEAK``.
3. Flat steps: every process with at least ``FLAT_MIN_TASKS`` tasks whose name hashes even gets
   a constant peak (its median, within ±2 %) while its inputs are spread over three decades
   around their median (x · 10^(3u - 1.5), u from a hash of the task name).
4. Requests: per process, its largest peak times f, rounded up to a whole GiB, with one f per run
   chosen so that the run-time weighted request/peak ratio before rounding is ``REQUEST_RATIO``
   (f >= 1: no request below a peak of its process).

:class:`VariantStats` reports what the variant achieved, so the regime is stated, not assumed.
"""

from __future__ import annotations

import dataclasses
import math
import zlib
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from predictors import base, traces

P90_TARGET = 6e9
"""Bytes: the 90th-percentile peak of a variant."""

HEAVY_SHARE = 0.75
"""Share of memory-time whose processes become heavy steps."""

HEAVY_PEAK = 17e9
"""Bytes: the 25th-percentile peak of a heavy step."""

FLAT_MIN_TASKS = 5
"""Processes with fewer tasks never become flat steps."""

REQUEST_RATIO = 2.6
"""Run-time weighted request / peak of a variant (before rounding up to GiB)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class VariantStats:
    """What a variant achieved (over the tasks with a peak).

    Attributes:
        request_ratio: Σ request·runtime / Σ peak·runtime.
        p90_peak: 90th-percentile peak, bytes.
        heavy_share: Share of peak·runtime in tasks peaking above 16 GB.
        flat_steps: Processes made flat.
        heavy_steps: Processes made heavy.
    """

    request_ratio: float
    p90_peak: float
    heavy_share: float
    flat_steps: int
    heavy_steps: int


def _unit(text: str) -> float:
    """A stable number in [0, 1) from a string."""
    return zlib.crc32(text.encode()) / 2**32


def production_variant(run: traces.Run) -> tuple[traces.Run, VariantStats]:
    """Return the production-like variant of a run and what it achieved (module docstring)."""
    tasks = [t for t in run.tasks if t.peak_bytes]
    if not tasks:
        return run, VariantStats(
            request_ratio=math.nan,
            p90_peak=math.nan,
            heavy_share=math.nan,
            flat_steps=0,
            heavy_steps=0,
        )
    peaks = {t.order: float(t.peak_bytes or 0) for t in tasks}
    gain = P90_TARGET / float(np.percentile(list(peaks.values()), 90))
    peaks = {k: v * gain for k, v in peaks.items()}
    by_process: dict[str, list[traces.Task]] = defaultdict(list)
    for t in tasks:
        by_process[t.process].append(t)

    def memory_time(process: str) -> float:
        return sum(peaks[t.order] * t.realtime_ms for t in by_process[process])

    total = sum(memory_time(p) for p in by_process) or 1.0
    heavy: list[str] = []
    covered = 0.0
    for process in sorted(by_process, key=lambda p: (-memory_time(p), p)):
        if covered >= HEAVY_SHARE * total:
            break
        covered += memory_time(process)
        heavy.append(process)
    for process in heavy:
        quartile = float(np.percentile([peaks[t.order] for t in by_process[process]], 25))
        factor = max(1.0, HEAVY_PEAK / quartile)
        for t in by_process[process]:
            peaks[t.order] *= factor
    inputs = {t.order: t.input_bytes for t in tasks}
    flat = [
        p
        for p, group in by_process.items()
        if len(group) >= FLAT_MIN_TASKS and zlib.crc32(p.encode()) % 2 == 0
    ]
    for process in flat:
        group = by_process[process]
        median_peak = float(np.median([peaks[t.order] for t in group]))
        known = [t.input_bytes for t in group if t.input_bytes]
        median_input = float(np.median(known)) if known else float(base.GIB)
        for t in group:
            peaks[t.order] = median_peak * (0.98 + 0.04 * _unit(t.name + "#peak"))
            inputs[t.order] = round(median_input * 10 ** (3 * _unit(t.name) - 1.5))
    largest = {p: max(peaks[t.order] for t in group) for p, group in by_process.items()}
    weighted_peak = sum(peaks[t.order] * t.realtime_ms for t in tasks) or 1.0
    weighted_largest = sum(largest[t.process] * t.realtime_ms for t in tasks)
    factor = max(1.0, REQUEST_RATIO * weighted_peak / weighted_largest) if weighted_largest else 1.0
    requests = {p: base.GIB * math.ceil(v * factor / base.GIB) for p, v in largest.items()}
    rewritten = [
        dataclasses.replace(
            t,
            peak_bytes=max(1, round(peaks[t.order])),
            input_bytes=inputs[t.order],
            request_bytes=requests[t.process] if t.request_bytes else None,
        )
        if t.order in peaks
        else t
        for t in run.tasks
    ]
    return dataclasses.replace(run, tasks=tuple(rewritten)), _stats(
        rewritten, flat=len(flat), heavy=len(heavy)
    )


def _stats(tasks: list[traces.Task], *, flat: int, heavy: int) -> VariantStats:
    scored = [t for t in tasks if t.peak_bytes and t.request_bytes]
    usage = sum((t.peak_bytes or 0) * t.realtime_ms for t in scored) or 1.0
    request = sum((t.request_bytes or 0) * t.realtime_ms for t in scored)
    above = sum((t.peak_bytes or 0) * t.realtime_ms for t in scored if (t.peak_bytes or 0) > 16e9)
    peaks = [float(t.peak_bytes or 0) for t in tasks if t.peak_bytes]
    return VariantStats(
        request_ratio=request / usage,
        p90_peak=float(np.percentile(peaks, 90)),
        heavy_share=above / usage,
        flat_steps=flat,
        heavy_steps=heavy,
    )
