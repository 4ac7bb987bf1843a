"""The extension points of the scheduling core, as Protocols with written contracts.

A cycle runs: memory planning (:class:`MemoryPlanner`, optional) → ranking
(:class:`RankingPolicy`) → per task in ranked order, node assignment
(:class:`AssignmentPolicy`) over the feasible nodes the core computed. Implementations live in
``policies/`` (and ``predictors/`` for planners) and are registered in ``scheduler.registry``.

All three run on the single decision thread, may not read the clock or the global ``random``
module (use ``ctx.now``/``ctx.rng``), and may not call the API server.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from scheduler.core import context, nodetable, workflow


class RankingPolicy(Protocol):
    """Orders the pending tasks; earlier tasks get the first pick of nodes.

    Contract:
        - Return a new list that is a permutation of ``tasks``; never mutate ``tasks``.
        - Sort stably over the given order: ``tasks`` arrives in the queue's persistent order
          (the previous cycle's result, new tasks at the end), which is how CWS's in-place
          stable sort keeps ties across rounds.
        - Be deterministic given ``ctx.rng``'s state; draw randomness only from it.
        - Policies may keep caches keyed by DAG versions, but no other state that changes the
          result.
        - Optionally, ``orders_by_arrival = True`` says the order is the tasks' arrival order
          (``fifo``): seeing more of a release before ranking cannot change it, so the daemon
          does not wait for the rest of a release (``Settings.arrival_settle_s``).
    """

    @property
    def name(self) -> str:
        """Canonical registry name."""
        ...

    def rank(
        self,
        tasks: Sequence[workflow.Task],
        view: workflow.WorkflowView,
        ctx: context.CycleContext,
    ) -> list[workflow.Task]:
        """Return ``tasks`` in scheduling order."""
        ...


class KeyDependency(enum.Flag):
    """What a ranking's per-task sort key reads besides the task itself.

    Incremental scheduling recomputes the keys of a run's tasks only when something the keys
    depend on changed: the DAG's structure (``WorkflowDag.version``, e.g. ranks) or its
    statistics (``WorkflowDag.stats_version``, e.g. F or learned runtimes), or the DAG being
    registered or dropped (always). ``NONE``: keys change only when the task is replaced.
    """

    NONE = 0
    DAG_STRUCTURE = enum.auto()
    DAG_STATISTICS = enum.auto()


@runtime_checkable
class IncrementalRanking(RankingPolicy, Protocol):
    """A ranking that is a stable sort by a per-task key, so its order can be kept up to date.

    Contract (on top of :class:`RankingPolicy`):
        - ``rank(tasks, view, ctx)`` equals ``sorted(tasks, key=lambda t: sort_key(t, view))``.
        - ``sort_key`` depends only on the task and on what ``key_dependencies`` declares of its
          run's DAG; keys of one policy are mutually comparable.
        - Rankings that draw from ``ctx.rng`` or read other global state (``random``) do not
          implement this protocol; cycles with them re-rank the whole queue.
    """

    @property
    def key_dependencies(self) -> KeyDependency:
        """The DAG changes that can change a task's key."""
        ...

    def sort_key(self, task: workflow.Task, view: workflow.WorkflowView) -> tuple[int | float, ...]:
        """Return the ascending sort key of ``task``."""
        ...


def orders_by_arrival(ranking: RankingPolicy) -> bool:
    """True when ``ranking`` declares that it orders tasks by arrival (see its contract)."""
    return getattr(ranking, "orders_by_arrival", False) is True


class AssignmentPolicy(Protocol):
    """Picks a node for one task among the nodes where it fits now.

    Contract:
        - Return the index of a node with ``candidates.is_feasible(index)``, or ``None`` to
          leave the task unplaced this cycle. ``select`` is only called when
          ``candidates.any()`` is True.
        - Never mutate the node table; the core subtracts the request after accepting the
          choice, and re-checks it, so a wrong index is refused (``RejectCode.POLICY_ERROR``),
          never overcommitted.
        - May keep state across cycles (the round-robin cursor does); the policy instance is
          owned by one decision thread.
    """

    @property
    def name(self) -> str:
        """Canonical registry name."""
        ...

    def select(self, candidates: nodetable.Candidates, ctx: context.CycleContext) -> int | None:
        """Return the chosen node index, or ``None``."""
        ...


class MemoryPlanner(Protocol):
    """Plans the memory a task will get (CWS memory scaling), e.g. backed by a predictor.

    Contract:
        - Return planned bytes, or ``None`` for "no plan" (the user's request stays).
        - The core only asks for first attempts with a memory request, ignores non-finite or
          non-positive values and never plans above the user's request (CWS defect D4).
        - Pure with respect to the task and the planner's own observations; no clock.
    """

    def plan(self, task: workflow.Task) -> int | None:
        """Return the planned memory in bytes, or ``None``."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Policies:
    """The policies one cycle runs with.

    Attributes:
        ranking: Orders the queue.
        assignment: Chooses nodes.
        memory_planner: Optional memory scaling hook.
    """

    ranking: RankingPolicy
    assignment: AssignmentPolicy
    memory_planner: MemoryPlanner | None = None
