"""The allocation policy: how a prediction becomes a memory request (request = limit).

Shared by the daemon and the offline replay, so an evaluation measures the shipped behaviour
(memory-evaluation.md section 6). For a task with user request U and prediction p:

- p is ``None``, not finite or <= 0: the task keeps U (cold start or no opinion);
- otherwise plan = min(U, round_up_to_mib(max(floor, per_cpu_floor * cpus, min(p, cap)))).

The floor (CWS ``minMemory``, default 128 MiB), the optional floor per requested CPU (off by
default) and the optional cap (``maxMemory``) can never
raise the plan above U: that is the D4 fix (CWS's else-if chain lets them). Rounding up to a
whole MiB happens after the clamp; taking the minimum with U last keeps the plan at or below U
even when U itself is not a whole number of MiB (the plan is then U, i.e. no resize).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from predictors import base

DEFAULT_FLOOR_BYTES = base.PONDER_MARGIN_BYTES
"""The default floor, 128 MiB: tiny predictions are not worth a resize and risk OOMs."""


def round_up_to_mib(value: float) -> int:
    """Return the smallest whole number of MiB, in bytes, that is >= ``value`` (CWS semantics).

    Raises:
        ValueError: ``value`` is negative or not finite.
    """
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"cannot round {value!r} to MiB")
    return math.ceil(value / base.MIB) * base.MIB


@dataclass(frozen=True, slots=True, kw_only=True)
class AllocationPolicy:
    """Floor and cap applied to every prediction.

    Attributes:
        floor_bytes: Smallest planned memory (CWS ``minMemory``); 0 disables it.
        cap_bytes: Largest planned memory (CWS ``maxMemory``), or ``None`` for no cap.
        floor_bytes_per_cpu: Smallest planned memory per requested CPU; 0 disables it. On a
            node with M bytes per CPU, a task planned below its CPU share frees memory only
            for tasks asking more than their share, while an under-prediction costs a whole
            failed attempt; this floor keeps the small tasks' plans off that edge.
    """

    floor_bytes: int = DEFAULT_FLOOR_BYTES
    cap_bytes: int | None = None
    floor_bytes_per_cpu: int = 0

    def __post_init__(self) -> None:
        if self.floor_bytes < 0:
            raise ValueError(f"floor must be >= 0 bytes, got {self.floor_bytes}")
        if self.floor_bytes_per_cpu < 0:
            raise ValueError(f"floor per CPU must be >= 0 bytes, got {self.floor_bytes_per_cpu}")
        if self.cap_bytes is not None and self.cap_bytes <= 0:
            raise ValueError(f"cap must be > 0 bytes, got {self.cap_bytes}")

    def allocate(
        self, prediction: float | None, *, request_bytes: int, cpus: float | None = None
    ) -> int:
        """Return the planned memory in bytes, never above ``request_bytes``.

        Args:
            prediction: The predictor's answer in bytes, or ``None``.
            request_bytes: The user's request U (> 0). Tasks without a request are never
                resized; the caller must not call this for them.
            cpus: The task's requested CPUs, for the floor per CPU; ``None`` or <= 0 (not
                known) leaves only ``floor_bytes``.

        Raises:
            ValueError: ``request_bytes`` is not positive.
        """
        if request_bytes <= 0:
            raise ValueError(f"the user's request must be > 0 bytes, got {request_bytes}")
        if prediction is None or not math.isfinite(prediction) or prediction <= 0:
            return request_bytes
        value = prediction if self.cap_bytes is None else min(prediction, self.cap_bytes)
        floor = min(self.floor_for(cpus), float(request_bytes))  # the plan never exceeds U
        return min(request_bytes, round_up_to_mib(max(floor, value)))

    def floor_for(self, cpus: float | None) -> float:
        """The smallest plan for a task requesting ``cpus`` (``None``: not known)."""
        if cpus is None or not math.isfinite(cpus) or cpus <= 0:
            return float(self.floor_bytes)
        return max(float(self.floor_bytes), self.floor_bytes_per_cpu * cpus)
