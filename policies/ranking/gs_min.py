"""``gs_min`` ("get samples"): steps with < 5 successes first, smallest input among them.

Sort key: for F < 5, ``(0, F, -rank, size)``; for F >= 5, ``(1, 0, -rank, -size)``. Every task of
a sample-starved step precedes every task of a step with five or more successful instances;
among the starved, fewer finished first, then rank; the others follow ``rank_max``. Ties keep
the previous queue order (stable sort). CWS accepts only ``gs``/``getsamples``; ``gs_min``
(the README's name) is accepted too (defect D1).

Maturity: stable (CWS behaviour).
"""

from __future__ import annotations

from dataclasses import dataclass

from policies.ranking import _keyed
from scheduler.core import interfaces

NAME = "gs_min"
ALIASES: tuple[str, ...] = ("gs", "getsamples")


@dataclass(frozen=True, slots=True, kw_only=True)
class Args:
    """Arguments of ``gs_min``.

    Attributes:
        threshold: Successful instances a step needs before it stops being sample-starved;
            CWS uses 5. Set to 0 to get plain ``rank_max`` ordering.
    """

    threshold: int = 5


def make(args: Args | None = None) -> interfaces.RankingPolicy:
    """Return the ``gs_min`` ranking policy."""
    threshold = (args or Args()).threshold
    return _keyed.GetSamplesRanking(NAME, threshold, 1)
