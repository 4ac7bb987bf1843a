"""``random``: a fresh uniform shuffle of the whole queue every cycle.

Order: ``ctx.rng.shuffle`` of the queue; no sort key, no tie-break. The same seed and the same
queue give the same order. Maturity: stable (CWS behaviour, seeded instead of global).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from scheduler.core import context, interfaces, workflow

NAME = "random"
ALIASES: tuple[str, ...] = ("r",)


@dataclass(frozen=True, slots=True)
class RandomRanking:
    """Shuffles a copy of the queue with the cycle's random generator."""

    name: str = NAME

    def rank(
        self,
        tasks: Sequence[workflow.Task],
        view: workflow.WorkflowView,
        ctx: context.CycleContext,
    ) -> list[workflow.Task]:
        """Return a shuffled copy of ``tasks``."""
        order = list(tasks)
        ctx.rng.shuffle(order)
        return order


def make(args: None = None) -> interfaces.RankingPolicy:
    """Return the ``random`` ranking policy (it takes no arguments)."""
    return RandomRanking()
