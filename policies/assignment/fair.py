"""``fair``: the node with the most CPU left after placement, relative to its size (CWS).

Score per feasible node: ``(working free CPU - task CPU) / allocatable CPU``; the strictly
highest score wins, ties go to the alphabetically first node (CWS used hash order, D14). Memory
only matters through feasibility; PreferNoSchedule taints are ignored, as in CWS. Use
``balanced`` for a memory-aware variant.

Maturity: stable (CWS behaviour, deterministic ties).
"""

from __future__ import annotations

from policies.assignment import _scoring
from scheduler.core import interfaces, nodetable

NAME = "fair"
ALIASES: tuple[str, ...] = ("f",)


def score(candidates: nodetable.Candidates) -> _scoring.FloatArray:
    """CWS's fair score for every node."""
    return _scoring.free_fractions_after(candidates)[:, _scoring.CPU]


def make(args: None = None) -> interfaces.AssignmentPolicy:
    """Return the ``fair`` assignment policy (it takes no arguments)."""
    return _scoring.ScoredAssignment(NAME, score, penalize=False)
