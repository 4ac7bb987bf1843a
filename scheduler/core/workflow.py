"""Tasks and workflow DAGs: what ranking policies know about a workflow run.

Data flow: the shell registers DAG vertices and edges (nf-cws sends the process-level DAG once;
other engines may also send task-level edges) and tasks as they are submitted; it reports every
finished task with :meth:`WorkflowDag.record_finished`. Ranking policies read ranks, finished
counts (F) and learned runtimes through a per-cycle :class:`WorkflowView`.

Rank (cws-semantics 1.7, intended meaning): the number of process vertices on the longest
downstream path below a process, operators transparent; 0 for a process with no process below.
It is recomputed from the whole graph after every change, so it never depends on edge insertion
order; edges that would close a cycle are rejected and leave the DAG unchanged.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NewType

import networkx as nx

from scheduler.core import cluster, constraints, errors, podrequest, resources

RunId = NewType("RunId", str)
StepName = NewType("StepName", str)
VertexId = Hashable
_GIB = float(2**30)


@dataclass(frozen=True, slots=True, order=True)
class TaskKey:
    """Identifies one task: the workflow run and the engine's task id within it."""

    run: RunId
    task: str
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Keys index every per-task dictionary on the hot path: hash once.
        object.__setattr__(self, "_hash", hash((self.run, self.task)))

    def __hash__(self) -> int:
        return self._hash

    def __str__(self) -> str:
        return f"{self.run}/{self.task}"


_NO_CONSTRAINTS = constraints.Constraints()


@dataclass(frozen=True, slots=True)
class GangRef:
    """The gang (all-or-nothing group, ``scheduler.core.gang``) a task belongs to.

    Attributes:
        key: Identifies the gang (``podgroup:<ns>/<name>`` or ``step:<ns>/<run>/<step>``).
        min_count: Pods that must have a place at once before any is bound; 0 while the
            PodGroup the pods name has not been seen (nothing of the gang is placed).
    """

    key: str
    min_count: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Task:
    """One pending task (one pod) as the scheduling core sees it.

    Attributes:
        key: Run and task id.
        step: The abstract task (Nextflow process label) this task instantiates.
        submission: Monotonic registration counter shared by all runs (CWS's task id); the FIFO
            key and the last tie-break of ``rank``.
        request: The effective request of the pod (``podrequest.effective_request``), i.e. the
            user's request; the memory planner may plan less memory.
        input_size: Input bytes (CWS ``inputSize``); 0 when unknown.
        attempt: 0 for the first attempt, > 0 for retries (never memory-scaled).
        constraints: Node selector, required node affinity and tolerations.
        scheduling_gates: Names of ``spec.schedulingGates``; a gated task is never placed.
        pod: The pod in the API server, if it exists.
        memory_basis: How the pod's accounted memory follows the memory request of the
            container a resize changes (init containers, sidecars, overhead); ``None``: the
            pod is that one container, its memory is ``request.memory_bytes``.
        gang: The gang the pod belongs to (placed all or nothing), if any.
    """

    key: TaskKey
    step: StepName
    submission: int
    request: resources.Resources
    input_size: int = 0
    attempt: int = 0
    constraints: constraints.Constraints = _NO_CONSTRAINTS
    scheduling_gates: tuple[str, ...] = ()
    pod: cluster.PodRef | None = None
    memory_basis: podrequest.MemoryBasis | None = None
    gang: GangRef | None = None

    @property
    def run(self) -> RunId:
        """The workflow run this task belongs to."""
        return self.key.run

    @property
    def resizable_memory_bytes(self) -> int:
        """The memory request a resize may lower: the resized container's, not the pod's."""
        if self.memory_basis is None:
            return self.request.memory_bytes
        return self.memory_basis.container_bytes

    def memory_after_resize(self, container_bytes: int) -> int:
        """The pod's accounted memory once the container requests ``container_bytes``."""
        if self.memory_basis is None:
            return container_bytes
        return self.memory_basis.pod_memory(container_bytes)

    @property
    def gated(self) -> bool:
        """True while the pod has scheduling gates."""
        return bool(self.scheduling_gates)


class VertexKind(enum.StrEnum):
    """Vertex types of the CWS DAG API; only PROCESS vertices count in ranks."""

    PROCESS = "PROCESS"
    OPERATOR = "OPERATOR"
    ORIGIN = "ORIGIN"
    NODE = "NODE"


@dataclass(slots=True)
class StepStats:
    """Per-step counters fed by finished tasks, with a runtime model.

    Attributes:
        finished: Instances that finished successfully (F).
        failed: Instances that failed.
        runtime_count: Successful instances with a known runtime.
        runtime_sum: Sum of those runtimes in seconds.
        size_sum: Sum of their input sizes in GiB.
        size_sq_sum: Sum of squared input sizes (GiB²).
        size_runtime_sum: Sum of input size (GiB) x runtime (s).
    """

    finished: int = 0
    failed: int = 0
    runtime_count: int = 0
    runtime_sum: float = 0.0
    size_sum: float = 0.0
    size_sq_sum: float = 0.0
    size_runtime_sum: float = 0.0

    @property
    def mean_runtime(self) -> float | None:
        """Mean runtime of successful instances in seconds, or ``None`` before any."""
        return self.runtime_sum / self.runtime_count if self.runtime_count else None

    def observe(self, runtime_s: float, input_size: int) -> None:
        """Add one successful instance's runtime and input size."""
        x = input_size / _GIB
        self.runtime_count += 1
        self.runtime_sum += runtime_s
        self.size_sum += x
        self.size_sq_sum += x * x
        self.size_runtime_sum += x * runtime_s

    def runtime_estimate(self, input_size: int) -> float | None:
        """Expected runtime of an instance with ``input_size`` bytes of input.

        Least squares ``runtime = a + b * size`` over the observations when there are at least
        two distinct sizes and the slope is positive (bigger inputs take longer); otherwise the
        mean runtime. Never negative; ``None`` before any observation.
        """
        n = self.runtime_count
        if n == 0:
            return None
        mean_y = self.runtime_sum / n
        mean_x = self.size_sum / n
        var_x = self.size_sq_sum / n - mean_x * mean_x
        if n < 2 or var_x <= 1e-12 * max(mean_x * mean_x, 1e-18):
            return mean_y
        slope = (self.size_runtime_sum / n - mean_x * mean_y) / var_x
        if slope <= 0:
            return mean_y
        return max(0.0, mean_y + slope * (input_size / _GIB - mean_x))


class WorkflowDag:
    """The DAG of one workflow run: process/operator vertices, optional task-level edges.

    Vertices carry an engine-chosen id (CWS uses integers); PROCESS vertices are also indexed by
    their label, which is the step name of their tasks. :meth:`add_step` creates a PROCESS
    vertex keyed ``("step", label)`` for engines that only know step names. Task-level edges
    (:meth:`add_task_edges`) imply step-level edges between different steps.

    ``version`` changes with the structure, ``stats_version`` with every finished task, so
    policies can cache values derived from either.
    """

    def __init__(self, run: RunId) -> None:
        self.run = run
        self._graph: nx.DiGraph = nx.DiGraph()
        self._kind: dict[VertexId, VertexKind] = {}
        self._process_by_label: dict[str, VertexId] = {}
        self._edge_ids: dict[Hashable, tuple[VertexId, VertexId]] = {}
        self._tasks: nx.DiGraph = nx.DiGraph()
        self._stats: dict[str, StepStats] = {}
        self.complete_task_graph = False
        """Every task and task edge of the run is declared up front (an engine that sent its
        whole task graph), so a task without children has none. False (the default): tasks
        and their edges arrive as they are released, and a pending task's children are not
        known yet."""
        self.prior_runtimes: Mapping[str, float] = {}
        """Seconds per step learned in earlier runs of the same workflow, set once when the run
        is created (before any cycle sees it); used for a step until it has a runtime of its own."""
        self.version = 0
        self.stats_version = 0
        self._ranks: dict[StepName, int] | None = None
        self._successors: dict[StepName, frozenset[StepName]] | None = None
        self._topo_steps: tuple[StepName, ...] = ()
        self._topo_tasks: tuple[str, ...] | None = None

    # -- vertices and edges ------------------------------------------------------------------

    def add_vertex(self, uid: VertexId, *, kind: VertexKind, label: str | None = None) -> None:
        """Add a vertex; re-adding an identical vertex is a no-op.

        Raises:
            DagError: If a PROCESS vertex has no label, its label is taken by another PROCESS
                vertex, or ``uid`` exists with a different kind or label.
        """
        if uid in self._kind:
            if self._kind[uid] != kind or self._graph.nodes[uid].get("label") != label:
                raise errors.DagError(f"vertex {uid!r} already exists with another kind or label")
            return
        if kind is VertexKind.PROCESS:
            if not label:
                raise errors.DagError(f"PROCESS vertex {uid!r} needs a label")
            if label in self._process_by_label:
                raise errors.DagError(
                    f"process label {label!r} is already vertex {self._process_by_label[label]!r}"
                )
            self._process_by_label[label] = uid
        self._graph.add_node(uid, label=label)
        self._kind[uid] = kind
        self._structure_changed()

    def remove_vertices(self, uids: Iterable[VertexId]) -> None:
        """Remove vertices with their edges; unknown ids are ignored."""
        for uid in uids:
            if uid not in self._kind:
                continue
            label = self._graph.nodes[uid].get("label")
            if self._kind.pop(uid) is VertexKind.PROCESS and label is not None:
                self._process_by_label.pop(label, None)
            self._graph.remove_node(uid)
            self._edge_ids = {k: e for k, e in self._edge_ids.items() if uid not in e}
        self._structure_changed()

    def add_edges(self, edges: Iterable[tuple[VertexId, VertexId]]) -> None:
        """Add directed edges ``(source, target)`` all at once.

        Raises:
            DagError: If an endpoint is unknown (nothing is added).
            DagCycleError: If the edges would close a cycle (nothing is added).
        """
        pairs = list(edges)
        for src, dst in pairs:
            for uid in (src, dst):
                if uid not in self._kind:
                    raise errors.DagError(f"edge {src!r} -> {dst!r}: unknown vertex {uid!r}")
        new = [(s, d) for s, d in dict.fromkeys(pairs) if not self._graph.has_edge(s, d)]
        self._graph.add_edges_from(new)
        if _may_close_cycle(self._graph, new) and not nx.is_directed_acyclic_graph(self._graph):
            cycle = " -> ".join(_find_cycle(self._graph, new))
            self._graph.remove_edges_from(new)
            raise errors.DagCycleError(f"edges would close a cycle: {cycle}")
        if new:
            self._structure_changed()

    def add_edge(self, source: VertexId, target: VertexId, *, edge_id: Hashable = None) -> None:
        """Add one edge, optionally under an id that :meth:`remove_edges_by_id` accepts."""
        self.add_edges([(source, target)])
        if edge_id is not None:
            self._edge_ids[edge_id] = (source, target)

    def remove_edges(self, edges: Iterable[tuple[VertexId, VertexId]]) -> None:
        """Remove edges; missing ones are ignored."""
        for src, dst in edges:
            if self._graph.has_edge(src, dst):
                self._graph.remove_edge(src, dst)
        self._structure_changed()

    def remove_edges_by_id(self, edge_ids: Iterable[Hashable]) -> None:
        """Remove edges added with an ``edge_id``; unknown ids are ignored."""
        pairs = [self._edge_ids.pop(edge_id) for edge_id in edge_ids if edge_id in self._edge_ids]
        self.remove_edges(pair for pair in pairs if pair not in self._edge_ids.values())

    def add_step(self, step: str) -> VertexId:
        """Return the PROCESS vertex labelled ``step``, creating it if needed."""
        uid = self._process_by_label.get(step)
        if uid is None:
            uid = ("step", step)
            self.add_vertex(uid, kind=VertexKind.PROCESS, label=step)
        return uid

    def add_step_edges(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Add process-level edges by step name, creating missing steps.

        Raises:
            DagCycleError: If the edges would close a cycle (nothing is added, no step created).
        """
        pairs = list(pairs)
        created = [
            s
            for s in dict.fromkeys(x for pair in pairs for x in pair)
            if s not in self._process_by_label
        ]
        try:
            self.add_edges([(self.add_step(a), self.add_step(b)) for a, b in pairs])
        except errors.DagError:
            self.remove_vertices(self._process_by_label[s] for s in created)
            raise

    # -- tasks -------------------------------------------------------------------------------

    def add_task(self, task_id: str, step: str) -> None:
        """Register a task of ``step`` in the task-level graph."""
        self.add_step(step)
        if task_id not in self._tasks:
            self._tasks.add_node(task_id, step=StepName(step))
            self._topo_tasks = None

    def add_task_edges(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Add task-level edges ``(parent, child)`` plus the implied step-level edges.

        Raises:
            DagError: If a task is unknown (nothing is added).
            DagCycleError: If the task or the implied step edges would close a cycle.
        """
        edges = list(dict.fromkeys(pairs))
        for parent, child in edges:
            for task_id in (parent, child):
                if task_id not in self._tasks:
                    raise errors.DagError(
                        f"task edge {parent!r} -> {child!r}: unknown task {task_id!r}"
                    )
        new = [(p, c) for p, c in edges if not self._tasks.has_edge(p, c)]
        self._tasks.add_edges_from(new)
        if _may_close_cycle(self._tasks, new) and not nx.is_directed_acyclic_graph(self._tasks):
            cycle = " -> ".join(_find_cycle(self._tasks, new))
            self._tasks.remove_edges_from(new)
            raise errors.DagCycleError(f"task edges would close a cycle: {cycle}")
        step_pairs = {(self.step_of(p), self.step_of(c)) for p, c in edges}
        try:
            self.add_step_edges(sorted((a, b) for a, b in step_pairs if a != b))
        except errors.DagError:
            self._tasks.remove_edges_from(new)
            raise
        self._topo_tasks = None
        self.version += 1

    def remove_task(self, task_id: str) -> None:
        """Drop a task from the task-level graph (its step stays)."""
        if task_id in self._tasks:
            self._tasks.remove_node(task_id)
            self._topo_tasks = None
            self.version += 1

    def step_of(self, task_id: str) -> StepName:
        """Return the step of a registered task.

        Raises:
            DagError: If the task is unknown.
        """
        try:
            step: StepName = self._tasks.nodes[task_id]["step"]
        except KeyError:
            raise errors.DagError(f"unknown task {task_id!r}") from None
        return step

    @property
    def has_task_edges(self) -> bool:
        """True once any task-level edge was declared (then task-level paths are known)."""
        edges: int = self._tasks.number_of_edges()
        return edges > 0

    def has_task(self, task_id: str) -> bool:
        """True when ``task_id`` is in the task-level graph."""
        return task_id in self._tasks

    def task_children(self, task_id: str) -> tuple[str, ...]:
        """Return the direct task-level children of a task (empty if unknown)."""
        return tuple(self._tasks.successors(task_id)) if task_id in self._tasks else ()

    def tasks_bottom_up(self) -> tuple[str, ...]:
        """Every registered task in reverse topological order (children before parents)."""
        if self._topo_tasks is None:
            self._topo_tasks = tuple(reversed(list(nx.topological_sort(self._tasks))))
        return self._topo_tasks

    # -- ranks -------------------------------------------------------------------------------

    def steps(self) -> tuple[StepName, ...]:
        """Every step (PROCESS label) in topological order."""
        self._ensure_ranks()
        return self._topo_steps

    def rank(self, step: str) -> int:
        """Return the rank of a step (0 for an unknown step)."""
        return self.ranks().get(StepName(step), 0)

    def ranks(self) -> Mapping[StepName, int]:
        """Return the rank of every step; recomputed lazily after a structural change."""
        self._ensure_ranks()
        assert self._ranks is not None
        return self._ranks

    def step_successors(self, step: str) -> frozenset[StepName]:
        """Return the steps directly below ``step`` once operators are contracted away."""
        self._ensure_ranks()
        assert self._successors is not None
        return self._successors.get(StepName(step), frozenset())

    def _ensure_ranks(self) -> None:
        if self._ranks is not None:
            return
        best: dict[VertexId, int] = {}
        below: dict[VertexId, frozenset[StepName]] = {}
        ranks: dict[StepName, int] = {}
        successors: dict[StepName, frozenset[StepName]] = {}
        order = list(nx.topological_sort(self._graph))
        for uid in reversed(order):
            down = 0
            reach: set[StepName] = set()
            for child in self._graph.successors(uid):
                down = max(down, best[child])
                reach |= below[child]
            if self._kind[uid] is VertexKind.PROCESS:
                step = StepName(self._graph.nodes[uid]["label"])
                ranks[step] = down
                successors[step] = frozenset(reach)
                best[uid] = down + 1
                below[uid] = frozenset((step,))
            else:
                best[uid] = down
                below[uid] = frozenset(reach)
        self._ranks = ranks
        self._successors = successors
        self._topo_steps = tuple(
            StepName(self._graph.nodes[uid]["label"])
            for uid in order
            if self._kind[uid] is VertexKind.PROCESS
        )

    def _structure_changed(self) -> None:
        self.version += 1
        self._ranks = None
        self._successors = None

    # -- statistics --------------------------------------------------------------------------

    def record_finished(
        self,
        step: str,
        *,
        success: bool,
        runtime_s: float | None = None,
        input_size: int = 0,
    ) -> None:
        """Count a finished task of ``step``; successful runtimes feed the runtime model."""
        stats = self._stats.setdefault(step, StepStats())
        if success:
            stats.finished += 1
            if runtime_s is not None and math.isfinite(runtime_s) and runtime_s >= 0:
                stats.observe(runtime_s, input_size)
        else:
            stats.failed += 1
        self.stats_version += 1

    def finished(self, step: str) -> int:
        """Return F: how many instances of ``step`` finished successfully."""
        stats = self._stats.get(step)
        return 0 if stats is None else stats.finished

    def mean_runtime(self, step: str) -> float | None:
        """Mean runtime of ``step`` in seconds, else its prior runtime, else ``None``.

        The prior (``prior_runtimes``, from earlier runs) serves until a task of the step ends.
        """
        stats = self._stats.get(step)
        own = None if stats is None else stats.mean_runtime
        return own if own is not None else self.prior_runtimes.get(step)

    def runtime_estimate(self, step: str, input_size: int) -> float | None:
        """``StepStats.runtime_estimate`` for ``step``, else its prior runtime, else ``None``.

        The prior (``prior_runtimes``, from earlier runs) serves until a task of the step ends.
        """
        stats = self._stats.get(step)
        own = None if stats is None else stats.runtime_estimate(input_size)
        return own if own is not None else self.prior_runtimes.get(step)


def _may_close_cycle(graph: nx.DiGraph, new: Sequence[tuple[Hashable, Hashable]]) -> bool:
    """False when the ``new`` edges, just added to a graph that was acyclic, closed no cycle.

    A new cycle runs through some new edge ``(parent, child)`` and so through a path from
    ``child`` back to ``parent``: when no new edge's parent is a descendant of a new edge's
    child, there is none. The search visits only the children's descendants, so registering a
    task as its parents' child (a new leaf, the common case) costs its few edges instead of a
    walk over the whole graph. True means "maybe" (the caller checks the whole graph).
    """
    parents = {parent for parent, _ in new}
    seen = {child for _, child in new}
    stack = list(seen)
    while stack:
        vertex = stack.pop()
        if vertex in parents:
            return True
        for successor in graph.successors(vertex):
            if successor not in seen:
                seen.add(successor)
                stack.append(successor)
    return False


def _find_cycle(graph: nx.DiGraph, new: Sequence[tuple[VertexId, VertexId]]) -> list[str]:
    for src, _ in new:
        try:
            return [str(edge[0]) for edge in nx.find_cycle(graph, source=src)]
        except nx.NetworkXNoCycle:
            continue
    return []


class WorkflowView:
    """Read access to the DAGs of all runs for one cycle, with per-run caches.

    Tasks of runs without a DAG get rank 0 and F = 0.
    """

    def __init__(self, dags: Mapping[RunId, WorkflowDag]) -> None:
        self._dags = dags
        self._ranks: dict[RunId, Mapping[StepName, int]] = {}

    def dag(self, run: RunId) -> WorkflowDag | None:
        """Return the DAG of ``run``, if registered."""
        return self._dags.get(run)

    def rank(self, task: Task) -> int:
        """Return the rank of the task's step."""
        ranks = self._ranks.get(task.key.run)
        if ranks is None:
            dag = self._dags.get(task.key.run)
            ranks = {} if dag is None else dag.ranks()
            self._ranks[task.key.run] = ranks
        return ranks.get(task.step, 0)

    def finished(self, task: Task) -> int:
        """Return F for the task's step."""
        dag = self._dags.get(task.key.run)
        return 0 if dag is None else dag.finished(task.step)
