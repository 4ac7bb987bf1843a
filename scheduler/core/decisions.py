"""Decisions as data: what one scheduling cycle asks the shell to do.

``run_cycle`` never talks to the API server; it returns a :class:`CycleResult` whose
``decisions`` the loop executes in order. Every decision carries the ``cycle_id`` of the cycle
that made it, so logs, events and metrics trace back to one snapshot.

Execution contract for the shell:

- :class:`Resize` always comes directly before the :class:`Bind` of the same task; if the
  resize fails, bind with the original request (never abort the cycle, CWS defect D7).
- For each :class:`Bind`: ``ClusterCache.assume`` first, then the Binding call; on failure
  ``forget`` and re-queue with backoff (a 409 is terminal for that attempt).
- :class:`Reject` is informational (metrics, logs); the task stays queued.
- :class:`MarkUnschedulable` asks for the ``PodScheduled=False`` condition and a
  ``FailedScheduling`` event; it is only emitted when the reason changed since the last report.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from scheduler.core import cluster, resources, workflow


class RejectCode(enum.StrEnum):
    """Why a task was not placed in a cycle; drives how the queue and metrics treat it."""

    UNSCHEDULABLE = "Unschedulable"
    """Some node could take the task in principle but none has room now; retried next cycle."""
    UNRESOLVABLE = "UnschedulableAndUnresolvable"
    """No current node can ever take it (constraints, or a request above every allocatable)."""
    POLICY_ERROR = "PolicyError"
    """The assignment policy chose an infeasible node; the core refused the placement."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Bind:
    """Bind the task's pod to ``node``, reserving ``request``.

    ``request`` is the pod's effective request after the preceding :class:`Resize`, if any,
    computed like kube-scheduler (init containers, sidecars and overhead included).
    """

    cycle_id: int
    task: workflow.TaskKey
    pod: cluster.PodRef | None
    node: str
    request: resources.Resources


@dataclass(frozen=True, slots=True, kw_only=True)
class Resize:
    """Lower the memory request of the pending pod's container before binding it.

    ``memory_bytes`` and ``original_memory_bytes`` are the container's new and current memory
    requests (not the pod's). The shell lowers the container's limit too only where the limit
    equals the request, so the pod's QoS class never changes.
    """

    cycle_id: int
    task: workflow.TaskKey
    pod: cluster.PodRef | None
    memory_bytes: int
    original_memory_bytes: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Reject:
    """The task could not be placed in this cycle.

    Attributes:
        code: Classification of the failure.
        reason: kube-scheduler style message, e.g. ``"0/12 nodes are available: 8 Insufficient
            memory, 4 node(s) had untolerated taint {key: value}."``.
    """

    cycle_id: int
    task: workflow.TaskKey
    code: RejectCode
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class MarkUnschedulable:
    """Set ``PodScheduled=False, reason=Unschedulable`` with ``reason`` and emit an event."""

    cycle_id: int
    task: workflow.TaskKey
    pod: cluster.PodRef | None
    reason: str
    at: float
    """The cycle's time (``CycleContext.now``): when the reason was reported."""


Decision = Bind | Resize | Reject | MarkUnschedulable


@dataclass(frozen=True, slots=True, kw_only=True)
class CycleResult:
    """Everything one cycle decided.

    Attributes:
        cycle_id: The cycle's id (``CycleContext.cycle_id``).
        order: Every queued task in ranked order; the queue's order for the next cycle.
        decisions: Decisions in execution order.
        gated: Tasks skipped because their pod has scheduling gates.
        backing_off: Tasks skipped because they are in backoff.
        unreported: Tasks whose unschedulable reason changed too soon after its last report
            (``CycleSettings.unschedulable_report_interval_s``), with the new reason; the
            queue keeps it and a later cycle reports it once due.
    """

    cycle_id: int
    order: tuple[workflow.TaskKey, ...]
    decisions: tuple[Decision, ...]
    gated: tuple[workflow.TaskKey, ...] = ()
    backing_off: tuple[workflow.TaskKey, ...] = ()
    unreported: tuple[tuple[workflow.TaskKey, str], ...] = ()

    @property
    def binds(self) -> tuple[Bind, ...]:
        """The bind decisions, in order."""
        return tuple(d for d in self.decisions if isinstance(d, Bind))

    @property
    def rejects(self) -> tuple[Reject, ...]:
        """The reject decisions, in order."""
        return tuple(d for d in self.decisions if isinstance(d, Reject))

    @property
    def resizes(self) -> tuple[Resize, ...]:
        """The resize decisions, in order."""
        return tuple(d for d in self.decisions if isinstance(d, Resize))
