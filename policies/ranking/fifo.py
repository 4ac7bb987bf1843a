"""``fifo``: first registered, first scheduled.

Sort key: ``id`` (the submission counter, unique), so no tie-break is ever needed.

Maturity: stable (CWS behaviour).
"""

from __future__ import annotations

from policies.ranking import _keyed
from scheduler.core import interfaces, workflow

NAME = "fifo"
ALIASES: tuple[str, ...] = ()


def sort_key(task: workflow.Task, view: workflow.WorkflowView) -> _keyed.SortKey:
    """Return the ascending sort key of ``task``."""
    return (task.submission,)


def make(args: None = None) -> interfaces.RankingPolicy:
    """Return the ``fifo`` ranking policy (it takes no arguments)."""
    return _keyed.KeyedRanking(
        NAME, sort_key, interfaces.KeyDependency.NONE, orders_by_arrival=True
    )
