"""``binpack``: best fit, the feasible node that is fullest after placement (beyond CWS).

Score per feasible node: ``1 - mean(cpu free fraction, memory free fraction)`` after placing
the task (kube-scheduler's MostAllocated); highest wins, ties by node name, minus the
PreferNoSchedule penalty. Packing keeps whole nodes free for large tasks and lets an autoscaler
drain the rest.

Maturity: alpha.
"""

from __future__ import annotations

from policies.assignment import _scoring
from scheduler.core import interfaces, nodetable

NAME = "binpack"
ALIASES: tuple[str, ...] = ("bestfit", "mostallocated")


def score(candidates: nodetable.Candidates) -> _scoring.FloatArray:
    """Allocated fraction after placement, averaged over CPU and memory, for every node."""
    left: _scoring.FloatArray = _scoring.free_fractions_after(candidates).mean(axis=1)
    return 1.0 - left


def make(args: None = None) -> interfaces.AssignmentPolicy:
    """Return the ``binpack`` assignment policy (it takes no arguments)."""
    return _scoring.ScoredAssignment(NAME, score)
