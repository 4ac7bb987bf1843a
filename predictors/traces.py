"""Workflow runs for the replay: Nextflow trace files and WfFormat instances, parsed from text.

Pure (the caller reads the files): ``parse_nextflow_trace(text)`` and ``parse_wfformat(text)``
return a :class:`Run`, i.e. the tasks to replay after the data hygiene of memory-evaluation.md
sections 2 to 4, plus counts of what was dropped and why.

Nextflow traces: separator detected from the header (tab, ``;`` or ``,``); raw numbers (bytes,
ms, epoch ms) or human-readable values (``2 GB`` with 1024-based units, ``1m 3s``,
``2023-11-07 10:08:38.948`` read as UTC); ``-`` is missing. Rows with the wrong field count are
rejected and counted. Only ``COMPLETED`` rows are tasks; a completed retry (attempt > 1) gets
the request of its first attempt when that row exists (same ``name``). x = ``rchar``,
y = ``peak_rss``, runtime = ``realtime``; ``realtime = 0`` rows are kept (they weigh 0).

WfFormat instances (read by ``predictors.wfformat``) record no start times and no requests.
Times come from an as-soon-as-possible schedule of the task DAG with unlimited resources (a task
starts when its last parent completes; runtime = ``runtimeInSeconds``). x = the summed sizes of
the task's input files (the true pre-run input size), y = ``memoryInBytes``. The process is the
task name without its ``_ID<digits>`` suffix. The user request is synthetic: the caller's
default, else the smallest power-of-two GiB (>= 1 GiB) that fits every peak of the process, i.e.
a preset that never fails.
"""

from __future__ import annotations

import collections
import csv
import datetime
import graphlib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from predictors import base, wfformat

REQUIRED_COLUMNS = ("process", "status", "memory", "start", "complete", "realtime", "peak_rss")
"""Columns a Nextflow trace must have (``rchar``, ``task_id``, ``name``, ``attempt``, ``submit``
are used when present)."""

_SIZE_UNITS = {"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40, "PB": 1 << 50}
_SIZE = re.compile(r"([0-9]*\.?[0-9]+(?:[eE][+-]?\d+)?)\s*([KMGTP]?B)?", re.IGNORECASE)
_DURATION_PART = re.compile(r"([0-9]*\.?[0-9]+)\s*(ms|s|m|h|d)")
_DURATION_MS = {"ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3, "d": 86400e3}
_WF_ID_SUFFIX = re.compile(r"_ID\d+$")


class TraceError(ValueError):
    """A trace or instance that cannot be read at all (bad header, bad JSON, missing fields)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Task:
    """One task to replay: the final completed attempt of one task of a run.

    Attributes:
        order: Stable tie-break (Nextflow ``task_id``, else the row or instance index).
        name: Task name (``PROCESS (tag)``).
        process: Abstract task (full qualified process name): the learning unit.
        request_bytes: The user's request U, or ``None`` (never resized, not scored).
        peak_bytes: Measured peak memory (> 0), or ``None`` (neither observed nor scored).
        input_bytes: Input size x (>= 0), or ``None`` (neither observed nor scored).
        submit_ms: Submission time (ms), or ``None``.
        start_ms: Start time (ms).
        complete_ms: Completion time (ms).
        realtime_ms: Run time (ms, >= 0).
        container: Container image (Nextflow ``container`` column), ``""`` when unknown.
        cpus: Requested CPUs (Nextflow ``cpus``), or ``None`` when not recorded.
    """

    order: int
    name: str
    process: str
    request_bytes: int | None
    peak_bytes: int | None
    input_bytes: int | None
    submit_ms: float | None
    start_ms: float
    complete_ms: float
    realtime_ms: float
    container: str = ""
    cpus: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Run:
    """One workflow run ready for the replay.

    Attributes:
        name: Display name (``rnaseq/trace-1``).
        tasks: Completed tasks, in file order.
        dropped: Rows that are not tasks, by reason (``malformed``, ``cached``, ``failed``, ...).
        notes: Counts worth reporting that do not drop rows (``retry request recovered``, ...).
    """

    name: str
    tasks: tuple[Task, ...]
    dropped: Mapping[str, int] = field(default_factory=dict)
    notes: Mapping[str, int] = field(default_factory=dict)


def parse_size(text: str) -> int | None:
    """Parse bytes: raw (``6442450944``) or human-readable (``2 GB``, 1024-based); ``-`` = None.

    Raises:
        ValueError: Unparseable text.
    """
    text = text.strip()
    if text in ("", "-"):
        return None
    match = _SIZE.fullmatch(text)
    if match is None:
        raise ValueError(f"not a memory size: {text!r}")
    unit = (match.group(2) or "B").upper()
    return round(float(match.group(1)) * _SIZE_UNITS[unit])


def _raw_number(text: str) -> tuple[bool, float | None]:
    """``(True, value)`` for a missing (``-``) or raw numeric field, ``(False, None)`` else."""
    if text in ("", "-"):
        return True, None
    try:
        return True, float(text)
    except ValueError:
        return False, None


def parse_duration(text: str) -> float | None:
    """Parse a duration in ms: raw (``102``) or human-readable (``1m 3s``, ``2.5s``); ``-``=None.

    Raises:
        ValueError: Unparseable text.
    """
    text = text.strip()
    done, value = _raw_number(text)
    if done:
        return value
    parts = _DURATION_PART.findall(text)
    if not parts or _DURATION_PART.sub("", text).strip():
        raise ValueError(f"not a duration: {text!r}")
    return sum(float(number) * _DURATION_MS[unit] for number, unit in parts)


def parse_timestamp(text: str) -> float | None:
    """Parse a time in epoch ms: raw (``1667812121000``) or ``2023-11-07 10:08:38.948`` (UTC).

    Raises:
        ValueError: Unparseable text.
    """
    text = text.strip()
    done, value = _raw_number(text)
    if done:
        return value
    moment = datetime.datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp() * 1000.0


def detect_separator(header: str) -> str:
    """Return the separator (tab, ``;`` or ``,``) under which the header has the needed columns.

    Raises:
        TraceError: No separator yields all of :data:`REQUIRED_COLUMNS`.
    """
    for separator in ("\t", ";", ","):
        if set(REQUIRED_COLUMNS) <= {c.strip() for c in header.split(separator)}:
            return separator
    raise TraceError(f"not a Nextflow trace: the header lacks one of {', '.join(REQUIRED_COLUMNS)}")


def parse_nextflow_trace(text: str, *, name: str) -> Run:
    """Parse a Nextflow trace file and apply the data hygiene.

    Raises:
        TraceError: Empty file or a header without the required columns.
    """
    lines = text.splitlines()
    if not lines:
        raise TraceError("empty trace file")
    separator = detect_separator(lines[0])
    reader = csv.reader(lines, delimiter=separator, quoting=csv.QUOTE_NONE)
    header = [column.strip() for column in next(reader)]
    dropped: collections.Counter[str] = collections.Counter()
    rows: list[dict[str, str]] = []
    for fields in reader:
        if not fields:
            continue
        if len(fields) != len(header):
            dropped["malformed"] += 1
            continue
        rows.append(dict(zip(header, fields, strict=True)))
    first_requests = {
        row.get("name", ""): row["memory"] for row in rows if row.get("attempt", "1") == "1"
    }
    tasks: list[Task] = []
    notes: collections.Counter[str] = collections.Counter()
    for index, row in enumerate(rows):
        status = row["status"].strip().upper()
        if status != "COMPLETED":
            dropped[status.lower() or "no status"] += 1
            continue
        request = row["memory"]
        if row.get("attempt", "1").strip() not in ("", "-", "1"):
            if row.get("name") in first_requests:
                request = first_requests[row.get("name", "")]
                notes["retry: first request recovered"] += 1
            else:
                notes["retry: escalated request kept"] += 1
        try:
            tasks.append(_nextflow_task(row, request=request, index=index))
        except ValueError:
            dropped["unparseable"] += 1
    return Run(name=name, tasks=tuple(tasks), dropped=dict(dropped), notes=dict(notes))


def _nextflow_task(row: Mapping[str, str], *, request: str, index: int) -> Task:
    start = parse_timestamp(row["start"])
    complete = parse_timestamp(row["complete"])
    if start is None or complete is None:
        raise ValueError("missing start or complete time")
    task_id = row.get("task_id", "").strip()
    return Task(
        order=int(task_id) if task_id.isdigit() else index,
        name=row.get("name", "").strip(),
        process=row["process"].strip(),
        request_bytes=parse_size(request) or None,
        peak_bytes=parse_size(row["peak_rss"]) or None,
        input_bytes=parse_size(row.get("rchar", "-")),
        submit_ms=parse_timestamp(row.get("submit", "-")),
        start_ms=start,
        complete_ms=complete,
        realtime_ms=parse_duration(row["realtime"]) or 0.0,
        container=row.get("container", "-").strip().removeprefix("-"),
        cpus=int(row["cpus"]) if row.get("cpus", "").strip().isdigit() else None,
    )


def parse_wfformat(text: str, *, name: str, default_request: int | None = None) -> Run:
    """Parse a WfFormat instance into a run (see the module docstring for the derivations).

    Args:
        text: The JSON text.
        name: Display name of the run.
        default_request: The user request for every task; ``None`` for the per-process preset.

    Raises:
        TraceError: Not JSON, not a valid instance (``predictors.wfformat``), or a cycle.
    """
    try:
        instance = wfformat.loads(text)
    except wfformat.InstanceError as error:
        raise TraceError(f"not a WfFormat instance: {error}") from error
    runtimes = {t.id: 1000.0 * t.runtime_s for t in instance}
    start = _asap_schedule(instance, runtimes)
    processes = {t.id: wfformat.process_name(t.name) for t in instance}
    peaks = {t.id: t.memory_bytes for t in instance if t.memory_bytes}
    requests = _presets(processes, peaks) if default_request is None else {}
    tasks = [
        Task(
            order=index,
            name=t.id,
            process=processes[t.id],
            request_bytes=default_request or requests.get(processes[t.id]),
            peak_bytes=peaks.get(t.id),
            input_bytes=t.input_bytes or 0,
            submit_ms=start[t.id],
            start_ms=start[t.id],
            complete_ms=start[t.id] + runtimes[t.id],
            realtime_ms=runtimes[t.id],
        )
        for index, t in enumerate(instance)
    ]
    return Run(name=name, tasks=tuple(tasks))


def _asap_schedule(
    instance: Sequence[wfformat.WfTask], runtimes: Mapping[str, float]
) -> dict[str, float]:
    """Return start times (ms) of an unlimited-resource schedule; a cycle raises TraceError."""
    graph = {t.id: t.parents for t in instance}
    start: dict[str, float] = {}
    try:
        for tid in graphlib.TopologicalSorter(graph).static_order():
            start[tid] = max((start[p] + runtimes[p] for p in graph[tid]), default=0.0)
    except graphlib.CycleError as error:
        raise TraceError("the task graph has a cycle") from error
    return start


def _presets(processes: Mapping[str, str], peaks: Mapping[str, int]) -> dict[str, int]:
    """Per process, the smallest power-of-two GiB (>= 1 GiB) holding all its peaks."""
    largest: dict[str, int] = {}
    for tid, peak in peaks.items():
        largest[processes[tid]] = max(largest.get(processes[tid], 0), peak)
    return {
        process: base.GIB << max(0, math.ceil(math.log2(peak / base.GIB)))
        for process, peak in largest.items()
    }
