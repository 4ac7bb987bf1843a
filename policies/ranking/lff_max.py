"""``lff_max``: least-finished step first, then rank, then largest input.

Sort key: ``(F, -rank, -size)``; ties keep the previous queue order (stable sort).

Maturity: stable (CWS behaviour).
"""

from __future__ import annotations

from policies.ranking import _keyed
from scheduler.core import interfaces, workflow

NAME = "lff_max"
ALIASES: tuple[str, ...] = ("leastfinishedfirstmax",)


def sort_key(task: workflow.Task, view: workflow.WorkflowView) -> _keyed.SortKey:
    """Return the ascending sort key of ``task``."""
    return (view.finished(task), -view.rank(task), -task.input_size)


def make(args: None = None) -> interfaces.RankingPolicy:
    """Return the ``lff_max`` ranking policy (it takes no arguments)."""
    return _keyed.KeyedRanking(NAME, sort_key)
