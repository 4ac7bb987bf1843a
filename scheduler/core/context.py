"""The per-cycle context: the only source of time, randomness and cycle settings in the core.

The loop (or the simulator, or a test) builds one :class:`CycleContext` per cycle. Core code and
policies read ``ctx.now`` instead of a clock and draw from ``ctx.rng`` instead of the global
``random`` module, so a cycle is a pure function of its inputs and a seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True, kw_only=True)
class CycleSettings:
    """Knobs of ``run_cycle``; the defaults reproduce CWS.

    Attributes:
        max_binds: Stop placing after this many binds in one cycle; ``None`` places as many
            as fit (CWS behaviour). A cap bounds the work one cycle hands to the bind workers.
        unschedulable_report_interval_s: A task's changed unschedulable reason is reported
            (pod condition and Event) only when its last report is at least this old; ``0``
            reports every change. The first report of a task is never delayed.
    """

    max_binds: int | None = None
    unschedulable_report_interval_s: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class CycleContext:
    """Inputs of one cycle that do not come from the cluster or the workflows.

    Attributes:
        cycle_id: Monotonic id stamped on every decision of the cycle.
        now: The current time in seconds (monotonic in the daemon, simulated time offline).
        rng: The seeded random generator for every random choice of the cycle.
        settings: Cycle settings.
    """

    cycle_id: int
    now: float
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    settings: CycleSettings = field(default_factory=CycleSettings)
