"""Per-execution strategies and memory predictors for CWS executions, behind the core's policies.

CWS runs one scheduler per execution, each with the strategy and memory predictor its
registration named. wfsched runs one cycle over one queue for every workflow, so it wraps the
daemon's policies in three dispatchers that look the execution up by a task's run:

* :class:`PerExecutionRanking` splits the queue into one group per registered execution (its own
  ranking policy) plus one group for every other task (the daemon's ranking). Each group is
  ranked by its policy, and the groups are merged back **slot by slot**: the positions the
  group's tasks held in the queue's persistent order are filled with the group's tasks in their
  ranked order. Within an execution the order is exactly what its strategy gives (what CWS's
  per-execution scheduler would do); between executions the queue's persistent order decides,
  so one execution cannot overtake another by changing its strategy.
* :class:`PerExecutionAssignment` places a task of a registered execution with the execution's
  own assignment policy instance (its own round-robin cursor, as in CWS).
* :class:`CwsMemoryPlanner` plans the memory of a task of an execution that has a predictor with
  that execution's predictor for the task's process (floor and cap from the registration);
  every other task goes to the daemon's planner. Marks of the daemon's memory model
  (multi-container pod, refused resize) veto a plan through ``veto``.

All three run on the loop thread and keep the core's contracts (a permutation, no mutation of
the input, no clock).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from scheduler.core import context, interfaces, nodetable, workflow
from scheduler.cws import state as state_mod


class PerExecutionRanking:
    """Ranks each execution's tasks with its own ranking policy; see the module docstring."""

    def __init__(self, default: interfaces.RankingPolicy, state: state_mod.CwsState) -> None:
        self._default = default
        self._state = state

    @property
    def name(self) -> str:
        """The daemon's ranking name (executions may use others)."""
        return self._default.name

    def rank(
        self,
        tasks: Sequence[workflow.Task],
        view: workflow.WorkflowView,
        ctx: context.CycleContext,
    ) -> list[workflow.Task]:
        """Rank every group with its policy and merge the groups slot by slot."""
        groups: dict[workflow.RunId | None, list[workflow.Task]] = {}
        slots: list[workflow.RunId | None] = []
        policies: dict[workflow.RunId | None, interfaces.RankingPolicy] = {None: self._default}
        for task in tasks:
            run = task.run
            key: workflow.RunId | None = None
            if run in policies:
                key = run
            else:
                own = self._state.policies_for(run)
                if own is not None:
                    policies[run] = own.ranking
                    key = run
            groups.setdefault(key, []).append(task)
            slots.append(key)
        if len(groups) <= 1:
            only = next(iter(groups), None)
            return policies[only].rank(tasks, view, ctx)
        ranked = {key: iter(policies[key].rank(group, view, ctx)) for key, group in groups.items()}
        return [next(ranked[key]) for key in slots]


class PerExecutionAssignment:
    """Places each execution's tasks with its own assignment policy instance."""

    def __init__(self, default: interfaces.AssignmentPolicy, state: state_mod.CwsState) -> None:
        self._default = default
        self._state = state

    @property
    def name(self) -> str:
        """The daemon's assignment name (executions may use others)."""
        return self._default.name

    def select(self, candidates: nodetable.Candidates, ctx: context.CycleContext) -> int | None:
        """Delegate to the task's execution's policy, or to the daemon's."""
        own = self._state.policies_for(candidates.task.run)
        policy = self._default if own is None else own.assignment
        return policy.select(candidates, ctx)


class CwsMemoryPlanner:
    """Plans with the execution's predictor for its tasks, else with the daemon's planner."""

    def __init__(
        self,
        inner: interfaces.MemoryPlanner | None,
        state: state_mod.CwsState,
        *,
        veto: Callable[[workflow.TaskKey], bool] | None = None,
    ) -> None:
        self._inner = inner
        self._state = state
        self._veto = veto

    def plan(self, task: workflow.Task) -> int | None:
        """See :meth:`scheduler.core.interfaces.MemoryPlanner.plan`."""
        if self._state.plans_memory(task.run):
            if self._veto is not None and self._veto(task.key):
                return None
            return self._state.plan(task)
        return None if self._inner is None else self._inner.plan(task)


def wrap(
    policies: interfaces.Policies,
    state: state_mod.CwsState,
    *,
    plan_memory: bool,
    veto: Callable[[workflow.TaskKey], bool] | None = None,
) -> interfaces.Policies:
    """Return ``policies`` with the per-execution dispatchers around them.

    Args:
        policies: The daemon's policies (from the loop).
        state: The CWS state that knows each execution's policies and predictors.
        plan_memory: Plan memory for executions with a predictor. Only true when the loop
            executes resizes (its memory scaling is on); otherwise the daemon's planner, if
            any, is kept as it is.
        veto: Tasks the daemon's memory model marked unscalable.
    """
    planner = policies.memory_planner
    if plan_memory:
        planner = CwsMemoryPlanner(planner, state, veto=veto)
    return interfaces.Policies(
        ranking=PerExecutionRanking(policies.ranking, state),
        assignment=PerExecutionAssignment(policies.assignment, state),
        memory_planner=planner,
    )
