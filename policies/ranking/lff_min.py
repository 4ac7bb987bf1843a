"""``lff_min``: least-finished step first (Witt et al. 2019), then rank, then smallest input.

Sort key: ``(F, -rank, size)`` with F the successfully finished instances of the task's step;
ties keep the previous queue order (stable sort). Steps with few samples run early, so memory
predictors learn sooner.

Maturity: stable (CWS behaviour).
"""

from __future__ import annotations

from policies.ranking import _keyed
from scheduler.core import interfaces, workflow

NAME = "lff_min"
ALIASES: tuple[str, ...] = ("lff", "leastfinishedfirst", "leastfinishedfirstmin")


def sort_key(task: workflow.Task, view: workflow.WorkflowView) -> _keyed.SortKey:
    """Return the ascending sort key of ``task``."""
    return (view.finished(task), -view.rank(task), task.input_size)


def make(args: None = None) -> interfaces.RankingPolicy:
    """Return the ``lff_min`` ranking policy (it takes no arguments)."""
    return _keyed.KeyedRanking(NAME, sort_key)
