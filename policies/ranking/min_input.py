"""``min``: smallest input first.

Sort key: ``size``; ties keep the previous queue order (stable sort).

Maturity: stable (CWS behaviour).
"""

from __future__ import annotations

from policies.ranking import _keyed
from scheduler.core import interfaces, workflow

NAME = "min"
ALIASES: tuple[str, ...] = ()


def sort_key(task: workflow.Task, view: workflow.WorkflowView) -> _keyed.SortKey:
    """Return the ascending sort key of ``task``."""
    return (task.input_size,)


def make(args: None = None) -> interfaces.RankingPolicy:
    """Return the ``min`` ranking policy (it takes no arguments)."""
    return _keyed.KeyedRanking(NAME, sort_key, interfaces.KeyDependency.NONE)
