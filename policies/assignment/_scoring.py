"""Shared machinery for assignment policies that score the feasible nodes.

Scores are computed for every node in one vectorised pass and infeasible nodes are masked
with ``-inf``; the highest score wins and ``np.argmax`` resolves ties to the first node in
index order, which is the alphabetically first node name.
With ``penalize`` each untolerated PreferNoSchedule taint subtracts ``PREFER_NO_SCHEDULE_PENALTY``
from the score; scores lie in [-1, 1] (load-aware: [-inf, 1]), so a node without such taints
practically always wins over one with them, like a soft TaintToleration filter.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from scheduler.core import context, nodetable

FloatArray = npt.NDArray[np.float64]
ScoreFunction = Callable[[nodetable.Candidates], FloatArray]

PREFER_NO_SCHEDULE_PENALTY = 2.0
CPU, MEMORY = 0, 1


def free_fractions_after(candidates: nodetable.Candidates) -> FloatArray:
    """Return, per node, the (cpu, memory) fraction of allocatable left after placing the task.

    Values for infeasible nodes are meaningless; ``ScoredAssignment`` masks them out. Nodes with
    zero allocatable of a resource count as fully free for it (1.0).
    """
    return candidates.nodes.free_fractions_after(candidates.vector)


@dataclass(frozen=True, slots=True)
class ScoredAssignment:
    """Assignment by the highest score among feasible nodes, ties by node name.

    ``score`` returns one value per node of the table (vectorised over all nodes, which is
    cheaper in numpy than gathering the feasible ones first); infeasible nodes are masked out.
    """

    name: str
    score: ScoreFunction
    penalize: bool = True

    def select(self, candidates: nodetable.Candidates, ctx: context.CycleContext) -> int | None:
        """Return the feasible node with the highest score."""
        if not candidates.any():
            return None
        scores = self.score(candidates)
        if self.penalize:
            penalty = candidates.prefer_no_schedule()
            if penalty is not None:
                scores = scores - PREFER_NO_SCHEDULE_PENALTY * penalty
        return int(np.argmax(np.where(candidates.mask(), scores, -np.inf)))
