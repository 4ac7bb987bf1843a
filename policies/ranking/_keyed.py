"""Shared machinery for rankings that are a stable sort by a per-task key."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from scheduler.core import context, interfaces, workflow

SortKey = tuple[int | float, ...]
KeyFunction = Callable[[workflow.Task, workflow.WorkflowView], SortKey]
_DAG = interfaces.KeyDependency.DAG_STRUCTURE | interfaces.KeyDependency.DAG_STATISTICS


@dataclass(frozen=True, slots=True)
class KeyedRanking:
    """A ranking policy that stably sorts the queue by ``key(task, view)``, ascending.

    Python's sort is stable, so ties keep the queue's persistent order (the previous cycle's
    order, new tasks last), which reproduces CWS's in-place stable sort.
    ``depends`` declares what of the run's DAG the key reads (default: everything);
    ``orders_by_arrival`` that the key is the arrival order (see ``RankingPolicy``).
    """

    name: str
    key: KeyFunction
    depends: interfaces.KeyDependency = _DAG
    orders_by_arrival: bool = False

    @property
    def key_dependencies(self) -> interfaces.KeyDependency:
        """The DAG changes that can change a task's key."""
        return self.depends

    def sort_key(self, task: workflow.Task, view: workflow.WorkflowView) -> SortKey:
        """Return the ascending sort key of ``task``."""
        return self.key(task, view)

    def rank(
        self,
        tasks: Sequence[workflow.Task],
        view: workflow.WorkflowView,
        ctx: context.CycleContext,
    ) -> list[workflow.Task]:
        """Return a new, stably sorted list; ``tasks`` is not modified."""
        key = self.key
        return sorted(tasks, key=lambda task: key(task, view))


def get_samples_key(
    task: workflow.Task, view: workflow.WorkflowView, *, threshold: int, starved_size_sign: int
) -> SortKey:
    """The ``gs_*`` key: sample-starved steps first, then CWS's ``rank_max`` for the rest.

    For F < ``threshold``: ``(0, F, -rank, starved_size_sign * size)``; otherwise
    ``(1, 0, -rank, -size)`` (F ignored). This is the pairwise CWS comparator written as an
    equivalent key (cws-semantics 3.2).
    """
    finished = view.finished(task)
    if finished < threshold:
        return (0, finished, -view.rank(task), starved_size_sign * task.input_size)
    return (1, 0, -view.rank(task), -task.input_size)


@dataclass(frozen=True, slots=True)
class GetSamplesRanking:
    """``gs_min``/``gs_max`` as a stable sort by :func:`get_samples_key`."""

    name: str
    threshold: int
    starved_size_sign: int

    @property
    def key_dependencies(self) -> interfaces.KeyDependency:
        """Rank (DAG structure) and F (DAG statistics)."""
        return _DAG

    def sort_key(self, task: workflow.Task, view: workflow.WorkflowView) -> SortKey:
        """Return the ascending sort key of ``task``."""
        return get_samples_key(
            task, view, threshold=self.threshold, starved_size_sign=self.starved_size_sign
        )

    def rank(
        self,
        tasks: Sequence[workflow.Task],
        view: workflow.WorkflowView,
        ctx: context.CycleContext,
    ) -> list[workflow.Task]:
        """Return a new, stably sorted list; ``tasks`` is not modified."""
        threshold, sign = self.threshold, self.starved_size_sign
        return sorted(
            tasks,
            key=lambda t: get_samples_key(t, view, threshold=threshold, starved_size_sign=sign),
        )
