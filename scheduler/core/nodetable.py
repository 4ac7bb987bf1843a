"""The per-cycle working copy of node availability, vectorised with numpy.

``run_cycle`` builds one :class:`WorkingNodes` from the snapshot, then walks the ranked tasks:
for each it asks :meth:`WorkingNodes.candidates` for the feasible nodes, lets the assignment
policy pick one, re-checks it and calls :meth:`WorkingNodes.place`, which subtracts the planned
request from the working copy (so later, lower-priority tasks backfill what is left, as in CWS).

Cost model (N nodes, R resource columns, T tasks):

- node arrays are built once per cycle: O(N·R);
- static filters (readiness, cordon, taints, selector, affinity) are evaluated once per distinct
  :class:`~scheduler.core.constraints.Constraints` value: O(N) each; most tasks share one;
- the fit mask of a (constraints, request) class is cached and refreshed incrementally: every
  placement appends the node index to a change log, and a cached mask only re-checks the nodes
  changed since it was computed (full O(N·R) recompute when many changed). A task therefore
  costs O(1) amortised plus what its assignment policy spends (O(N) vector ops for scoring);
- a failed class is remembered with the change-log position, so the thousands of tasks that fit
  nowhere once the cluster is full cost a dictionary lookup each.

Arrays handed to policies are read-only views; only :meth:`WorkingNodes.place` mutates.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from scheduler.core import cluster, constraints, decisions, feasibility, resources, workflow

BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
Vector = tuple[int, ...]

_CORE_COLUMNS = (resources.CPU, resources.MEMORY, resources.PODS)
_NO_PENALTY: FloatArray = np.zeros(0)
_T = TypeVar("_T", bound=np.generic)


_ZERO = resources.Resources()


def _same_feasibility(new: cluster.NodeInfo, old: cluster.NodeInfo) -> bool:
    """True when two versions of a node agree on everything but usage."""
    return (
        new.name == old.name
        and new.allocatable == old.allocatable
        and new.ready == old.ready
        and new.unschedulable == old.unschedulable
        and new.taints == old.taints
        and new.labels == old.labels
    )


def _read_only(array: npt.NDArray[_T]) -> npt.NDArray[_T]:
    view = array.view()
    view.flags.writeable = False
    return view


@dataclass(slots=True)
class _StaticClass:
    mask: BoolArray
    counts: dict[str, int]
    penalty: FloatArray | None = None


@dataclass(slots=True)
class _FitEntry:
    constraints: constraints.Constraints
    vector: Vector
    original: Vector | None
    mask: BoolArray
    count: int
    version: int
    reject: tuple[int, str, decisions.RejectCode] | None = None


class Candidates:
    """The feasible nodes for one task at one point of the cycle.

    Attributes:
        task: The task being placed.
        request: Its planned request (what will be reserved).
        vector: ``request`` as a row of ``WorkingNodes.columns``.
        nodes: The working node table (read access only).
    """

    __slots__ = ("_entry", "nodes", "request", "task", "vector")

    def __init__(
        self,
        *,
        task: workflow.Task,
        request: resources.Resources,
        nodes: WorkingNodes,
        entry: _FitEntry,
    ) -> None:
        self.task = task
        self.request = request
        self.vector = entry.vector
        self.nodes = nodes
        self._entry = entry

    @property
    def fit_id(self) -> int:
        """Equal for candidates of one request class within one table (and only for them)."""
        return id(self._entry)

    @property
    def original(self) -> Vector | None:
        """The user's request as a row when it differs from the planned one, else ``None``."""
        return self._entry.original

    def mask(self) -> BoolArray:
        """Boolean array over node indices: True where the task fits now (read-only)."""
        return _read_only(self._entry.mask)

    def any(self) -> bool:
        """True when at least one node is feasible."""
        return self._entry.count > 0

    def count(self) -> int:
        """Number of feasible nodes."""
        return self._entry.count

    def is_feasible(self, index: int) -> bool:
        """True when node ``index`` is feasible."""
        return bool(self._entry.mask[index])

    def indices(self) -> npt.NDArray[np.intp]:
        """Indices of the feasible nodes, ascending (= by node name)."""
        return np.flatnonzero(self._entry.mask)

    def prefer_no_schedule(self) -> FloatArray | None:
        """Per node, untolerated PreferNoSchedule taints (a soft penalty); ``None`` if none."""
        return self.nodes.prefer_no_schedule(self.task.constraints)


class WorkingNodes:
    """Node availability for one cycle, as numpy arrays indexed by node position.

    Nodes are in snapshot order (sorted by name), so ascending index means ascending name and
    ``np.argmax`` ties resolve to the alphabetically first node.

    Args:
        snapshot: The cycle's frozen cluster view.
        extra_resources: Extended resource names requested by pending tasks, so that requests
            for resources no node offers have a column (and fail to fit).
    """

    def __init__(self, snapshot: cluster.ClusterSnapshot, *, extra_resources: Iterable[str] = ()):
        self.snapshot = snapshot
        self.nodes = snapshot.nodes
        self.names: tuple[str, ...] = tuple(node.name for node in self.nodes)
        self.index: dict[str, int] = {name: i for i, name in enumerate(self.names)}
        extended = set(extra_resources)
        for node in self.nodes:
            extended.update(name for name, _ in node.allocatable.extended)
        self.columns: tuple[str, ...] = _CORE_COLUMNS + tuple(sorted(extended))
        self._column = {name: j for j, name in enumerate(self.columns)}
        rows_alloc = [self._row(node.allocatable) for node in self.nodes]
        rows_used = [self._row(snapshot.requested_on(node.name)) for node in self.nodes]
        shape = (len(self.nodes), len(self.columns))
        self._alloc: IntArray = np.array(rows_alloc, dtype=np.int64).reshape(shape)
        self._free: IntArray = np.asfortranarray(
            self._alloc - np.array(rows_used, dtype=np.int64).reshape(shape)
        )
        self._base_free: IntArray = self._free.copy()
        self._placed: IntArray = np.zeros(shape, dtype=np.int64)
        self._alloc_rows = [list(row) for row in rows_alloc]
        self._free_rows: list[list[int]] = self._free.tolist()
        usage = np.full((len(self.nodes), 2), np.nan)
        for i, node in enumerate(self.nodes):
            if node.usage is not None:
                usage[i] = (node.usage.cpu_millis, node.usage.memory_bytes)
        self._usage: FloatArray = usage
        self._alloc_float: tuple[FloatArray, BoolArray] | None = None
        self._changes: list[int] = []
        self._vectors: dict[resources.Resources, Vector] = {}
        self._nonzero: dict[Vector, tuple[tuple[int, int], ...]] = {}
        self._static: dict[constraints.Constraints, _StaticClass] = {}
        self._fits: dict[tuple[constraints.Constraints, Vector, Vector | None], _FitEntry] = {}

    def fork(self) -> WorkingNodes:
        """An independent copy: placements on it leave this table as it is (gang trials).

        The snapshot, its nodes and the shared sentinels are not copied.
        """
        memo: dict[int, object] = {id(obj): obj for obj in (self.snapshot, self.nodes, _NO_PENALTY)}
        return copy.deepcopy(self, memo)

    # -- read access for policies ------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.names)

    def column(self, name: str) -> int:
        """Return the column index of a resource (``cpu`` is 0, ``memory`` 1, ``pods`` 2)."""
        return self._column[name]

    @property
    def alloc(self) -> IntArray:
        """Allocatable per node and column (read-only)."""
        return _read_only(self._alloc)

    @property
    def free(self) -> IntArray:
        """Working free resources per node and column, placements of this cycle subtracted."""
        return _read_only(self._free)

    @property
    def placed(self) -> IntArray:
        """Requests placed on each node during this cycle (read-only)."""
        return _read_only(self._placed)

    @property
    def usage(self) -> FloatArray:
        """Measured (cpu millicores, memory bytes) per node; NaN rows where unknown."""
        return _read_only(self._usage)

    @property
    def usage_known(self) -> BoolArray:
        """True for nodes with metrics-server usage."""
        known: BoolArray = ~np.isnan(self._usage[:, 0])
        return known

    def free_fractions_after(self, vector: Vector) -> FloatArray:
        """Per node, the (cpu, memory) fraction of allocatable left after placing ``vector``.

        Computed for every node (mask with the candidates); a node with zero allocatable of a
        resource counts as fully free for it (1.0). Used by the scoring policies.
        """
        if self._alloc_float is None:
            alloc = self._alloc[:, :2].astype(np.float64)
            self._alloc_float = (alloc, alloc > 0)
        alloc, positive = self._alloc_float
        left = self._free[:, :2] - np.asarray(vector[:2], dtype=np.int64)
        # A true division, like CWS's ``fair`` (multiplying by 1/alloc can flip near-ties).
        fractions: FloatArray = np.ones_like(alloc)
        np.divide(left, alloc, out=fractions, where=positive)
        return fractions

    def prefer_no_schedule(self, pod: constraints.Constraints) -> FloatArray | None:
        """Per node, untolerated PreferNoSchedule taints for pods with these constraints.

        Returns ``None`` when no node has such a taint (the common case), so callers can skip
        the penalty entirely.
        """
        static = self._static_class(pod)
        if static.penalty is None:
            penalty = np.array(
                [feasibility.prefer_no_schedule_count(node, pod) for node in self.nodes],
                dtype=np.float64,
            )
            static.penalty = penalty if penalty.any() else _NO_PENALTY
        return None if static.penalty is _NO_PENALTY else _read_only(static.penalty)

    # -- the placement walk ------------------------------------------------------------------

    def vector(self, request: resources.Resources) -> Vector:
        """Return ``request`` as a row over ``columns``.

        Raises:
            KeyError: If it asks for an extended resource without a column (pass it in
                ``extra_resources``).
        """
        vec = self._vectors.get(request)
        if vec is None:
            vec = tuple(self._row(request, strict=True))
            self._vectors[request] = vec
            self._nonzero[vec] = tuple((j, a) for j, a in enumerate(vec) if a > 0)
        return vec

    def candidates(
        self,
        task: workflow.Task,
        planned: resources.Resources,
        *,
        original: resources.Resources | None = None,
    ) -> Candidates:
        """Return the nodes where ``task`` fits now with its ``planned`` request.

        Args:
            task: The task.
            planned: The request to reserve (the planned memory may be below the user's).
            original: The user's request when it differs from ``planned``; nodes whose
                allocatable cannot hold it are excluded (CWS rule, keeps retries placeable).
        """
        vec = self.vector(planned)
        orig = None if original is None or original == planned else self.vector(original)
        entry = self._fit_entry(task.constraints, vec, orig)
        return Candidates(task=task, request=planned, nodes=self, entry=entry)

    def row_fits(self, index: int, vector: Vector, original: Vector | None = None) -> bool:
        """Scalar re-check that node ``index`` still has room for ``vector`` (no static rules)."""
        row = self._free_rows[index]
        for j, amount in self._nonzero[vector]:
            if row[j] < amount:
                return False
        if original is not None:
            alloc = self._alloc_rows[index]
            for j, amount in self._nonzero[original]:
                if alloc[j] < amount:
                    return False
        return True

    def place(self, index: int, vector: Vector) -> None:
        """Subtract a placed request from node ``index``."""
        row = self._free_rows[index]
        for j, amount in self._nonzero[vector]:
            row[j] -= amount
            self._free[index, j] -= amount
            self._placed[index, j] += amount
        self._changes.append(index)

    def explain(self, candidates: Candidates) -> tuple[str, decisions.RejectCode]:
        """Explain why a task fits nowhere, in kube-scheduler's words, with a reject code.

        ``UNRESOLVABLE`` when no node passes the static filters with enough allocatable for
        the request; ``UNSCHEDULABLE`` when some node could take it once pods leave. The answer
        is cached until the next placement, so tasks of an already failed class are cheap.
        """
        entry = self._refresh(candidates._entry)
        version = len(self._changes)
        if entry.reject is not None and entry.reject[0] == version:
            return entry.reject[1], entry.reject[2]
        vec, orig = entry.vector, entry.original
        static = self._static_class(entry.constraints)
        counts = dict(static.counts)
        ever = static.mask.copy()
        need_free = dict(self._nonzero[vec])
        need_alloc = dict(self._nonzero[orig]) if orig is not None else {}
        for j in sorted(need_free.keys() | need_alloc.keys()):
            short = np.zeros(len(self.names), dtype=np.bool_)
            if j in need_free:
                short |= self._free[:, j] < need_free[j]
            if j in need_alloc:
                short |= self._alloc[:, j] < need_alloc[j]
            n = int(np.count_nonzero(short & static.mask))
            if n:
                reason = feasibility.insufficient_reason(self.columns[j])
                counts[reason] = counts.get(reason, 0) + n
            ever &= self._alloc[:, j] >= max(need_free.get(j, 0), need_alloc.get(j, 0))
        message = feasibility.fit_error_message(len(self.names), counts)
        code = (
            decisions.RejectCode.UNSCHEDULABLE if ever.any() else decisions.RejectCode.UNRESOLVABLE
        )
        entry.reject = (version, message, code)
        return message, code

    # -- the next cycle (incremental scheduling) ---------------------------------------------

    def successor(
        self, snapshot: cluster.ClusterSnapshot, *, extra_resources: Iterable[str] = ()
    ) -> tuple[WorkingNodes, npt.NDArray[np.intp] | None]:
        """Return the next cycle's table, reusing what ``snapshot`` did not change.

        When the node set, the columns and every node's feasibility fields (allocatable,
        labels, taints, readiness, cordon) are unchanged, only the rows whose requested
        resources changed are recomputed and the static filter results are kept; usage is
        refreshed. The second value is then the indices of the nodes that have more free room
        of some resource than this table has now (after this cycle's placements): only there
        can a task that fitted nowhere fit now. Otherwise the table is built afresh and the
        second value is ``None`` (anything may fit now).
        """
        same_nodes = snapshot.nodes is self.nodes or (
            len(snapshot.nodes) == len(self.nodes)
            and all(
                new is old or _same_feasibility(new, old)
                for new, old in zip(snapshot.nodes, self.nodes, strict=True)
            )
        )
        extended = set(extra_resources)
        extended.update(self.columns[len(_CORE_COLUMNS) :])
        if not same_nodes or len(extended) != len(self.columns) - len(_CORE_COLUMNS):
            return WorkingNodes(snapshot, extra_resources=extra_resources), None
        nxt = object.__new__(WorkingNodes)
        nxt.snapshot = snapshot
        nxt.nodes = snapshot.nodes
        nxt.names, nxt.index, nxt.columns, nxt._column = (
            self.names,
            self.index,
            self.columns,
            self._column,
        )
        nxt._alloc, nxt._alloc_rows, nxt._alloc_float = (
            self._alloc,
            self._alloc_rows,
            self._alloc_float,
        )
        base = self._base_free.copy(order="F")
        old_requested, new_requested = self.snapshot.requested, snapshot.requested
        if old_requested is not new_requested:
            alloc_rows = self._alloc_rows
            for i, name in enumerate(self.names):
                now = new_requested.get(name)
                if now is not old_requested.get(name):
                    used = nxt._row(now or _ZERO)
                    base[i] = [a - u for a, u in zip(alloc_rows[i], used, strict=True)]
        nxt._base_free = base
        nxt._free = base.copy(order="F")
        nxt._free_rows = nxt._free.tolist()
        nxt._placed = np.zeros_like(self._placed)
        usage = self._usage
        if snapshot.nodes is not self.nodes:
            usage = usage.copy()
            for i, (new, old) in enumerate(zip(snapshot.nodes, self.nodes, strict=True)):
                if new.usage != old.usage:
                    usage[i] = (
                        (new.usage.cpu_millis, new.usage.memory_bytes)
                        if new.usage is not None
                        else (np.nan, np.nan)
                    )
        nxt._usage = usage
        nxt._changes = []
        nxt._vectors, nxt._nonzero, nxt._static = self._vectors, self._nonzero, self._static
        nxt._fits = {}
        grown = np.flatnonzero((base > self._free).any(axis=1))
        return nxt, grown

    def fits_any(
        self,
        pod: constraints.Constraints,
        vector: Vector,
        original: Vector | None,
        rows: npt.NDArray[np.intp],
    ) -> bool:
        """True when a task of this class fits now on one of the nodes ``rows``.

        The vectors must be rows over this table's ``columns``.
        """
        if rows.size == 0:
            return False
        mask = self._static_class(pod).mask[rows]
        for j, amount in enumerate(vector):
            if amount > 0:
                mask &= self._free[rows, j] >= amount
        for j, amount in enumerate(original or ()):
            if amount > 0:
                mask &= self._alloc[rows, j] >= amount
        return bool(mask.any())

    # -- internals ---------------------------------------------------------------------------

    def _row(self, amounts: resources.Resources, *, strict: bool = False) -> list[int]:
        row = [amounts.cpu_millis, amounts.memory_bytes, amounts.pods]
        row.extend([0] * (len(self.columns) - len(_CORE_COLUMNS)))
        for name, amount in amounts.extended:
            j = self._column.get(name)
            if j is not None:
                row[j] = amount
            elif strict:
                raise KeyError(f"no column for extended resource {name!r}")
        return row

    def _static_class(self, pod: constraints.Constraints) -> _StaticClass:
        static = self._static.get(pod)
        if static is None:
            reasons = [feasibility.static_reason(node, pod) for node in self.nodes]
            counts: dict[str, int] = {}
            for reason in reasons:
                if reason is not None:
                    counts[reason] = counts.get(reason, 0) + 1
            mask = np.fromiter((r is None for r in reasons), dtype=np.bool_, count=len(reasons))
            static = _StaticClass(mask=mask, counts=counts)
            self._static[pod] = static
        return static

    def _fit_entry(
        self, pod: constraints.Constraints, vec: Vector, orig: Vector | None
    ) -> _FitEntry:
        key = (pod, vec, orig)
        entry = self._fits.get(key)
        if entry is None:
            entry = _FitEntry(
                constraints=pod,
                vector=vec,
                original=orig,
                mask=self._full_mask(pod, vec, orig),
                count=0,
                version=len(self._changes),
            )
            entry.count = int(np.count_nonzero(entry.mask))
            self._fits[key] = entry
            return entry
        return self._refresh(entry)

    def _refresh(self, entry: _FitEntry) -> _FitEntry:
        # Within a cycle free resources only shrink, so a node can only turn infeasible: only
        # nodes that were feasible and changed since the mask was computed need a re-check.
        version = len(self._changes)
        if entry.version == version:
            return entry
        changed = self._changes[entry.version :]
        mask, nonzero = entry.mask, self._nonzero[entry.vector]
        if len(changed) <= 16:
            for i in set(changed):
                if mask[i]:
                    row = self._free_rows[i]
                    for j, amount in nonzero:
                        if row[j] < amount:
                            mask[i] = False
                            entry.count -= 1
                            break
        elif len(changed) <= len(self.names) // 4:
            index = np.unique(np.asarray(changed, dtype=np.intp))
            before = mask[index]
            after = before.copy()
            for j, amount in nonzero:
                after &= self._free[index, j] >= amount
            mask[index] = after
            entry.count -= int(np.count_nonzero(before)) - int(np.count_nonzero(after))
        else:
            entry.mask = self._full_mask(entry.constraints, entry.vector, entry.original)
            entry.count = int(np.count_nonzero(entry.mask))
        entry.version = version
        return entry

    def _full_mask(
        self, pod: constraints.Constraints, vec: Vector, orig: Vector | None
    ) -> BoolArray:
        mask = self._static_class(pod).mask.copy()
        for j, amount in self._nonzero[vec]:
            mask &= self._free[:, j] >= amount
        for j, amount in self._nonzero[orig] if orig is not None else ():
            mask &= self._alloc[:, j] >= amount
        return mask
