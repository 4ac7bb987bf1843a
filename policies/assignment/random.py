"""``random``: a uniformly random feasible node (CWS's random first fit, seeded).

CWS shuffles the node list and takes the first feasible node, which is a uniform choice among
the feasible nodes; wfsched draws that choice directly from ``ctx.rng``. Same seed, same
choices.

Maturity: stable (CWS behaviour, seeded).
"""

from __future__ import annotations

from dataclasses import dataclass

from scheduler.core import context, interfaces, nodetable

NAME = "random"
ALIASES: tuple[str, ...] = ("r",)


@dataclass(frozen=True, slots=True)
class RandomAssignment:
    """Uniform choice among feasible nodes."""

    name: str = NAME

    def select(self, candidates: nodetable.Candidates, ctx: context.CycleContext) -> int | None:
        """Return a random feasible node index."""
        index = candidates.indices()
        if index.size == 0:
            return None
        return int(index[ctx.rng.randrange(index.size)])


def make(args: None = None) -> interfaces.AssignmentPolicy:
    """Return the ``random`` assignment policy (it takes no arguments)."""
    return RandomAssignment()
