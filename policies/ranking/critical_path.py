"""``critical_path``: the longest expected remaining work below a task first (beyond CWS).

Priority of a task = its *bottom level*: the expected runtime of the longest path from the task
to the end of its workflow, itself included, with each step weighted by its mean runtime
learned online from finished tasks (``WorkflowDag.record_finished``):

- task level, when the run declared task-level edges and the task is in that graph:
  ``b(t) = own(t) + max(B(c) for c in children(t))``, ``B(c) = w(step(c)) + max(B(children))``;
  a task with no known child gets its step's tail instead (the steps below its step, as at
  step level), unless the run's task graph is complete (``WorkflowDag.complete_task_graph``):
  where tasks arrive as they are released, a pending task's children do not exist yet;
- step level otherwise (nf-cws only sends the process DAG):
  ``b(t) = own(t) + max(B(s') for s' in steps below step(t))``, operators transparent;
- ``own(t)``, the task's own term, is the step's runtime model evaluated at the task's input
  size (least squares ``runtime = a + b * size`` over the step's finished instances when the
  slope is positive, else the step mean; see ``StepStats.runtime_estimate``), so among tasks of
  one step the bigger inputs go first when the data show that they run longer. Descendants are
  not registered yet, so only their step means are used.

Step weights ``w`` (``Args.prior``):

- an observed step (at least one successful instance with a runtime) weighs its mean runtime;
  a step not observed in this run weighs its runtime from earlier runs of the workflow
  (``WorkflowDag.prior_runtimes``) when there is one;
- an unobserved step weighs the *largest* observed step mean of the run (``prior="max"``, the
  default): a pessimistic prior, so chains that still hide unknown steps are explored early
  instead of discovering a long step last (the typical tail of nf-core workflows, e.g. a final
  MultiQC). ``prior="mean"`` uses the mean of the observed means instead;
- before any observation in the run every step weighs 1 and ``own`` is 1: with step-level
  paths ``b = rank + 1`` and the order is exactly ``rank_min``'s; with task-level paths ``b``
  counts the tasks on the longest chain below the task (the task-level analogue of rank).

Sort key: ``(-b, -rank, size)``; ties keep the previous queue order (stable sort). The result
never depends on edge insertion order because both graphs are evaluated whole. Bottom levels
are cached per run and recomputed only when the DAG's structure or statistics change.

Maturity: alpha (evaluated with ``wfsched simulate --compare``; see ``policies/README.md``).
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from scheduler.core import context, interfaces, workflow

NAME = "critical_path"
ALIASES: tuple[str, ...] = ("cp", "criticalpath")


class Prior(enum.StrEnum):
    """The weight of a step that has no finished instance yet."""

    MAX = "max"
    MEAN = "mean"


@dataclass(frozen=True, slots=True, kw_only=True)
class Args:
    """Arguments of ``critical_path``.

    Attributes:
        prior: Weight of unobserved steps: ``"max"`` (largest observed step mean, default) or
            ``"mean"`` (mean of the observed step means).
        own_estimate: Use the step's size model for the task's own term (default); False uses
            the step mean for every task of a step.
        use_task_edges: Use task-level paths when a run declared task-level edges (default).
            Set to False to always use the step-level DAG.
    """

    prior: Prior | str = Prior.MAX
    own_estimate: bool = True
    use_task_edges: bool = True


@dataclass(slots=True)
class _Levels:
    versions: tuple[int, int]
    weights: Mapping[str, float]
    steps: Mapping[str, float]
    tasks: Mapping[str, float]


def step_weights(dag: workflow.WorkflowDag, prior: Prior = Prior.MAX) -> dict[str, float]:
    """Return the weight of every step of ``dag`` (see the module docstring)."""
    steps = dag.steps()
    observed = {s: m for s in steps if (m := dag.mean_runtime(s)) is not None}
    if not observed:
        return dict.fromkeys(steps, 1.0)
    values = observed.values()
    fallback = max(values) if prior is Prior.MAX else sum(values) / len(values)
    return {s: observed.get(s, fallback) for s in steps}


def bottom_levels(
    dag: workflow.WorkflowDag, weights: Mapping[str, float], *, use_task_edges: bool
) -> tuple[dict[str, float], dict[str, float]]:
    """Return (step bottom levels, task bottom levels) of ``dag`` under ``weights``.

    Task bottom levels are empty unless ``use_task_edges`` and the DAG has task-level edges.
    """
    step_levels: dict[str, float] = {}
    for step in reversed(dag.steps()):
        below = (step_levels[s] for s in dag.step_successors(step))
        step_levels[step] = weights[step] + max(below, default=0.0)
    task_levels: dict[str, float] = {}
    if use_task_edges and dag.has_task_edges:
        for task_id in dag.tasks_bottom_up():
            step = dag.step_of(task_id)
            below = (task_levels[c] for c in dag.task_children(task_id))
            # Unless the task graph is complete, a task's children are not known before it
            # ends: what is known of the steps below its step stands in for them.
            tail = 0.0 if dag.complete_task_graph else step_levels[step] - weights[step]
            task_levels[task_id] = weights[step] + max(below, default=tail)
    return step_levels, task_levels


@dataclass(slots=True)
class CriticalPathRanking:
    """Stable sort by ``(-bottom level, -rank, size)`` with per-run caches."""

    prior: Prior = Prior.MAX
    own_estimate: bool = True
    use_task_edges: bool = True
    name: str = NAME
    _cache: dict[workflow.RunId, _Levels] = field(default_factory=dict)

    def rank(
        self,
        tasks: Sequence[workflow.Task],
        view: workflow.WorkflowView,
        ctx: context.CycleContext,
    ) -> list[workflow.Task]:
        """Return a new list ordered by descending bottom level; ``tasks`` is not modified."""
        self.retain_runs({task.run for task in tasks})
        return sorted(tasks, key=lambda t: self.sort_key(t, view))

    @property
    def key_dependencies(self) -> interfaces.KeyDependency:
        """Bottom levels read the DAG's structure and its runtime statistics."""
        return interfaces.KeyDependency.DAG_STRUCTURE | interfaces.KeyDependency.DAG_STATISTICS

    def sort_key(self, task: workflow.Task, view: workflow.WorkflowView) -> tuple[float, ...]:
        """Return ``(-bottom level, -rank, size)``."""
        return (-self.level(task, view), -view.rank(task), task.input_size)

    def retain_runs(self, runs: Collection[workflow.RunId]) -> None:
        """Drop the cached levels of runs not in ``runs`` (no effect on any result)."""
        for run in [run for run in self._cache if run not in runs]:
            del self._cache[run]

    def level(self, task: workflow.Task, view: workflow.WorkflowView) -> float:
        """Return the bottom level of ``task`` (1.0 for a task of a run without a DAG)."""
        dag = view.dag(task.run)
        if dag is None:
            return 1.0
        levels = self._levels(dag)
        level = levels.tasks.get(task.key.task)
        if level is None:
            level = levels.steps.get(task.step, 1.0)
        if self.own_estimate:
            own = dag.runtime_estimate(task.step, task.input_size)
            if own is not None:
                level += own - levels.weights.get(task.step, 1.0)
        return level

    def _levels(self, dag: workflow.WorkflowDag) -> _Levels:
        versions = (dag.version, dag.stats_version)
        cached = self._cache.get(dag.run)
        if cached is None or cached.versions != versions:
            weights = step_weights(dag, self.prior)
            steps, tasks = bottom_levels(dag, weights, use_task_edges=self.use_task_edges)
            cached = _Levels(versions=versions, weights=weights, steps=steps, tasks=tasks)
            self._cache[dag.run] = cached
        return cached


def make(args: Args | None = None) -> interfaces.RankingPolicy:
    """Return the ``critical_path`` ranking policy.

    Raises:
        ValueError: If ``args.prior`` is not ``"max"`` or ``"mean"``.
    """
    args = args or Args()
    return CriticalPathRanking(
        prior=Prior(args.prior),
        own_estimate=args.own_estimate,
        use_task_edges=args.use_task_edges,
    )
