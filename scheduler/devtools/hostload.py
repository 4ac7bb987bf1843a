"""How busy the machine is while a benchmark runs: CPU per process group, sampled from /proc.

On a small machine the local control plane (kube-apiserver, etcd, KWOK) shares the cores with
the scheduler under test and the replay that drives it. When they saturate the machine, pods
start and finish late for reasons no scheduler controls, and a makespan measures the machine.
:class:`HostLoadSampler` reads every process's CPU time once a second during a run and reports
the mean cores each group used and the seconds in which the whole machine was nearly full, so a
benchmark can show which runs the machine could not keep up with.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

CONTROL_PLANE: tuple[str, ...] = (
    "kube-apiserver",
    "etcd",
    "kwok",
    "kube-scheduler",
    "kube-controller-manager",
)
"""The control-plane programs, each a group of its own (matched by the program's file name)."""

GROUPS: tuple[str, ...] = ("wfsched", *CONTROL_PLANE, "benchmark", "other")
"""The process groups, in report order: the daemon (``python -m scheduler`` or the ``wfsched``
command), the control-plane programs, the benchmark's own process and everything else."""

SATURATED_SHARE = 0.9
"""A second counts as saturated when all processes together used at least this share of the
machine's cores."""


def process_group(argv: Iterable[str], *, is_self: bool = False) -> str:
    """Return the group of a process with command line ``argv`` (``is_self``: the caller)."""
    if is_self:
        return "benchmark"
    args = list(argv)
    if not args:
        return "other"
    program = os.path.basename(args[0])
    if program in CONTROL_PLANE:
        return program
    if program == "wfsched":
        return "wfsched"
    if program.startswith("python") and (
        args[1:3] == ["-m", "scheduler"]
        or (len(args) > 1 and os.path.basename(args[1]) == "wfsched")
    ):
        return "wfsched"
    return "other"


def stat_ticks(stat: str) -> int:
    """Return user plus system clock ticks from the text of ``/proc/<pid>/stat``."""
    fields = stat.rsplit(")", 1)[1].split()  # the command name may hold spaces and ")"
    return int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15 of proc(5)


def process_cpu_seconds(pid: int, proc: Path = Path("/proc")) -> float:
    """Return the user plus system CPU seconds process ``pid`` has used so far.

    Raises:
        OSError: The process does not exist (any more).
    """
    stat = (proc / str(pid) / "stat").read_text(encoding="utf-8", errors="replace")
    return stat_ticks(stat) / os.sysconf("SC_CLK_TCK")


def read_ticks(proc: Path = Path("/proc")) -> dict[int, tuple[str, int]]:
    """Return every live process: pid -> (group, CPU clock ticks used so far).

    Processes that exit while being read are skipped.
    """
    own = os.getpid()
    result: dict[int, tuple[str, int]] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            stat = (entry / "stat").read_text(encoding="utf-8", errors="replace")
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        words = [a.decode("utf-8", "replace") for a in argv if a]
        result[pid] = (process_group(words, is_self=pid == own), stat_ticks(stat))
    return result


def tick_deltas(
    before: Mapping[int, tuple[str, int]], after: Mapping[int, tuple[str, int]]
) -> dict[str, int]:
    """Return the clock ticks each group used between two readings.

    A process new in ``after`` counts from zero (it started in between); one gone from
    ``after`` is not counted.
    """
    used: dict[str, int] = {}
    for pid, (group, ticks) in after.items():
        earlier = before.get(pid)
        start = earlier[1] if earlier is not None and earlier[0] == group else 0
        used[group] = used.get(group, 0) + max(0, ticks - start)
    return used


@dataclass(frozen=True, slots=True)
class HostLoad:
    """What the machine did over a run.

    The mean cores per group, the number of seconds sampled and how many of them were
    saturated (see :data:`SATURATED_SHARE`).
    """

    mean_cores: dict[str, float]
    seconds: int
    saturated_seconds: int
    cores: int

    def to_json(self) -> dict[str, object]:
        """Return a JSON-ready dict."""
        return {
            "mean_cores": {g: round(c, 3) for g, c in self.mean_cores.items()},
            "seconds": self.seconds,
            "saturated_seconds": self.saturated_seconds,
            "cores": self.cores,
        }


def summarise(samples: Iterable[tuple[float, Mapping[str, float]]], cores: int) -> HostLoad:
    """Summarise ``(interval seconds, cores used per group)`` samples.

    ``cores`` is the machine's core count, against which a sample counts as saturated.
    """
    total_s = 0.0
    core_seconds: dict[str, float] = dict.fromkeys(GROUPS, 0.0)
    counted = saturated = 0
    for interval, used in samples:
        if interval <= 0:
            continue
        counted += 1
        total_s += interval
        for group, value in used.items():
            core_seconds[group] = core_seconds.get(group, 0.0) + value * interval
        if sum(used.values()) >= SATURATED_SHARE * cores:
            saturated += 1
    mean = {g: (v / total_s if total_s else 0.0) for g, v in core_seconds.items()}
    return HostLoad(mean_cores=mean, seconds=counted, saturated_seconds=saturated, cores=cores)


def usable_cores() -> int:
    """Return the number of cores this process may run on (its affinity, else the count)."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else (os.cpu_count() or 1)


@dataclass(slots=True)
class HostLoadSampler:
    """Sample every process's CPU once per ``interval_s`` on a thread.

    Sampling runs between ``with`` entry and exit; :meth:`result` summarises. Only Linux's
    /proc is read.
    """

    interval_s: float = 1.0
    proc: Path = Path("/proc")
    _samples: list[tuple[float, dict[str, float]]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> HostLoadSampler:
        self._thread = threading.Thread(target=self._run, name="host-load", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        hertz = os.sysconf("SC_CLK_TCK")
        before, then = read_ticks(self.proc), time.monotonic()
        while not self._stop.wait(self.interval_s):
            after, now = read_ticks(self.proc), time.monotonic()
            interval = now - then
            if interval > 0:
                used = tick_deltas(before, after)
                self._samples.append((interval, {g: t / hertz / interval for g, t in used.items()}))
            before, then = after, now

    def result(self) -> HostLoad:
        """Return the summary of the samples taken so far."""
        return summarise(list(self._samples), usable_cores())
