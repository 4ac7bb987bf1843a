"""``loadaware``: the feasible node with the lowest measured load after placement (beyond CWS).

Fit is always decided on requests; this policy only ranks the feasible nodes by how busy they
really are, from metrics-server usage in the snapshot (``NodeInfo.usage``):

- load of a node with usage = usage + requests placed on it earlier in this cycle;
- load of a node without usage (metrics-server down, node too new) = its requested resources
  times the usage/requested ratio measured on the nodes that do report usage (per resource);
  with no usage anywhere the ratio is 1, i.e. plain requested-based scoring. Unknown usage is
  never taken as zero, which would send every task to the node without metrics;
- score = ``-max(cpu load fraction, memory load fraction)`` including the task's request;
  highest wins, ties by node name, minus the PreferNoSchedule penalty.

metrics-server scrapes every ~15 s, so usage lags; the in-cycle placed requests keep one cycle
from piling every task onto the node that looked idle.

Maturity: alpha.
"""

from __future__ import annotations

import numpy as np

from policies.assignment import _scoring
from scheduler.core import interfaces, nodetable

NAME = "loadaware"
ALIASES: tuple[str, ...] = ("load",)


def score(candidates: nodetable.Candidates) -> _scoring.FloatArray:
    """Negative peak load fraction after placement, for every node."""
    nodes = candidates.nodes
    alloc = nodes.alloc[:, :2].astype(np.float64)
    placed = nodes.placed[:, :2].astype(np.float64)
    requested = alloc - nodes.free[:, :2] - placed
    usage = nodes.usage
    known = nodes.usage_known
    ratio = np.ones(2)
    if known.any():
        measured = usage[known].sum(axis=0)
        booked = requested[known].sum(axis=0)
        np.divide(measured, booked, out=ratio, where=booked > 0)
    load = np.where(known[:, None], usage, requested * ratio) + placed
    load += np.asarray(candidates.vector[:2], dtype=np.float64)
    fraction = np.zeros_like(load)
    np.divide(load, alloc, out=fraction, where=alloc > 0)
    peak: _scoring.FloatArray = fraction.max(axis=1)
    return -peak


def make(args: None = None) -> interfaces.AssignmentPolicy:
    """Return the ``loadaware`` assignment policy (it takes no arguments)."""
    return _scoring.ScoredAssignment(NAME, score)
