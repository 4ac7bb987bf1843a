"""Gangs: pods placed all or nothing, ranked as one task (pure).

A gang is a set of pending tasks that share a :class:`~scheduler.core.workflow.GangRef`: the
pods naming one ``PodGroup`` with a gang policy (``spec.schedulingGroup.podGroupName``,
Kubernetes 1.36 ``scheduling.k8s.io/v1alpha2``), or the pods of one run and step annotated
``wfsched.io/gang-size``. Its contract, the same as kube-scheduler's GangScheduling plugin:

- **All or nothing.** No member is bound until ``min_count`` members (bound ones included)
  have a feasible place *in the same cycle*. The members are placed on a fork of the cycle's
  working nodes; only when enough fit are the placements replayed onto the real working nodes
  and their ``Bind`` decisions emitted together (the shell then holds the whole gang's
  resources as assumed pods while the bindings go out). Otherwise nothing of the gang is
  placed and the resources it would have taken stay free for the tasks ranked after it.
- **One step of the DAG.** Ranking policies see one task per gang: its lowest-submission
  member with the summed request of all queued members (:meth:`GangPlan.rankable`); the
  persistent order then lists every member where that task was ranked. Its input size is
  the members' summed input size too.
- **No starvation, no blocking for ever.** A gang that does not fit lets smaller tasks behind
  it backfill. Once it has waited ``reserve_after_s`` it *reserves* for ``reserve_for_s``:
  while it cannot be placed, nothing ranked after it is placed either, so running tasks drain
  and the room it needs comes free. Reservation alternates with backfill windows of
  ``reserve_after_s`` (so a gang held up by pods outside wfsched's control does not stop the
  queue for ever), and a gang that can never fit (a member fits no node even when it is empty,
  or the summed request exceeds the cluster's allocatable) never reserves.
- **Reported.** Until ``timeout_s`` its members are rejected quietly (the gang is assembling
  or waiting for room); from then on each member gets ``MarkUnschedulable`` (an Event and
  ``PodScheduled=False``) whenever the reason changes.

Time is passed in (``ctx.now``); the waiting start of each gang is kept by the caller in a
:class:`GangBoard`, which also counts members already bound.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from scheduler.core import context, decisions, nodetable, resources, workflow
from scheduler.core.queue import SchedulingQueue

TIMEOUT_PREFIX = "gang could not be placed"
"""How the reason of a gang past its timeout begins (Events and ``PodScheduled=False``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GangSettings:
    """How long a gang waits before it is reported and before it reserves.

    Attributes:
        timeout_s: Seconds without a place before the members get an Event and
            ``PodScheduled=False``.
        reserve_after_s: Seconds of waiting before the gang reserves (and the length of the
            backfill windows between reservations).
        reserve_for_s: Length of one reservation in seconds.
    """

    timeout_s: float = 60.0
    reserve_after_s: float = 30.0
    reserve_for_s: float = 300.0

    def __post_init__(self) -> None:
        if self.timeout_s < 0 or self.reserve_after_s < 0 or self.reserve_for_s <= 0:
            raise ValueError("gang times must be >= 0 (reserve_for_s > 0)")


@dataclass(slots=True)
class GangBoard:
    """What the cycle knows about gangs besides the queue; owned and updated by the caller.

    Attributes:
        settings: Timeout and reservation times.
        bound: Members bound or being bound, per gang key (they count toward ``min_count``).
        waiting_since: When each gang with queued members was first seen without a place.
    """

    settings: GangSettings = field(default_factory=GangSettings)
    bound: dict[str, int] = field(default_factory=dict)
    waiting_since: dict[str, float] = field(default_factory=dict)

    def waited(self, key: str, now: float) -> float:
        """Seconds the gang has waited (0 when it is not known to wait)."""
        return max(0.0, now - self.waiting_since.get(key, now))

    def reserving(self, key: str, now: float) -> bool:
        """True while the gang is in a reservation window (see the module docstring)."""
        s = self.settings
        waited = self.waited(key, now)
        if waited < s.reserve_after_s:
            return False
        return (waited % (s.reserve_after_s + s.reserve_for_s)) >= s.reserve_after_s

    def timed_out(self, key: str, now: float) -> bool:
        """True once the gang has waited ``timeout_s``."""
        return key in self.waiting_since and self.waited(key, now) >= self.settings.timeout_s

    def after_cycle(self, queued: Iterable[workflow.Task], now: float) -> None:
        """Start the clock of gangs that still have queued members; stop the others'."""
        waiting = {t.gang.key for t in queued if t.gang is not None}
        for key in list(self.waiting_since):
            if key not in waiting:
                del self.waiting_since[key]
        for key in waiting:
            self.waiting_since.setdefault(key, now)


@dataclass(frozen=True, slots=True)
class Gang:
    """The queued members of one gang, lowest submission first."""

    ref: workflow.GangRef
    members: tuple[workflow.Task, ...]

    @property
    def key(self) -> str:
        """The gang's key."""
        return self.ref.key


class GangPlan:
    """The cycle's view of the queue with gangs folded into one task each.

    Args:
        tasks: The queue's tasks in their persistent order.
    """

    def __init__(self, tasks: Sequence[workflow.Task]) -> None:
        grouped: dict[str, list[workflow.Task]] = {}
        refs: dict[str, workflow.GangRef] = {}
        for task in tasks:
            if task.gang is not None:
                grouped.setdefault(task.gang.key, []).append(task)
                refs.setdefault(task.gang.key, task.gang)
        self._by_rep: dict[workflow.TaskKey, Gang] = {}
        self._member_of: dict[workflow.TaskKey, workflow.TaskKey] = {}
        self._reps: dict[workflow.TaskKey, workflow.Task] = {}
        for key, members in grouped.items():
            members.sort(key=lambda t: (t.submission, t.key))
            head = members[0]
            total = resources.Resources()
            for member in members:
                total = total + member.request
            size = sum(member.input_size for member in members)
            self._reps[head.key] = dataclasses.replace(head, request=total, input_size=size)
            gang = Gang(ref=refs[key], members=tuple(members))
            self._by_rep[head.key] = gang
            for member in members:
                self._member_of[member.key] = head.key
        self._tasks = tasks

    def __bool__(self) -> bool:
        return bool(self._by_rep)

    def rankable(self) -> tuple[workflow.Task, ...]:
        """The tasks the ranking policy sees: plain tasks, and one summed task per gang."""
        out: list[workflow.Task] = []
        for task in self._tasks:
            head = self._member_of.get(task.key)
            if head is None:
                out.append(task)
            elif head == task.key:
                out.append(self._reps[head])
        return tuple(out)

    def gang(self, task: workflow.Task) -> Gang | None:
        """The gang a ranked task stands for, or ``None`` for a plain task."""
        return self._by_rep.get(task.key)

    def expand(self, ranked: Iterable[workflow.Task]) -> tuple[workflow.TaskKey, ...]:
        """The persistent order: every gang's members where its task was ranked."""
        order: list[workflow.TaskKey] = []
        for task in ranked:
            gang = self._by_rep.get(task.key)
            if gang is None:
                order.append(task.key)
            else:
                order.extend(member.key for member in gang.members)
        return tuple(order)


Refusal = tuple[str, decisions.RejectCode]
PlaceOne = Callable[
    [workflow.Task, nodetable.WorkingNodes, list[decisions.Decision]],
    "nodetable.Candidates | Refusal | None",
]
"""Places one task on the given working nodes, appending its decisions; ``None`` on success."""


@dataclass(frozen=True, slots=True)
class GangOutcome:
    """What placing one gang did.

    Attributes:
        placed: Members bound by this cycle.
        blocks: The gang reserves: place nothing ranked after it in this cycle.
        skipped: Members not attempted (gated or backing off).
    """

    placed: int
    blocks: bool
    skipped: tuple[workflow.TaskKey, ...] = ()


def _never_fits(
    members: Sequence[workflow.Task],
    nodes: nodetable.WorkingNodes,
    failures: Mapping[workflow.TaskKey, nodetable.Candidates | Refusal],
) -> bool:
    """True when the gang cannot fit even on the empty cluster (so it must not reserve)."""
    for failure in failures.values():
        if isinstance(failure, nodetable.Candidates):
            if nodes.explain(failure)[1] is decisions.RejectCode.UNRESOLVABLE:
                return True
        elif failure[1] is not decisions.RejectCode.UNSCHEDULABLE:
            return True
    total = resources.Resources()
    for member in members:
        total = total + member.request
    alloc = nodes.alloc
    need = nodes.vector(total)
    return any(int(alloc[:, j].sum()) < amount for j, amount in enumerate(need))


def place_gang(
    gang: Gang,
    *,
    nodes: nodetable.WorkingNodes,
    queue: SchedulingQueue,
    board: GangBoard,
    ctx: context.CycleContext,
    place_one: PlaceOne,
    out: list[decisions.Decision],
) -> GangOutcome:
    """Place the gang all or nothing; append its decisions to ``out``.

    On success every placed member has its ``Bind`` (and ``Resize``) in ``out`` and ``nodes``
    counts them. On failure ``nodes`` is unchanged and each eligible member gets a ``Reject``
    (plus a ``MarkUnschedulable`` once the gang timed out and the reason changed).
    """
    ref = gang.ref
    now = ctx.now
    eligible: list[workflow.Task] = []
    skipped: list[workflow.TaskKey] = []
    for member in gang.members:
        if member.gated or queue.backing_off(member.key, now):
            skipped.append(member.key)
        else:
            eligible.append(member)
    bound = board.bound.get(ref.key, 0)
    needed = ref.min_count - bound
    if ref.min_count <= 0:
        reason = f"waiting for PodGroup {ref.key.split(':', 1)[-1]} to appear"
        _refuse(gang, eligible, reason, queue=queue, board=board, ctx=ctx, out=out)
        return GangOutcome(placed=0, blocks=False, skipped=tuple(skipped))
    if len(eligible) < needed:
        reason = (
            f"waiting for minCount pods of gang {ref.key}: {bound + len(eligible)} of "
            f"{ref.min_count} are ready to be placed"
        )
        _refuse(gang, eligible, reason, queue=queue, board=board, ctx=ctx, out=out)
        return GangOutcome(placed=0, blocks=False, skipped=tuple(skipped))
    trial = nodes.fork()
    trial_out: list[decisions.Decision] = []
    failures: dict[workflow.TaskKey, nodetable.Candidates | Refusal] = {}
    placed: list[workflow.Task] = []
    for member in eligible:
        failure = place_one(member, trial, trial_out)
        if failure is None:
            placed.append(member)
        else:
            failures[member.key] = failure
    if len(placed) >= needed:
        for decision in trial_out:
            if isinstance(decision, decisions.Bind):
                nodes.place(nodes.index[decision.node], nodes.vector(decision.request))
        out.extend(trial_out)
        for key, failure in failures.items():  # members beyond min_count that did not fit
            reason, code = failure if isinstance(failure, tuple) else trial.explain(failure)
            out.append(decisions.Reject(cycle_id=ctx.cycle_id, task=key, code=code, reason=reason))
        return GangOutcome(placed=len(placed), blocks=False, skipped=tuple(skipped))
    first = next(iter(failures.values()))
    detail, _code = first if isinstance(first, tuple) else trial.explain(first)
    reason = (
        f"gang {ref.key}: {bound + len(placed)} of {ref.min_count} pods have a place at once "
        f"(next pod: {detail})"
    )
    blocks = board.reserving(ref.key, now) and not _never_fits(eligible, trial, failures)
    if blocks:
        reason += "; reserving the room it needs"
    _refuse(gang, eligible, reason, queue=queue, board=board, ctx=ctx, out=out)
    return GangOutcome(placed=0, blocks=blocks, skipped=tuple(skipped))


def _refuse(
    gang: Gang,
    members: Sequence[workflow.Task],
    reason: str,
    *,
    queue: SchedulingQueue,
    board: GangBoard,
    ctx: context.CycleContext,
    out: list[decisions.Decision],
) -> None:
    timed_out = board.timed_out(gang.key, ctx.now)
    if timed_out:
        reason = f"{TIMEOUT_PREFIX} for {board.settings.timeout_s:g}s: {reason}"
    for member in members:
        out.append(
            decisions.Reject(
                cycle_id=ctx.cycle_id,
                task=member.key,
                code=decisions.RejectCode.UNSCHEDULABLE,
                reason=reason,
            )
        )
        if timed_out and queue.report_due(
            member.key, reason, ctx.now, ctx.settings.unschedulable_report_interval_s
        ):
            out.append(
                decisions.MarkUnschedulable(
                    cycle_id=ctx.cycle_id,
                    task=member.key,
                    pod=member.pod,
                    reason=reason,
                    at=ctx.now,
                )
            )
