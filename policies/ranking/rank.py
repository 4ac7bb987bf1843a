"""``rank``: the deepest remaining workflow first, then FIFO.

Sort key: ``(-rank, id)``: higher rank (more process levels below the task's step) first;
equal ranks by submission order. No further tie-break is needed (ids are unique).

Maturity: stable (CWS behaviour).
"""

from __future__ import annotations

from policies.ranking import _keyed
from scheduler.core import interfaces, workflow

NAME = "rank"
ALIASES: tuple[str, ...] = ()


def sort_key(task: workflow.Task, view: workflow.WorkflowView) -> _keyed.SortKey:
    """Return the ascending sort key of ``task``."""
    return (-view.rank(task), task.submission)


def make(args: None = None) -> interfaces.RankingPolicy:
    """Return the ``rank`` ranking policy (it takes no arguments)."""
    return _keyed.KeyedRanking(NAME, sort_key, interfaces.KeyDependency.DAG_STRUCTURE)
