"""``roundrobin``: a node ring with a cursor that persists across cycles (CWS default).

Per task, starting at the cursor, try each ring node at most once, advancing the cursor (modulo
the ring size) past every node tried; take the first feasible node. The next task therefore
starts right after the node just used; if nothing fits, the cursor has gone full circle and is
unchanged (cws-semantics 4, ``RoundRobinAssign``).

The ring holds every known node (CWS only knew the Ready nodes of its first round, defect D13):
at the first cycle all nodes sorted by name; nodes that appear later are appended (sorted among
themselves); a node that disappears is removed and the cursor moves back by one if its position
was below the cursor. Readiness, cordons and taints are feasibility, not ring membership.
PreferNoSchedule taints are ignored, as in CWS.

Maturity: stable (CWS behaviour).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from scheduler.core import context, interfaces, nodetable

NAME = "roundrobin"
ALIASES: tuple[str, ...] = ("rr",)


@dataclass(slots=True)
class RoundRobinAssignment:
    """The CWS round-robin ring; one instance per scheduler, owned by the decision thread."""

    name: str = NAME
    ring: list[str] = field(default_factory=list)
    cursor: int = 0
    _table: nodetable.WorkingNodes | None = None
    _ring_index: npt.NDArray[np.intp] = field(default_factory=lambda: np.zeros(0, np.intp))

    def select(self, candidates: nodetable.Candidates, ctx: context.CycleContext) -> int | None:
        """Return the first feasible ring node at or after the cursor, moving the cursor."""
        if candidates.nodes is not self._table:
            self.sync(candidates.nodes)
        if not self.ring:
            return None
        start = self.cursor
        if candidates.is_feasible(int(self._ring_index[start])):
            position = start
        else:
            hits = np.flatnonzero(candidates.mask()[self._ring_index])
            if hits.size == 0:
                return None
            later = hits[hits >= start]
            position = int(later[0] if later.size else hits[0])
        self.cursor = (position + 1) % len(self.ring)
        return int(self._ring_index[position])

    def sync(self, nodes: nodetable.WorkingNodes) -> None:
        """Bring the ring up to date with the node table of a new cycle."""
        known = set(nodes.names)
        for position in range(len(self.ring) - 1, -1, -1):
            if self.ring[position] not in known:
                del self.ring[position]
                if position < self.cursor:
                    self.cursor -= 1
        in_ring = set(self.ring)
        self.ring.extend(name for name in nodes.names if name not in in_ring)
        self.cursor = self.cursor % len(self.ring) if self.ring else 0
        self._ring_index = np.array([nodes.index[name] for name in self.ring], dtype=np.intp)
        self._table = nodes


def make(args: None = None) -> interfaces.AssignmentPolicy:
    """Return a fresh ``roundrobin`` assignment policy (cursor at the first node)."""
    return RoundRobinAssignment()
