"""Offline discrete-event simulator: replay a WfCommons WfFormat instance through ``run_cycle``.

Data flow: :func:`load_instance` reads a WfFormat 1.4/1.5 document (``predictors.wfformat``,
the one reader of the format) into an :class:`Instance`;
:func:`simulate` registers its task-level DAG in a ``WorkflowDag`` (as an engine that knows the
whole workflow would), builds a ``ClusterCache`` of identical nodes and then runs events on a
simulated clock. A task becomes pending (gets the next submission id and joins the
``SchedulingQueue``) when its last parent finishes. After every batch of simultaneous events the
simulator takes a snapshot and calls the same ``run_cycle`` the daemon calls; each ``Bind`` is
assumed and confirmed at once (an instant watch), the task runs for its recorded runtime, and its
finish frees the node, feeds F and the learned runtime of its step, and releases its children.

Mapping from WfFormat (stated choices):

- **step** = ``category`` if present; otherwise the task name with a trailing ``_ID<digits>``
  (Pegasus, Makeflow) removed; if the execution record's ``command.program`` is a bare word that
  prefixes that name followed by ``_`` (epigenomics: ``fast2bfq_fast2bfq_..._sequence_3``), the
  program. Nextflow instances already name tasks by process.
- **CPU request** = ``max(1, ceil(avgCPU / 100))`` cores (avgCPU is a percentage of one core;
  missing → 1 core). Makeflow's ``coreCount`` is 1 everywhere and never larger.
- **memory request** = ``memoryInBytes``; when missing, the median of the step's known values
  (tasks of one step are requested alike), else 0 bytes (no memory request, like a pod without
  one; such tasks are then limited by CPU only).
- requests above a node's size are clamped to it (counted in ``clamped_tasks``) so every task
  can run.
- **input size** = sum of the input files' sizes (1.5: ``inputFiles`` ids resolved through
  ``specification.files``; 1.4: ``files[]`` with ``link == "input"``), else ``readBytes``, else 0.
- **runtime** = ``runtimeInSeconds`` on every node (homogeneous nodes, no data staging).
  :func:`with_runtime_jitter` lengthens each by a seeded random draw, so that tasks released
  together do not all end together (``wfsched simulate --runtime-jitter``).

**kube-scheduler, modelled** (:class:`KubeSchedulerQueue`, :func:`simulate_kube_scheduler`,
``--strategy kube-scheduler``): the same loop with kube-scheduler's queue order instead of a
ranking, so a replay's kube-scheduler run has a simulated counterpart. A pod that did not fit
gets kube-scheduler's backoff (1 s, doubling per failed attempt, at most 10 s) and a fresh queue
timestamp; each cycle takes first the pods not backing off, oldest timestamp first (activeQ),
then those backing off, earliest expiry first (1.33+ pops from backoffQ when activeQ is empty).
Placement is ``balanced``, the nearest registered policy to kube-scheduler's LeastAllocated and
BalancedAllocation scores. Stated simplifications: every waiting pod is retried at each event
(a completion frees resources, which requeues pods rejected for resources), and all of a
cycle's pods are placed at one instant.

Default cluster: 4 nodes (as in the CWS paper's testbed) x 2 CPU x 8 GiB. That is 8 one-core
slots, fewer than the widest level of every shared instance (9 to 1000 tasks), so tasks queue
and the ranking decides what runs first (on 16 of the 17 shared instances; nextflow-sarek never
has more than 8 runnable tasks at once); the largest memory request in the shared data (2.5 GiB)
fits on a node.
"""

from __future__ import annotations

import contextlib
import dataclasses
import heapq
import itertools
import json
import math
import random
import re
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from predictors import wfformat
from scheduler import registry
from scheduler.core import cluster, context, cycle, errors, interfaces, queue, resources, workflow
from scheduler.runtime import history

GIB = 2**30


InstanceError = wfformat.InstanceError
"""The WfFormat document is malformed (or, in :func:`simulate`, its DAG has a cycle)."""


class SimulationError(RuntimeError):
    """The simulation cannot finish (a task fits on no node)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SimTask:
    """One task of an instance, with the requests the simulator derived for it."""

    id: str
    step: str
    parents: tuple[str, ...]
    children: tuple[str, ...]
    runtime_s: float
    cpu_millis: int
    memory_bytes: int
    input_size: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Instance:
    """A parsed WfFormat instance; tasks in document order.

    ``dag_known_upfront``: the scheduler knows every task and edge from the start (an engine
    that registers its whole task DAG), or, when false, learns a task with its edges only when
    it is released (what the replay tells the daemon: a pod and its parents, when created).
    """

    name: str
    tasks: tuple[SimTask, ...]
    dag_known_upfront: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class EarlierRuns:
    """What the daemon holds about a workflow from its earlier runs (``--earlier``).

    ``step_runtimes``: seconds per step (``WorkflowHistory.runtime_estimates``: the median of a
    step's last runtimes); ``step_edges``: the step-level edges its earlier runs' tasks showed
    (``WorkflowHistory.step_edges``).
    """

    step_runtimes: Mapping[str, float]
    step_edges: tuple[tuple[str, str], ...]


def workflow_history(
    instance: Instance, workflow_key: str, step_name: Callable[[str], str] = str
) -> history.WorkflowHistory:
    """The daemon's workflow history after a run of ``instance`` under ``workflow_key``.

    It holds every task's runtime and the step edges its tasks showed, steps named by
    ``step_name`` (the daemon's names for them, e.g. ``replay.step_label``).
    """
    kept = history.WorkflowHistory()
    step_of = {task.id: step_name(task.step) for task in instance.tasks}
    for task in instance.tasks:
        step = step_of[task.id]
        kept.observe_runtime(workflow_key, step, task.runtime_s)
        kept.learn_step_edges(
            workflow_key, [(step_of[p], step) for p in task.parents if p in step_of]
        )
    return kept


def earlier_runs(instance: Instance) -> EarlierRuns:
    """What a daemon that ran ``instance`` holds afterwards: its steps' runtimes and edges."""
    kept = workflow_history(instance, instance.name)
    return EarlierRuns(
        step_runtimes=kept.runtime_estimates(instance.name),
        step_edges=tuple(sorted(kept.step_edges(instance.name))),
    )


def with_runtime_jitter(instance: Instance, *, jitter_s: float, seed: int = 0) -> Instance:
    """Return ``instance`` with each runtime lengthened by a uniform draw from ``[0, jitter_s]``.

    On a real cluster the tasks of one release do not finish at one instant: their pods are
    created, bound and started one after another (the replay creates a release of 36 pods over
    about 0.5 s). The simulator starts them together, so they end together and the ranking then
    sees every freed slot and every released child at once. Jitter takes that away. Draws are
    in task order from ``random.Random(seed)``: one seed, one instance. ``jitter_s == 0``
    returns ``instance`` itself.

    Raises:
        ValueError: If ``jitter_s`` is negative or not finite.
    """
    if not math.isfinite(jitter_s) or jitter_s < 0:
        raise ValueError(f"runtime jitter must be a finite number of seconds >= 0, not {jitter_s}")
    if jitter_s == 0:
        return instance
    draws = random.Random(seed)
    tasks = tuple(
        dataclasses.replace(task, runtime_s=task.runtime_s + draws.uniform(0.0, jitter_s))
        for task in instance.tasks
    )
    return dataclasses.replace(instance, tasks=tasks)


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterSpec:
    """The simulated cluster: identical nodes.

    Attributes:
        nodes: Number of nodes.
        node_cpu_millis: Allocatable CPU per node in millicores.
        node_memory_bytes: Allocatable memory per node in bytes.
        node_pods: Pod slots per node.
    """

    nodes: int = 4
    node_cpu_millis: int = 2000
    node_memory_bytes: int = 8 * GIB
    node_pods: int = 110


@dataclass(frozen=True, slots=True, kw_only=True)
class SimResult:
    """Outcome of one simulated run.

    Attributes:
        makespan_s: Time from the start to the last task's end.
        cpu_utilization: Sum of CPU request x runtime over total CPU x makespan.
        memory_utilization: The same for memory.
        mean_wait_s: Mean time from pending to start.
        cycles: Scheduling cycles run.
        clamped_tasks: Tasks whose request was clamped to the node size.
    """

    instance: str
    strategy: str
    assign: str
    nodes: int
    tasks: int
    makespan_s: float
    cpu_utilization: float
    memory_utilization: float
    mean_wait_s: float
    cycles: int
    clamped_tasks: int
    seed: int

    def to_json(self) -> dict[str, Any]:
        """Return the result as a JSON-ready dict."""
        return dataclasses.asdict(self)


# -- parsing ---------------------------------------------------------------------------------

_BARE_WORD = re.compile(r"[\w.-]+")


def _step_name(task: wfformat.WfTask) -> str:
    if task.category:
        return task.category
    base = wfformat.process_name(task.name)
    program = task.program
    if program and _BARE_WORD.fullmatch(program) and base.startswith(program + "_"):
        return program
    return base


def parse_instance(document: object, *, name: str = "instance") -> Instance:
    """Turn a WfFormat document (parsed JSON) into an :class:`Instance`.

    Raises:
        InstanceError: If required fields are missing or inconsistent.
    """
    read = wfformat.parse(document)
    steps = [_step_name(task) for task in read]
    memory_by_step: dict[str, list[int]] = {}
    for task, step in zip(read, steps, strict=True):
        if task.memory_bytes:
            memory_by_step.setdefault(step, []).append(task.memory_bytes)
    tasks = [_sim_task(task, step, memory_by_step) for task, step in zip(read, steps, strict=True)]
    return Instance(name=name, tasks=tuple(tasks))


def _sim_task(task: wfformat.WfTask, step: str, memory_by_step: Mapping[str, list[int]]) -> SimTask:
    memory = task.memory_bytes
    if not memory:
        step_values = memory_by_step.get(step)
        memory = int(statistics.median(step_values)) if step_values else 0
    input_size = task.input_bytes if task.input_bytes is not None else task.read_bytes or 0
    return SimTask(
        id=task.id,
        step=step,
        parents=task.parents,
        children=task.children,
        runtime_s=task.runtime_s,
        cpu_millis=1000 * max(1, math.ceil(task.avg_cpu / 100)),
        memory_bytes=memory,
        input_size=input_size,
    )


def load_instance(path: str | Path) -> Instance:
    """Read and parse a WfFormat JSON file.

    Raises:
        InstanceError: If the file cannot be read, is not JSON, or is not a valid instance.
    """
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InstanceError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InstanceError(f"{path} is not valid JSON: {exc}") from None
    return parse_instance(document, name=path.name)


# -- simulation ------------------------------------------------------------------------------


def _nodes(spec: ClusterSpec) -> list[cluster.NodeInfo]:
    allocatable = resources.Resources(
        cpu_millis=spec.node_cpu_millis, memory_bytes=spec.node_memory_bytes, pods=spec.node_pods
    )
    width = len(str(max(spec.nodes - 1, 0)))
    return [
        cluster.NodeInfo(name=f"node-{i:0{width}d}", allocatable=allocatable)
        for i in range(spec.nodes)
    ]


def simulate(
    instance: Instance,
    *,
    strategy: registry.PolicySpec,
    cluster_spec: ClusterSpec = ClusterSpec(),
    seed: int = 0,
    policies: interfaces.Policies | None = None,
    earlier: EarlierRuns | None = None,
) -> SimResult:
    """Run one instance to completion under one strategy.

    Args:
        instance: The workflow to replay.
        strategy: Ranking and assignment, by name.
        cluster_spec: The simulated nodes.
        seed: Seed of the cycle random generator.
        policies: Ready-made policy instances to use instead of building ``strategy``'s
            (experiments with unregistered policies); ``strategy`` still labels the result.
        earlier: What earlier runs of the workflow taught the scheduler (step runtimes and
            edges), when the instance's DAG is learned as tasks are released; as the daemon
            does, edges that contradict each other are dropped.

    Raises:
        SimulationError: If pending tasks remain that no node can take.
        InstanceError: If the instance's dependencies are cyclic.
    """
    if cluster_spec.nodes < 1:
        raise SimulationError("the cluster needs at least one node")
    run = workflow.RunId(instance.name)
    dag = _whole_dag(run, instance)  # also checks the instance for cycles
    if not instance.dag_known_upfront:
        dag = workflow.WorkflowDag(run)
        if earlier is not None:
            dag.prior_runtimes = dict(earlier.step_runtimes)
            with contextlib.suppress(errors.DagError):
                dag.add_step_edges(earlier.step_edges)
    by_id = {task.id: task for task in instance.tasks}

    cache = cluster.ClusterCache()
    for node in _nodes(cluster_spec):
        cache.upsert_node(node)
    pending = queue.SchedulingQueue()
    policies = policies or strategy.build()
    rng = random.Random(seed)
    submission = itertools.count()
    clamped = 0
    requests: dict[str, resources.Resources] = {}
    for task in instance.tasks:
        cpu = min(task.cpu_millis, cluster_spec.node_cpu_millis)
        memory = min(task.memory_bytes, cluster_spec.node_memory_bytes)
        clamped += (cpu, memory) != (task.cpu_millis, task.memory_bytes)
        requests[task.id] = resources.Resources(cpu_millis=cpu, memory_bytes=memory, pods=1)

    def release(task: SimTask, now: float) -> None:
        if not instance.dag_known_upfront:
            dag.add_task(task.id, task.step)
            dag.add_task_edges((parent, task.id) for parent in task.parents)
        pending.add(
            workflow.Task(
                key=workflow.TaskKey(run, task.id),
                step=workflow.StepName(task.step),
                submission=next(submission),
                request=requests[task.id],
                input_size=task.input_size,
            )
        )
        ready_at[task.id] = now

    ready_at: dict[str, float] = {}
    waits: list[float] = []
    missing = {task.id: len(set(task.parents)) for task in instance.tasks}
    for task in instance.tasks:
        if not missing[task.id]:
            release(task, 0.0)
    events: list[tuple[float, int, str]] = []
    sequence = itertools.count()
    now, cycles, makespan = 0.0, 0, 0.0
    while True:
        if len(pending):
            cycles += 1
            result = cycle.run_cycle(
                snapshot=cache.snapshot(),
                queue=pending,
                dags={run: dag},
                policies=policies,
                ctx=context.CycleContext(cycle_id=cycles, now=now, rng=rng),
            )
            pending.apply(result)
            if isinstance(policies.ranking, KubeSchedulerQueue):  # bound ones are not waiting
                policies.ranking.record_unplaced([t.key for t in pending.waiting_tasks()], now)
            for bind in result.binds:
                pending.bind_succeeded(bind.task)
                pod = cluster.PodInfo(uid=bind.task.task, node_name=bind.node, request=bind.request)
                cache.assume(pod)
                cache.upsert_pod(pod)
                waits.append(now - ready_at[bind.task.task])
                end = now + by_id[bind.task.task].runtime_s
                heapq.heappush(events, (end, next(sequence), bind.task.task))
        if not events:
            if len(pending):
                first = pending.tasks()[0]
                raise SimulationError(f"{len(pending)} task(s) can never run, e.g. {first.key}")
            break
        now = events[0][0]
        while events and events[0][0] == now:
            _, _, task_id = heapq.heappop(events)
            task = by_id[task_id]
            cache.remove_pod(task_id)
            dag.record_finished(
                task.step, success=True, runtime_s=task.runtime_s, input_size=task.input_size
            )
            makespan = max(makespan, now)
            for child in dict.fromkeys(task.children):
                missing[child] -= 1
                if missing[child] == 0:
                    release(by_id[child], now)
    cpu_work = sum(requests[t.id].cpu_millis * t.runtime_s for t in instance.tasks)
    memory_work = sum(requests[t.id].memory_bytes * t.runtime_s for t in instance.tasks)
    capacity = makespan * cluster_spec.nodes
    return SimResult(
        instance=instance.name,
        strategy=strategy.ranking,
        assign=strategy.assignment,
        nodes=cluster_spec.nodes,
        tasks=len(instance.tasks),
        makespan_s=makespan,
        cpu_utilization=cpu_work / (capacity * cluster_spec.node_cpu_millis) if capacity else 0.0,
        memory_utilization=(
            memory_work / (capacity * cluster_spec.node_memory_bytes) if capacity else 0.0
        ),
        mean_wait_s=statistics.fmean(waits) if waits else 0.0,
        cycles=cycles,
        clamped_tasks=clamped,
        seed=seed,
    )


def _whole_dag(run: workflow.RunId, instance: Instance) -> workflow.WorkflowDag:
    """Every task and edge of ``instance`` in one DAG.

    Raises:
        InstanceError: If the dependencies are cyclic.
    """
    dag = workflow.WorkflowDag(run)
    dag.complete_task_graph = True
    for task in instance.tasks:
        dag.add_task(task.id, task.step)
    try:
        dag.add_task_edges((p, task.id) for task in instance.tasks for p in task.parents)
    except errors.DagError as exc:
        raise InstanceError(str(exc)) from None
    return dag


KUBE_SCHEDULER = "kube-scheduler"
"""The label of the kube-scheduler model (not a registered ranking)."""


class KubeSchedulerQueue:
    """kube-scheduler's queue order as a ranking, for the simulator only (see the module doc).

    Not a registered policy: it keeps per-task state that :func:`simulate` updates after every
    cycle through :meth:`record_unplaced`, which the ranking contract forbids.
    """

    def __init__(self, *, initial_backoff_s: float = 1.0, max_backoff_s: float = 10.0) -> None:
        self.initial_backoff_s = initial_backoff_s
        self.max_backoff_s = max_backoff_s
        self._queued_at: dict[workflow.TaskKey, float] = {}
        self._failures: dict[workflow.TaskKey, int] = {}
        self._backoff_until: dict[workflow.TaskKey, float] = {}

    @property
    def name(self) -> str:
        """The model's label."""
        return KUBE_SCHEDULER

    def rank(
        self,
        tasks: Sequence[workflow.Task],
        view: workflow.WorkflowView,
        ctx: context.CycleContext,
    ) -> list[workflow.Task]:
        """Pods not backing off by queue timestamp, then those backing off by expiry."""
        now = ctx.now
        for task in tasks:
            self._queued_at.setdefault(task.key, now)

        def order(task: workflow.Task) -> tuple[int, float, int]:
            until = self._backoff_until.get(task.key, -math.inf)
            if until > now:
                return (1, until, task.submission)
            return (0, self._queued_at[task.key], task.submission)

        return sorted(tasks, key=order)

    def record_unplaced(self, keys: Sequence[workflow.TaskKey], now: float) -> None:
        """The pods of ``keys`` did not fit at ``now``: back off and refresh their timestamp."""
        for key in keys:
            failures = self._failures.get(key, 0) + 1
            self._failures[key] = failures
            self._queued_at[key] = now
            delay = min(self.max_backoff_s, self.initial_backoff_s * 2 ** (failures - 1))
            self._backoff_until[key] = now + delay


def simulate_kube_scheduler(
    instance: Instance, *, cluster_spec: ClusterSpec = ClusterSpec(), seed: int = 0
) -> SimResult:
    """Run ``instance`` under the kube-scheduler model (:class:`KubeSchedulerQueue`)."""
    assignment = registry.assignment("balanced")
    policies = interfaces.Policies(ranking=KubeSchedulerQueue(), assignment=assignment.make(None))
    return simulate(
        instance,
        strategy=registry.PolicySpec(ranking=KUBE_SCHEDULER, assignment=assignment.name),
        cluster_spec=cluster_spec,
        seed=seed,
        policies=policies,
    )


def compare(
    instance: Instance,
    *,
    assignment: str = registry.DEFAULT_ASSIGNMENT,
    cluster_spec: ClusterSpec = ClusterSpec(),
    seed: int = 0,
    rankings: Sequence[str] | None = None,
    earlier: EarlierRuns | None = None,
) -> list[SimResult]:
    """Simulate ``instance`` under every registered ranking (or ``rankings``) with one assignment.

    ``earlier``: what earlier runs of the workflow taught (see :func:`simulate`).

    Raises:
        UnknownPolicyError: If a name is not registered.
    """
    names = list(rankings) if rankings is not None else list(registry.RANKINGS)
    assign = registry.assignment(assignment).name
    return [
        simulate(
            instance,
            strategy=registry.PolicySpec(ranking=registry.ranking(name).name, assignment=assign),
            cluster_spec=cluster_spec,
            seed=seed,
            earlier=earlier,
        )
        for name in names
    ]
