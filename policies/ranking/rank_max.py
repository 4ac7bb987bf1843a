"""``rank_max``: the deepest remaining workflow first, then the largest input.

Sort key: ``(-rank, -size)``; ties keep the previous queue order (stable sort).

Maturity: stable (CWS behaviour).
"""

from __future__ import annotations

from policies.ranking import _keyed
from scheduler.core import interfaces, workflow

NAME = "rank_max"
ALIASES: tuple[str, ...] = ()


def sort_key(task: workflow.Task, view: workflow.WorkflowView) -> _keyed.SortKey:
    """Return the ascending sort key of ``task``."""
    return (-view.rank(task), -task.input_size)


def make(args: None = None) -> interfaces.RankingPolicy:
    """Return the ``rank_max`` ranking policy (it takes no arguments)."""
    return _keyed.KeyedRanking(NAME, sort_key, interfaces.KeyDependency.DAG_STRUCTURE)
