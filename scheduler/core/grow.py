"""Grow in place: raise a running task's memory before it is OOM-killed (the pure policy).

Since Kubernetes 1.35 a running container's memory can be raised without a restart
(``pods/resize``). That lets memory be allocated close to a prediction, with a way out when the
prediction was low. :func:`plan_grows` decides, from each running task's memory usage, limit
and grows so far and from each node's free memory, which tasks to grow and by how much:

- **When**: usage has reached ``threshold`` x the current limit (default 0.8).
- **By how much**: the new limit is ``max(limit x factor, usage / threshold)`` (default factor
  1.5), rounded up to whole MiB and clipped to ``max_limit_bytes`` when that is set; after a grow
  the usage sits below the threshold again, so the next grow waits for real growth.
- **The request follows**: it rises by as much as the limit, so the node's accounting holds what
  the task may now use, and a request equal to its limit stays equal (the QoS class cannot
  change, which the API server would refuse).
- **How many times**: at most ``max_grows`` per task (default 3). After that, or at the cap,
  nothing is done.
- **Only with room**: the added request must fit in the node's free memory (allocatable minus
  the requests of every pod on it, the grows decided earlier in the same round included); the
  most urgent task (highest usage / limit) is served first. A task that does not fit is left
  as it is: if it then passes its limit it is OOM-killed, and the workflow engine's retry (with
  more memory) takes over, as without grow-in-place.
- Tasks without a memory limit are never grown (nothing kills them at a limit).

The decisions are data (:class:`GrowDecision`); the daemon's shell sends the resizes, accounts
the grown requests and reports Events and metrics.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from scheduler.core import cluster

MIB = 1 << 20


class GrowPolicyError(ValueError):
    """A grow policy parameter is out of range."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GrowPolicy:
    """When, by how much and how often running tasks are grown (see the module docstring)."""

    threshold: float = 0.8
    """Grow when usage >= threshold x limit; in (0, 1)."""
    factor: float = 1.5
    """Each grow multiplies the limit by at least this; > 1."""
    max_grows: int = 3
    """Grows per task at most; >= 1."""
    max_limit_bytes: int = 0
    """No grow raises a limit above this; 0: no cap but the node's room."""

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise GrowPolicyError(f"threshold must be in (0, 1), got {self.threshold}")
        if not (math.isfinite(self.factor) and self.factor > 1.0):
            raise GrowPolicyError(f"factor must be > 1, got {self.factor}")
        if self.max_grows < 1:
            raise GrowPolicyError(f"max_grows must be >= 1, got {self.max_grows}")
        if self.max_limit_bytes < 0:
            raise GrowPolicyError(f"max_limit_bytes must be >= 0, got {self.max_limit_bytes}")


@dataclass(frozen=True, slots=True, kw_only=True)
class RunningTask:
    """One running container that may be grown, as the shell observed it."""

    ref: cluster.PodRef
    node_name: str
    container: str
    request_bytes: int
    """The container's memory request now."""
    limit_bytes: int
    """The container's memory limit now (0: none)."""
    usage_bytes: int
    """The largest memory usage observed (metrics.k8s.io working set)."""
    grows: int = 0
    """Grows this task already received."""

    @property
    def pressure(self) -> float:
        """Usage as a fraction of the limit (0 without a limit)."""
        return self.usage_bytes / self.limit_bytes if self.limit_bytes > 0 else 0.0


class GrowOutcome(enum.StrEnum):
    """What :func:`plan_grows` decided for a task past its threshold."""

    GROW = "grow"
    """Resize it to ``new_limit_bytes`` / ``new_request_bytes``."""
    NO_ROOM = "no_room"
    """The node lacks the memory; left to be OOM-killed and retried by the engine."""
    EXHAUSTED = "exhausted"
    """It was grown ``max_grows`` times already."""
    AT_CAP = "at_cap"
    """Its limit is at ``max_limit_bytes`` already."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GrowDecision:
    """The decision about one task whose usage passed the threshold."""

    task: RunningTask
    outcome: GrowOutcome
    new_limit_bytes: int
    new_request_bytes: int
    free_bytes: int
    """The node's free memory when the decision was made (before this grow)."""

    @property
    def added_bytes(self) -> int:
        """Memory the grow adds to the request and the limit (0 unless ``GROW``)."""
        return self.new_limit_bytes - self.task.limit_bytes


def needs_growth(task: RunningTask, policy: GrowPolicy) -> bool:
    """True when the task has a limit and its usage reached ``threshold`` x limit."""
    return task.limit_bytes > 0 and task.usage_bytes >= policy.threshold * task.limit_bytes


def grown_limit(task: RunningTask, policy: GrowPolicy) -> int:
    """The limit a grow would give.

    ``max(limit x factor, usage / threshold)`` rounded up to whole MiB, clipped to the cap, never
    below the current limit.
    """
    wanted = max(task.limit_bytes * policy.factor, task.usage_bytes / policy.threshold)
    limit = math.ceil(wanted / MIB) * MIB
    if policy.max_limit_bytes:
        limit = min(limit, policy.max_limit_bytes)
    return max(limit, task.limit_bytes)


def plan_grows(
    tasks: Iterable[RunningTask], free_memory: Mapping[str, int], policy: GrowPolicy
) -> list[GrowDecision]:
    """Decide for every task past its threshold, most urgent first.

    Args:
        tasks: Running tasks with their usage.
        free_memory: Node name → allocatable memory minus the requests of all its pods.
        policy: The grow policy.

    Returns:
        One decision per task that needs growth, in the order decided. The free memory of a
        node shrinks by each grow decided on it; a node missing from ``free_memory`` has none.
    """
    free = dict(free_memory)
    urgent = sorted(
        (t for t in tasks if needs_growth(t, policy)),
        key=lambda t: (-t.pressure, t.ref.namespace, t.ref.name),
    )
    out: list[GrowDecision] = []
    for task in urgent:
        room = free.get(task.node_name, 0)
        if task.grows >= policy.max_grows:
            outcome = GrowOutcome.EXHAUSTED
            limit = task.limit_bytes
        else:
            limit = grown_limit(task, policy)
            if limit <= task.limit_bytes:
                outcome = GrowOutcome.AT_CAP
            elif limit - task.limit_bytes > room:
                outcome = GrowOutcome.NO_ROOM
                limit = task.limit_bytes
            else:
                outcome = GrowOutcome.GROW
        added = limit - task.limit_bytes
        if outcome is GrowOutcome.GROW:
            free[task.node_name] = room - added
        out.append(
            GrowDecision(
                task=task,
                outcome=outcome,
                new_limit_bytes=limit,
                new_request_bytes=task.request_bytes + added,
                free_bytes=room,
            )
        )
    return out
