"""Incremental scheduling: cycles whose work follows what changed, not the size of the queue.

:class:`IncrementalScheduler` gives the same binds, resizes and queue order as
:func:`scheduler.core.cycle.run_cycle` (a full re-rank and a walk over the whole queue), but
keeps state between cycles:

- **The ranked order** as a sorted list of ``(sort key, stamp, task key)``. The queue's
  persistent order is the previous cycle's ranked order (plus tasks being bound, moved to its
  end, plus new tasks), and a ranking is a stable sort over it; so the order is exactly the
  sort by ``(key, stamp)`` when each task's stamp says where it stood. Unchanged tasks keep
  their stamps. A task whose key changed stood, among the tasks of its new key, before all of
  them if its old key was smaller and after all of them if larger: it gets a stamp below
  (above) every stamp given so far, in its old order. Tasks that come back from binding and
  new tasks follow, in queue order, above everything. Keys are recomputed only for new and
  replaced tasks and for the tasks of a run whose DAG changed in a way the ranking declares
  (:class:`~scheduler.core.interfaces.KeyDependency`).
- **Queueing hints** (kube-scheduler's): a task that fitted on no node is parked under its
  request class (constraints, request). The class is re-tried only when a node now has more
  room than the previous cycle left (rows where the free room grew and the class fits) or the
  node set changed, and then in rank order only until one of its members fits nowhere again.
  Free room only shrinks during a cycle, so a parked task that is not re-tried would have
  failed anyway: binds are identical. A new sort key does not unpark a task. Request classes
  are interned to small integers. Parked tasks get no new ``Reject``
  or reason until they are tried again (kube-scheduler's unschedulable queue does the same).
  Tasks whose memory the planner may plan are never parked (their plan can change).
- **The node table** (:meth:`~scheduler.core.nodetable.WorkingNodes.successor`): only rows
  whose requested resources changed are recomputed; static filter results are kept while the
  nodes' feasibility fields do not change.
- **Gated and backing-off tasks** leave the walk until their task is replaced or their
  backoff ends (a heap by time).

A cycle costs O(changed · log n) for the order plus the placement of the tasks it tries,
plus one O(n) list comprehension for ``CycleResult.order`` and O(N) identity checks over the
nodes; re-keying a run costs O(tasks of the run). Rankings that are not
:class:`~scheduler.core.interfaces.IncrementalRanking` (``random``) run the full
:func:`~scheduler.core.cycle.run_cycle`. A cycle that raises leaves the state reset, so the
next one starts cold.
"""

from __future__ import annotations

import bisect
import heapq
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from scheduler.core import (
    cluster,
    constraints,
    context,
    cycle,
    decisions,
    interfaces,
    nodetable,
    workflow,
)
from scheduler.core.queue import SchedulingQueue

SortKey = tuple[int | float, ...]
_Slot = tuple[SortKey, int, workflow.TaskKey]
_Request = tuple[constraints.Constraints, nodetable.Vector, nodetable.Vector | None]
_ClassKey = int  # a request class, interned: see IncrementalScheduler._class_of
_RunPrint = tuple[int, int, int] | None

_RANKED, _TAIL, _NEW = 0, 1, 2
BATCH = 32
"""Above this many slots, lists are filtered or re-sorted in one pass instead of per slot."""
CLASS_SLACK = 1024
"""Interned request classes kept beyond four per parked class before they are compacted."""


@dataclass(slots=True)
class _Item:
    task: workflow.Task
    serial: int
    binding: bool
    arrival: int
    place: int = _NEW
    key: SortKey = ()
    stamp: int = 0
    tail: tuple[int, int] = (0, 0)
    active: bool = False
    parked: _ClassKey | None = None
    stale: bool = True
    next_key: SortKey = ()

    @property
    def slot(self) -> _Slot:
        return (self.key, self.stamp, self.task.key)


class IncrementalScheduler:
    """Runs scheduling cycles for one queue, keeping the ranked order and hints in between.

    ``run_cycle`` takes the arguments of :func:`scheduler.core.cycle.run_cycle` and returns a
    result with the same ``order``, ``Bind`` and ``Resize`` decisions; ``Reject`` and
    ``MarkUnschedulable`` come only for the tasks tried this cycle, and ``gated`` /
    ``backing_off`` list the tasks set aside this cycle. The caller applies the result to the
    queue (``queue.apply``) as before.
    """

    def __init__(self) -> None:
        self._queue: SchedulingQueue | None = None
        self._ranking: object | None = None
        self._assignment: object | None = None
        self.reset()

    def reset(self) -> None:
        """Forget everything; the next cycle starts cold."""
        self._queue = None
        self._items: dict[workflow.TaskKey, _Item] = {}
        self._ranked: list[_Slot] = []
        self._active: list[_Slot] = []
        self._runs: dict[workflow.RunId, set[workflow.TaskKey]] = defaultdict(set)
        self._prints: dict[workflow.RunId, _RunPrint] = {}
        self._parked: dict[_ClassKey, list[_Slot]] = {}
        self._class_ids: dict[_Request, _ClassKey] = {}
        self._classes: list[_Request] = []
        self._woken: list[_ClassKey] = []
        self._batch: list[_Slot] | None = None
        self._waiting: list[tuple[float, int, workflow.TaskKey]] = []
        self._extended: Counter[str] = Counter()
        self._nodes: nodetable.WorkingNodes | None = None
        self._dirty: set[workflow.TaskKey] = set()
        self._low = -1
        self._high = 0
        self._cycles = 0
        self.last_tried = 0

    # -- the cycle ---------------------------------------------------------------------------

    def run_cycle(
        self,
        *,
        snapshot: cluster.ClusterSnapshot,
        queue: SchedulingQueue,
        dags: Mapping[workflow.RunId, workflow.WorkflowDag],
        policies: interfaces.Policies,
        ctx: context.CycleContext,
    ) -> decisions.CycleResult:
        """Run one cycle (see the class docstring); arguments as ``cycle.run_cycle``."""
        ranking = policies.ranking
        if not isinstance(ranking, interfaces.IncrementalRanking):
            self.reset()
            return cycle.run_cycle(
                snapshot=snapshot, queue=queue, dags=dags, policies=policies, ctx=ctx
            )
        try:
            return self._run(snapshot, queue, dags, policies, ranking, ctx)
        except BaseException:
            self.reset()
            raise

    def _run(
        self,
        snapshot: cluster.ClusterSnapshot,
        queue: SchedulingQueue,
        dags: Mapping[workflow.RunId, workflow.WorkflowDag],
        policies: interfaces.Policies,
        ranking: interfaces.IncrementalRanking,
        ctx: context.CycleContext,
    ) -> decisions.CycleResult:
        view = workflow.WorkflowView(dags)
        cold = (
            queue is not self._queue
            or ranking is not self._ranking
            or policies.assignment is not self._assignment
        )
        if not cold:
            try:
                self._absorb(queue)
            except _JournalLostError:
                cold = True
        if cold:
            self.reset()
            self._queue, self._ranking, self._assignment = queue, ranking, policies.assignment
            queue.track_changes()
            self._load_ranked(queue, ranking, view, dags)
        self._cycles += 1
        self._rerank(ranking, view, dags)
        self._wake_due(queue, ctx.now)
        self._refresh_nodes(snapshot)
        return self._walk(queue, policies, ctx)

    # -- keeping the order -------------------------------------------------------------------

    def _load_ranked(
        self,
        queue: SchedulingQueue,
        ranking: interfaces.IncrementalRanking,
        view: workflow.WorkflowView,
        dags: Mapping[workflow.RunId, workflow.WorkflowDag],
    ) -> None:
        """Cold start in one pass: every queued task, in the queue's persistent order.

        Every task not being bound is keyed once and stamped in queue order (the stamps
        ``_rerank`` gives new tasks), the order is one sort, and the walk list is a copy of
        it (nothing is parked yet); tasks being bound go to the tail in queue order, like
        ``queue.reorder`` puts them. No task
        is left dirty and every run's fingerprint is recorded, so the ``_rerank`` that follows
        only does per-run checks.
        """
        items, runs, extended = self._items, self._runs, self._extended
        sort_key = ranking.sort_key
        slots: list[_Slot] = []
        stamp = self._high
        for position, (task, serial, binding) in enumerate(queue.states()):
            key = task.key
            item = _Item(task=task, serial=serial, binding=binding, arrival=position)
            items[key] = item
            runs[task.run].add(key)
            if task.request.extended:
                extended.update(name for name, _ in task.request.extended)
            if binding:
                item.place, item.tail = _TAIL, (0, position)
                continue
            item.place, item.stale, item.active, item.stamp = _RANKED, False, True, stamp
            item.key = item.next_key = sort_key(task, view)
            stamp += 1
            slots.append((item.key, item.stamp, key))
        self._high = stamp
        depends = ranking.key_dependencies
        for run in runs:
            self._prints[run] = _fingerprint(dags.get(run), depends)
        slots.sort()
        self._ranked = slots
        self._active = list(slots)
        queue.drain_changes()

    def _add_item(self, task: workflow.Task, serial: int, binding: bool) -> _Item:
        item = _Item(task=task, serial=serial, binding=binding, arrival=serial)
        self._items[task.key] = item
        self._runs[task.run].add(task.key)
        if task.request.extended:
            self._extended.update(name for name, _ in task.request.extended)
        self._dirty.add(task.key)
        return item

    def _drop_item(self, item: _Item) -> None:
        key = item.task.key
        del self._items[key]
        run = self._runs[item.task.run]
        run.discard(key)
        if not run:
            del self._runs[item.task.run]
            self._prints.pop(item.task.run, None)
        self._extended.subtract(name for name, _ in item.task.request.extended)
        if item.place == _RANKED:
            _remove(self._ranked, item.slot)
        self._deactivate(item)

    def _absorb(self, queue: SchedulingQueue) -> None:
        """Apply the queue's journal: new, replaced, removed, binding and released tasks."""
        changes = queue.drain_changes()
        if changes is None:  # someone restarted the journal: start cold
            raise _JournalLostError
        inactive: list[_Item] = []
        for key in changes:
            state = queue.state(key)
            item = self._items.get(key)
            if state is None:
                if item is not None:
                    self._drop_item(item)
                continue
            task, serial, binding = state
            if item is not None and item.serial != serial:
                self._drop_item(item)
                item = None
            if item is None:
                self._add_item(task, serial, binding)
                continue
            self._dirty.add(key)
            if task is not item.task:
                self._extended.subtract(name for name, _ in item.task.request.extended)
                self._extended.update(name for name, _ in task.request.extended)
                item.task = task
                item.stale = True
            item.binding = binding
            if item.parked is not None:
                self._unpark(item)
            if item.active:  # re-activated when ranked if it may be placed
                inactive.append(item)
        if len(inactive) > BATCH:
            gone = {item.task.key for item in inactive}
            self._active = [slot for slot in self._active if slot[2] not in gone]
            for item in inactive:
                item.active = False
        else:
            for item in inactive:
                self._deactivate(item)

    def _rerank(
        self,
        ranking: interfaces.IncrementalRanking,
        view: workflow.WorkflowView,
        dags: Mapping[workflow.RunId, workflow.WorkflowDag],
    ) -> None:
        items, dirty = self._items, self._dirty
        depends = ranking.key_dependencies
        for run, keys in self._runs.items():
            fingerprint = _fingerprint(dags.get(run), depends)
            if self._prints.get(run, _UNSEEN) != fingerprint:
                self._prints[run] = fingerprint
                for key in keys:
                    items[key].stale = True
                dirty.update(keys)
        retain = getattr(ranking, "retain_runs", None)
        if retain is not None:
            retain(self._runs.keys())
        touched = [items[key] for key in dirty if key in items]
        dirty.clear()
        self._batch = []
        # Tasks still being bound leave the order for its tail (queue.reorder does the same).
        movers = sorted((i for i in touched if i.binding and i.place == _RANKED), key=_old_position)
        self._withdraw(movers)
        for n, item in enumerate(movers):
            item.place, item.tail = _TAIL, (-self._cycles, n)
        before: list[_Item] = []
        after: list[_Item] = []
        returning: list[_Item] = []
        fresh: list[_Item] = []
        sort_key = ranking.sort_key
        for item in touched:
            if item.binding:
                continue
            if item.place == _RANKED:
                if item.stale:
                    item.stale = False
                    item.next_key = sort_key(item.task, view)
                    if item.next_key != item.key:
                        # Its old place among the tasks of its new key: before all of them
                        # if its old key was smaller, after all of them if larger.
                        (after if item.next_key < item.key else before).append(item)
                        continue
                if item.parked is None:
                    self._activate(item)
            elif item.place == _TAIL:
                returning.append(item)
            else:
                fresh.append(item)
        for item in returning + fresh:
            item.stale = False
            item.next_key = sort_key(item.task, view)
        rekeyed = before + after
        parked = [(item, item.parked) for item in rekeyed if item.parked is not None]
        self._withdraw(rekeyed)
        before.sort(key=_old_position)
        after.sort(key=_old_position)
        returning.sort(key=lambda i: i.tail)
        fresh.sort(key=lambda i: i.arrival)
        for item in reversed(before):
            item.stamp = self._low
            self._low -= 1
        for item in after + returning + fresh:
            item.stamp = self._high
            self._high += 1
        moved = before + after + returning + fresh
        for item in moved:
            item.key = item.next_key
            item.place = _RANKED
        _insert_all(self._ranked, [i.slot for i in moved])
        # A new key does not make a task fit: parked tasks stay parked, in their new place.
        by_class: dict[_ClassKey, list[_Item]] = defaultdict(list)
        for item, klass in parked:
            if klass is not None:
                by_class[klass].append(item)
                item.parked = klass
        for klass, members in by_class.items():
            _insert_all(self._parked.setdefault(klass, []), [i.slot for i in members])
        for item in moved:
            if item.parked is None:
                self._activate(item)
        batch, self._batch = self._batch, None
        _insert_all(self._active, batch)

    # -- hints -------------------------------------------------------------------------------

    def _withdraw(self, leaving: list[_Item]) -> None:
        """Take ranked items out of the order (and out of the walk and their class)."""
        if len(leaving) <= BATCH:
            for item in leaving:
                _remove(self._ranked, item.slot)
                self._deactivate(item)
            return
        gone = {item.task.key for item in leaving}
        self._ranked = [slot for slot in self._ranked if slot[2] not in gone]
        if any(item.active for item in leaving):
            self._active = [slot for slot in self._active if slot[2] not in gone]
        classes = {item.parked for item in leaving if item.parked is not None}
        for klass in classes:
            members = [slot for slot in self._parked[klass] if slot[2] not in gone]
            if members:
                self._parked[klass] = members
            else:
                del self._parked[klass]
        for item in leaving:
            item.active = False
            item.parked = None

    def _activate(self, item: _Item) -> None:
        if item.active or item.place != _RANKED or item.binding:
            return
        if item.parked is not None:
            self._unpark(item)
        item.active = True
        if self._batch is not None:
            self._batch.append(item.slot)
        else:
            bisect.insort(self._active, item.slot)

    def _deactivate(self, item: _Item) -> None:
        if item.parked is not None:
            self._unpark(item)
        if item.active:
            item.active = False
            _remove(self._active, item.slot)

    def _class_of(self, request: _Request) -> _ClassKey:
        """Intern a request class, so the hot path hashes small integers."""
        klass = self._class_ids.get(request)
        if klass is None:
            klass = self._class_ids[request] = len(self._classes)
            self._classes.append(request)
        return klass

    def _park(self, item: _Item, klass: _ClassKey) -> None:
        item.parked = klass
        members = self._parked.get(klass)
        if members is None:
            self._parked[klass] = [item.slot]
        else:
            bisect.insort(members, item.slot)

    def _unpark(self, item: _Item) -> None:
        assert item.parked is not None
        members = self._parked.get(item.parked)
        if members is not None:
            _remove(members, item.slot)
            if not members:
                del self._parked[item.parked]
        item.parked = None

    def _wake_due(self, queue: SchedulingQueue, now: float) -> None:
        waiting = self._waiting
        while waiting and waiting[0][0] <= now:
            _, _, key = heapq.heappop(waiting)
            item = self._items.get(key)
            if item is not None and queue.not_before(key) <= now:
                self._activate(item)

    def _compact_classes(self) -> None:
        """Forget interned request classes no task is parked under (bounded memory)."""
        if len(self._classes) <= 4 * len(self._parked) + CLASS_SLACK:
            return
        renumber = {old: new for new, old in enumerate(self._parked)}
        self._classes = [self._classes[old] for old in self._parked]
        self._class_ids = {request: klass for klass, request in enumerate(self._classes)}
        self._parked = {renumber[old]: members for old, members in self._parked.items()}
        for members in self._parked.values():
            for slot in members:
                item = self._items[slot[2]]
                assert item.parked is not None
                item.parked = renumber[item.parked]

    def _refresh_nodes(self, snapshot: cluster.ClusterSnapshot) -> None:
        """Carry the node table over and list the parked classes that may fit now."""
        self._compact_classes()
        extra = [name for name, count in self._extended.items() if count > 0]
        previous = self._nodes
        if previous is None:
            self._nodes, grown = nodetable.WorkingNodes(snapshot, extra_resources=extra), None
        else:
            self._nodes, grown = previous.successor(snapshot, extra_resources=extra)
        nodes = self._nodes
        if grown is None and (previous is None or previous.columns != nodes.columns):
            # Parked classes hold request rows over the old columns: try them all afresh.
            self._batch = []
            for members in list(self._parked.values()):
                for slot in list(members):
                    self._activate(self._items[slot[2]])
            batch, self._batch = self._batch, None
            _insert_all(self._active, batch)
        self._woken = [
            klass
            for klass in self._parked
            if grown is None or nodes.fits_any(*self._classes[klass], grown)
        ]

    def _keep_woken(self, failed: set[_ClassKey]) -> None:
        """The walk stopped at ``max_binds``: woken classes it did not settle stay awake.

        Their members were not all tried against the room that woke them, and that room
        will not show as grown next cycle; so they leave their class for the walk.
        """
        self._batch = []
        for klass in self._woken:
            if klass in failed:
                continue
            for slot in list(self._parked.get(klass, ())):
                self._activate(self._items[slot[2]])
        batch, self._batch = self._batch, None
        _insert_all(self._active, batch)

    # -- placement ---------------------------------------------------------------------------

    def _stream(self, failed: set[_ClassKey]) -> Iterator[_Slot]:
        """The tasks to try, in ranked order: the active ones and the woken classes' members.

        A woken class is walked in rank order only until one of its members fits nowhere:
        free room only shrinks during a cycle, so the later members would not fit either.
        """
        if not self._woken:
            return iter(self._active)

        def members(klass: _ClassKey) -> Iterator[_Slot]:
            for slot in list(self._parked[klass]):
                if klass in failed:
                    return
                yield slot

        return heapq.merge(self._active, *(members(klass) for klass in self._woken))

    def _walk(
        self, queue: SchedulingQueue, policies: interfaces.Policies, ctx: context.CycleContext
    ) -> decisions.CycleResult:
        nodes = self._nodes
        assert nodes is not None
        items = self._items
        out: list[decisions.Decision] = []
        unplaced: list[tuple[workflow.Task, nodetable.Candidates | cycle._Refusal]] = []
        gated: list[workflow.TaskKey] = []
        backing_off: list[workflow.TaskKey] = []
        leave: list[_Item] = []
        park: list[tuple[_Item, _ClassKey]] = []
        retry: list[_Item] = []
        failed: set[_ClassKey] = set()
        fit_classes: dict[int, _ClassKey] = {}
        max_binds = ctx.settings.max_binds
        planner = policies.memory_planner
        bound = tried = 0
        stopped = False
        for slot in self._stream(failed):
            item = items[slot[2]]
            task = item.task
            if task.gated:
                gated.append(task.key)
                leave.append(item)
                continue
            if queue.backing_off(task.key, ctx.now):
                backing_off.append(task.key)
                leave.append(item)
                heapq.heappush(self._waiting, (queue.not_before(task.key), item.serial, task.key))
                continue
            if max_binds is not None and bound >= max_binds:
                stopped = True
                break
            tried += 1
            failure = cycle._place(task, nodes=nodes, policies=policies, ctx=ctx, out=out)
            if failure is None:
                bound += 1
                if item.parked is not None:
                    retry.append(item)  # leaves its class; active like any placed task
                continue
            unplaced.append((task, failure))
            if isinstance(failure, nodetable.Candidates) and _parkable(task, planner):
                klass = fit_classes.get(failure.fit_id)
                if klass is None:
                    klass = self._class_of((task.constraints, failure.vector, failure.original))
                    fit_classes[failure.fit_id] = klass
                failed.add(klass)
                if item.parked is None:
                    park.append((item, klass))
                elif item.parked != klass:
                    retry.append(item)
            elif item.parked is not None:
                retry.append(item)
        self.last_tried = tried
        for item in leave:
            self._deactivate(item)
        if len(park) > BATCH:
            gone = {item.task.key for item, _ in park}
            self._active = [slot for slot in self._active if slot[2] not in gone]
            for item, _ in park:
                item.active = False
        else:
            for item, _ in park:
                self._deactivate(item)
        for item, klass in park:
            self._park(item, klass)
        for item in retry:
            self._unpark(item)
            if not item.binding:
                self._activate(item)
        if stopped:
            self._keep_woken(failed)
        reports, unreported = cycle.unplaced_decisions(unplaced, nodes, queue, ctx, out)
        out.extend(reports)
        return decisions.CycleResult(
            cycle_id=ctx.cycle_id,
            order=tuple([slot[2] for slot in self._ranked]),
            decisions=tuple(out),
            gated=tuple(gated),
            backing_off=tuple(backing_off),
            unreported=unreported,
        )


class _JournalLostError(Exception):
    """The queue's journal was restarted by someone else; the state must be rebuilt."""


_UNSEEN: _RunPrint = (-1, -1, -1)


def _fingerprint(dag: workflow.WorkflowDag | None, depends: interfaces.KeyDependency) -> _RunPrint:
    if dag is None:
        return None
    structure = dag.version if interfaces.KeyDependency.DAG_STRUCTURE in depends else 0
    statistics = dag.stats_version if interfaces.KeyDependency.DAG_STATISTICS in depends else 0
    return (id(dag), structure, statistics)


def _old_position(item: _Item) -> tuple[SortKey, int]:
    return (item.key, item.stamp)


def _parkable(task: workflow.Task, planner: interfaces.MemoryPlanner | None) -> bool:
    """True unless the planner may give this task a different request next cycle."""
    return (
        planner is None
        or task.attempt > 0
        or task.request.memory_bytes <= 0
        or task.resizable_memory_bytes <= 0
    )


def _remove(slots: list[_Slot], slot: _Slot) -> None:
    index = bisect.bisect_left(slots, slot)
    if index < len(slots) and slots[index] == slot:
        del slots[index]
    else:  # pragma: no cover - an invariant broke; fail loudly rather than mis-order
        raise AssertionError(f"slot of {slot[2]} missing from the order")


def _insert_all(slots: list[_Slot], new: list[_Slot]) -> None:
    if len(new) > BATCH:
        slots.extend(new)
        slots.sort()
    else:
        for slot in new:
            bisect.insort(slots, slot)


__all__ = ["IncrementalScheduler"]
