"""``balanced``: the node whose scarcer resource stays most free after placement (beyond CWS).

Score per feasible node: ``min(cpu free fraction, memory free fraction)`` after placing the
task; highest wins, ties by node name, minus the PreferNoSchedule penalty. This is ``fair``
made memory-aware (cws-semantics 4): a node with idle CPU but almost no memory left is not
preferred.

Maturity: alpha.
"""

from __future__ import annotations

from policies.assignment import _scoring
from scheduler.core import interfaces, nodetable

NAME = "balanced"
ALIASES: tuple[str, ...] = ("fairmem",)


def score(candidates: nodetable.Candidates) -> _scoring.FloatArray:
    """The smaller of the CPU and memory free fractions after placement, for every node."""
    scarcer: _scoring.FloatArray = _scoring.free_fractions_after(candidates).min(axis=1)
    return scarcer


def make(args: None = None) -> interfaces.AssignmentPolicy:
    """Return the ``balanced`` assignment policy (it takes no arguments)."""
    return _scoring.ScoredAssignment(NAME, score)
