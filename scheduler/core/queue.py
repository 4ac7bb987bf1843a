"""The scheduling queue: one persistent order of pending tasks, re-sorted stably every cycle.

CWS sorts its queue list in place with a stable sort every round, so ties keep the order of the
previous round and new tasks enter at the end in arrival order (cws-semantics 3.2). This queue
reproduces that: ``tasks()`` returns the persistent order, ``run_cycle`` ranks it with a stable
sort and returns the new order in ``CycleResult.order``, and :meth:`SchedulingQueue.apply`
stores that order for the next cycle. Sorting a fresh copy in arrival order every cycle would not
be equivalent after the first round.

Besides the order, each entry carries:

- a binding mark (kube-scheduler's assumed pods): a task the cycle decided to bind stays in
  the order, hidden from :meth:`SchedulingQueue.tasks`, until the shell reports the outcome:
  :meth:`SchedulingQueue.bind_succeeded` drops it, :meth:`SchedulingQueue.bind_failed` makes it
  schedulable again *at its old place* with its failure count raised, and
  :meth:`SchedulingQueue.bind_abandoned` (the bind was never sent, e.g. leadership was lost)
  makes it schedulable again without a penalty;
- a backoff (kube-scheduler's backoffQ, flattened): after a failed bind the task keeps its
  place in the order but is not placed before ``not_before`` (exponential, ``initial_backoff``
  doubling with every consecutive failure up to ``max_backoff``); time is always passed in,
  never read;
- the last unschedulable reason reported for it and when, so ``run_cycle`` only asks the shell
  to update the pod condition and emit an event when the reason changes, and at most once per
  ``CycleSettings.unschedulable_report_interval_s`` (:meth:`SchedulingQueue.report_due`); a
  change that came too soon is kept as unreported until it falls due
  (:meth:`SchedulingQueue.due_reports`), so the pod does not keep a stale reason when nothing
  makes the task fail again.

Tasks whose pod is deleted are removed at once (CWS defect D9).

For incremental scheduling (``scheduler.core.incremental``) the queue can keep a change journal
(:meth:`SchedulingQueue.track_changes`): the keys of entries added, replaced, removed, marked or
released from binding, or put into or out of backoff since the last :meth:`drain_changes`.
Each entry also carries its arrival serial, so a task removed and added again is told apart
from one updated in place.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from scheduler.core import decisions, workflow


@dataclass(slots=True)
class _Entry:
    task: workflow.Task
    failures: int = 0
    not_before: float = -math.inf
    reported: str | None = None
    reported_at: float = -math.inf
    unreported: str | None = None
    binding: bool = False
    serial: int = 0


class SchedulingQueue:
    """Pending tasks in their persistent order, with per-task backoff.

    Args:
        initial_backoff: Seconds of the first backoff after a failure.
        max_backoff: Cap of the exponential backoff in seconds.
    """

    def __init__(self, *, initial_backoff: float = 1.0, max_backoff: float = 10.0) -> None:
        if not 0 < initial_backoff <= max_backoff:
            raise ValueError("backoffs must satisfy 0 < initial_backoff <= max_backoff")
        self._entries: dict[workflow.TaskKey, _Entry] = {}
        self._initial_backoff = initial_backoff
        self._max_backoff = max_backoff
        self._tasks: tuple[workflow.Task, ...] | None = None
        self._binding = 0
        self._gang_members = 0
        self._serial = 0
        self._journal: dict[workflow.TaskKey, None] | None = None
        # The keys of the entries that hold an ``unreported`` reason.
        self._unreported: dict[workflow.TaskKey, None] = {}
        # A cycle's order stored as given (see ``apply``): the persistent order is
        # ``_order`` (tasks present since then) + ``_tail`` + the other tasks in dict order.
        self._order: tuple[workflow.TaskKey, ...] | None = None
        self._order_serial = 0
        self._tail: list[tuple[workflow.TaskKey, int]] = []
        # Every task being bound (and some stale pairs), in the persistent order.
        self._bound_order: list[tuple[workflow.TaskKey, int]] = []

    def __len__(self) -> int:
        """The number of tasks waiting to be placed (tasks being bound excluded)."""
        return len(self._entries) - self._binding

    def __contains__(self, key: object) -> bool:
        """True for a queued task, being bound or not."""
        return key in self._entries

    @property
    def gang_member_count(self) -> int:
        """The number of queued tasks (being bound or not) that belong to a gang."""
        return self._gang_members

    @property
    def binding_count(self) -> int:
        """The number of tasks whose bind outcome is awaited."""
        return self._binding

    def __iter__(self) -> Iterator[workflow.Task]:
        return iter(self.tasks())

    def add(self, task: workflow.Task) -> bool:
        """Append a new task at the end, or update a queued one in place (state kept).

        Returns:
            True if the task was new.
        """
        entry = self._entries.get(task.key)
        self._tasks = None
        self._touch(task.key)
        if entry is None:
            self._serial += 1
            self._entries[task.key] = _Entry(task=task, serial=self._serial)
            self._gang_members += task.gang is not None
            return True
        self._gang_members += (task.gang is not None) - (entry.task.gang is not None)
        entry.task = task
        return False

    def remove(self, key: workflow.TaskKey) -> workflow.Task | None:
        """Drop a task (bound, deleted or cancelled); returns it, or ``None`` if absent."""
        entry = self._entries.pop(key, None)
        if entry is None:
            return None
        self._unreported.pop(key, None)
        self._binding -= entry.binding
        self._gang_members -= entry.task.gang is not None
        self._tasks = None
        self._touch(key)
        return entry.task

    def get(self, key: workflow.TaskKey) -> workflow.Task | None:
        """Return the queued task with ``key``, if any."""
        entry = self._entries.get(key)
        return None if entry is None else entry.task

    def tasks(self) -> tuple[workflow.Task, ...]:
        """Every task waiting to be placed, in the persistent order.

        Backing-off and gated tasks are included (they are ranked); tasks being bound are not.
        """
        if self._tasks is None:
            self._materialize()
            self._tasks = tuple(e.task for e in self._waiting_entries())
        return self._tasks

    def reorder(self, keys: Iterable[workflow.TaskKey]) -> None:
        """Make ``keys`` the persistent order.

        Keys that are no longer queued are ignored; queued tasks missing from ``keys`` (added
        after the cycle started) keep their relative order at the end.
        """
        self._materialize()
        entries = self._entries
        get = entries.get
        ordered = {key: entry for key in keys if (entry := get(key)) is not None}
        if len(ordered) != len(entries):
            for key, entry in entries.items():
                if key not in ordered:
                    ordered[key] = entry
        self._entries = ordered
        self._bound_order = [(key, e.serial) for key, e in ordered.items() if e.binding]
        self._tasks = None

    def binding(self, key: workflow.TaskKey) -> bool:
        """True while the task's bind outcome is awaited."""
        entry = self._entries.get(key)
        return entry is not None and entry.binding

    def bind_succeeded(self, key: workflow.TaskKey) -> workflow.Task | None:
        """The task was bound: drop it (same as :meth:`remove`)."""
        return self.remove(key)

    def bind_failed(self, key: workflow.TaskKey, *, now: float) -> float:
        """The bind failed: the task becomes schedulable at its old place after a backoff.

        Consecutive failures double the backoff up to ``max_backoff``. Returns the time the
        task becomes eligible (``now`` when the task is not queued).
        """
        self._release(key)
        return self.backoff(key, now=now)

    def bind_abandoned(self, key: workflow.TaskKey) -> None:
        """The bind was never sent: the task is schedulable again, at its place, at once."""
        self._release(key)

    def _release(self, key: workflow.TaskKey) -> None:
        entry = self._entries.get(key)
        if entry is not None and entry.binding:
            entry.binding = False
            self._binding -= 1
            self._tasks = None
            self._touch(key)

    def backoff(self, key: workflow.TaskKey, *, now: float) -> float:
        """Put a task into backoff after a failure; returns the time it becomes eligible."""
        entry = self._entries.get(key)
        if entry is None:
            return now
        entry.failures += 1
        delay = min(self._max_backoff, self._initial_backoff * 2 ** (entry.failures - 1))
        entry.not_before = now + delay
        self._touch(key)
        return entry.not_before

    def clear_backoff(self, key: workflow.TaskKey) -> None:
        """Reset a task's failure count and make it eligible at once."""
        entry = self._entries.get(key)
        if entry is not None:
            entry.failures = 0
            entry.not_before = -math.inf
            self._touch(key)

    def backing_off(self, key: workflow.TaskKey, now: float) -> bool:
        """True while the task must not be placed."""
        entry = self._entries.get(key)
        return entry is not None and entry.not_before > now

    def _waiting_entries(self) -> Iterator[_Entry]:
        """The entries of the tasks waiting to be placed (not being bound), in stored order."""
        return (entry for entry in self._entries.values() if not entry.binding)

    def waiting_tasks(self) -> Iterator[workflow.Task]:
        """The tasks of :meth:`tasks` in no particular order, without laying out the order."""
        return (entry.task for entry in self._waiting_entries())

    def waiting_counts(self, now: float) -> tuple[int, int, int]:
        """Count the waiting tasks that are gated, backing off and reported unschedulable.

        Returns ``(gated, backing off, unschedulable)``; tasks being bound are left out, and a
        task may count in several. One pass over the entries in no particular order: unlike
        :meth:`tasks` it neither lays out the stored order nor builds a tuple, so a gauge
        refresh costs one walk of the queue.
        """
        gated = backoff = unschedulable = 0
        for entry in self._waiting_entries():
            if entry.task.gated:
                gated += 1
            if entry.not_before > now:
                backoff += 1
            if entry.reported is not None:
                unschedulable += 1
        return gated, backoff, unschedulable

    def reported_reason(self, key: workflow.TaskKey) -> str | None:
        """The last unschedulable reason the shell reported for this task."""
        entry = self._entries.get(key)
        return None if entry is None else entry.reported

    def report_due(self, key: workflow.TaskKey, reason: str, now: float, interval_s: float) -> bool:
        """Whether to report ``reason`` for the task at ``now``.

        True when it differs from the last reported reason and that report is at least
        ``interval_s`` old; the first report of a task is always due.
        """
        entry = self._entries.get(key)
        if entry is None or entry.reported is None:
            return True
        return entry.reported != reason and now - entry.reported_at >= interval_s

    def due_reports(self, now: float, interval_s: float) -> Iterator[tuple[workflow.Task, str]]:
        """The kept unreported reasons that fall due at ``now``, with their tasks.

        A cycle that found a task's reason changed too soon after the last report returns it
        in ``CycleResult.unreported``; :meth:`apply` keeps it until the task fails again with
        the reported reason, the new reason is reported, or the task leaves the queue. Tasks
        being bound are left out. One pass over the kept reasons, not over the queue.
        """
        for key in self._unreported:
            entry = self._entries[key]
            if not entry.binding and now - entry.reported_at >= interval_s:
                assert entry.unreported is not None
                yield entry.task, entry.unreported

    def apply(self, result: decisions.CycleResult) -> None:
        """Store a cycle's order, mark the tasks it bound as binding, remember reasons.

        The caller calls this right after ``run_cycle`` and reports each bind's outcome with
        :meth:`bind_succeeded`, :meth:`bind_failed` or :meth:`bind_abandoned`.

        ``result.order`` must hold every task the cycle saw (``tasks()`` when it started) and
        nothing may change the queue between the cycle and this call; then the order is stored
        as given, in O(binds), and laid out only when something reads the order.
        """
        self._store_order(result.order)
        recent: list[tuple[workflow.TaskKey, int]] = []
        for decision in result.decisions:
            if isinstance(decision, decisions.Bind):
                entry = self._entries.get(decision.task)
                if entry is not None and not entry.binding:
                    entry.binding = True
                    self._binding += 1
                    self._tasks = None
                    self._touch(decision.task)
                    recent.append((decision.task, entry.serial))
            elif isinstance(decision, decisions.MarkUnschedulable):
                entry = self._entries.get(decision.task)
                if entry is not None:
                    entry.reported, entry.reported_at = decision.reason, decision.at
                    self._forget_unreported(decision.task, entry)
            elif isinstance(decision, decisions.Reject):
                entry = self._entries.get(decision.task)
                if entry is not None and entry.reported == decision.reason:
                    # Failed again as reported: nothing to catch up.
                    self._forget_unreported(decision.task, entry)
        for key, reason in result.unreported:
            entry = self._entries.get(key)
            if entry is not None:
                entry.unreported = reason
                self._unreported[key] = None
        if recent:  # placed in the cycle's order, so ahead of the tasks already being bound
            self._bound_order[:0] = recent

    def _forget_unreported(self, key: workflow.TaskKey, entry: _Entry) -> None:
        if entry.unreported is not None:
            entry.unreported = None
            del self._unreported[key]

    # -- change journal (incremental scheduling) ---------------------------------------------

    def track_changes(self) -> None:
        """Start (or restart, empty) the change journal read by :meth:`drain_changes`."""
        self._journal = {}

    def drain_changes(self) -> list[workflow.TaskKey] | None:
        """Return the keys changed since the last call, oldest change first, and clear them.

        ``None`` when the journal is not tracked (call :meth:`track_changes` first).
        """
        journal = self._journal
        if journal is None:
            return None
        self._journal = {}
        return list(journal)

    def state(self, key: workflow.TaskKey) -> tuple[workflow.Task, int, bool] | None:
        """Return ``(task, arrival serial, binding)`` of a queued task, or ``None``."""
        entry = self._entries.get(key)
        return None if entry is None else (entry.task, entry.serial, entry.binding)

    def states(self) -> Iterator[tuple[workflow.Task, int, bool]]:
        """Every queued task in the persistent order, being bound or not, as :meth:`state`."""
        self._materialize()
        for entry in self._entries.values():
            yield entry.task, entry.serial, entry.binding

    def not_before(self, key: workflow.TaskKey) -> float:
        """The time a backing-off task becomes eligible (``-inf`` when it is not backing off)."""
        entry = self._entries.get(key)
        return -math.inf if entry is None else entry.not_before

    def _touch(self, key: workflow.TaskKey) -> None:
        journal = self._journal
        if journal is not None:
            journal.pop(key, None)
            journal[key] = None

    # -- the persistent order, stored lazily -------------------------------------------------

    def _store_order(self, keys: tuple[workflow.TaskKey, ...]) -> None:
        """``reorder(keys)`` for a cycle's full order, in O(tasks being bound).

        The tasks missing from ``keys`` are the ones being bound when the cycle started; they
        follow in their persistent order, which ``_bound_order`` keeps.
        """
        entries = self._entries
        tail: list[tuple[workflow.TaskKey, int]] = []
        seen: set[workflow.TaskKey] = set()
        for key, serial in self._bound_order:
            entry = entries.get(key)
            if entry is not None and entry.serial == serial and entry.binding and key not in seen:
                seen.add(key)
                tail.append((key, serial))
        self._order, self._order_serial, self._tail = keys, self._serial, tail
        self._bound_order = list(tail)
        self._tasks = None

    def _materialize(self) -> None:
        """Lay the stored order out in ``_entries`` (O(tasks)); a no-op when it is."""
        order = self._order
        if order is None:
            return
        self._order = None
        entries = self._entries
        get = entries.get
        limit = self._order_serial
        ordered = {
            key: entry for key in order if (entry := get(key)) is not None and entry.serial <= limit
        }
        for key, serial in self._tail:
            entry = get(key)
            if entry is not None and entry.serial == serial and key not in ordered:
                ordered[key] = entry
        if len(ordered) != len(entries):
            for key, entry in entries.items():
                if key not in ordered:
                    ordered[key] = entry
        self._entries = ordered
        self._tail = []
