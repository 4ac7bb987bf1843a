"""Shrink in place: lower a running task's memory once its step's peaks are known (pure policy).

A step's first tasks often start before any task of the step has finished: the memory model
has nothing to plan from, so they run with what the engine asked for (nf-core's presets: tens
of GiB for tasks that peak at one or two). When a sibling finishes and the model can plan, the
siblings still running hold that memory for the rest of their runtime. Since Kubernetes 1.34 a
running container's memory limit may be lowered in place (``pods/resize``; the kubelet skips a
decrease below the container's current usage). :func:`plan_shrink` decides, for one running
task, whether and how far to lower it:

- **To what**: the plan the memory model gives a new task of the same step now, never below
  ``usage / usage_headroom`` when the usage is known (metrics.k8s.io), rounded up to whole MiB.
- **Only when it pays**: the request must fall by at least ``min_saving_bytes`` and by at least
  ``min_saving_fraction`` of itself; a resize for a few MiB is not worth an API call.
- **The QoS class stays**: a limit equal to the request is lowered with it (Nextflow's pods,
  Guaranteed or not); a larger limit is left alone (lowering only the request cannot OOM-kill
  and frees the node's schedulable memory all the same).

The decision is data (:class:`ShrinkDecision`); the daemon's shell sends the resize. The node's
room grows only when the node reports the smaller allocation (the cache counts the larger of
spec and status while a resize is in flight), as kube-scheduler does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MIB = 1 << 20


class ShrinkPolicyError(ValueError):
    """A shrink policy parameter is out of range."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ShrinkPolicy:
    """How far, and when, a running task's memory is lowered (see the module docstring)."""

    min_saving_bytes: int = 256 * MIB
    """Shrink only when the request falls by at least this; >= 0."""
    min_saving_fraction: float = 0.1
    """... and by at least this share of itself; in [0, 1)."""
    usage_headroom: float = 0.8
    """Never below usage / headroom (usage known); in (0, 1]."""

    def __post_init__(self) -> None:
        if self.min_saving_bytes < 0:
            raise ShrinkPolicyError(f"min_saving_bytes must be >= 0, got {self.min_saving_bytes}")
        if not 0.0 <= self.min_saving_fraction < 1.0:
            raise ShrinkPolicyError(
                f"min_saving_fraction must be in [0, 1), got {self.min_saving_fraction}"
            )
        if not 0.0 < self.usage_headroom <= 1.0:
            raise ShrinkPolicyError(f"usage_headroom must be in (0, 1], got {self.usage_headroom}")


@dataclass(frozen=True, slots=True, kw_only=True)
class ShrinkDecision:
    """Lower a running container's memory request (and limit) to these values."""

    new_request_bytes: int
    new_limit_bytes: int
    """The new limit; 0 when the container has none."""

    def saved_bytes(self, request_bytes: int) -> int:
        """Memory the shrink takes off a request of ``request_bytes``."""
        return request_bytes - self.new_request_bytes


def plan_shrink(
    *,
    request_bytes: int,
    limit_bytes: int,
    planned_bytes: int,
    usage_bytes: int,
    policy: ShrinkPolicy,
) -> ShrinkDecision | None:
    """Decide whether to shrink one running container; ``None`` keeps it as it is.

    Args:
        request_bytes: The container's memory request now (> 0, else nothing is done).
        limit_bytes: Its memory limit now (0: none).
        planned_bytes: The memory the model plans for a new task of the same step.
        usage_bytes: The largest usage observed so far (0: unknown).
        policy: Thresholds.
    """
    if request_bytes <= 0 or planned_bytes <= 0:
        return None
    target = max(planned_bytes, math.ceil(usage_bytes / policy.usage_headroom))
    target = math.ceil(target / MIB) * MIB
    saving = request_bytes - target
    if saving <= 0 or saving < policy.min_saving_bytes:
        return None
    if saving < policy.min_saving_fraction * request_bytes:
        return None
    new_limit = target if limit_bytes == request_bytes else limit_bytes
    return ShrinkDecision(new_request_bytes=target, new_limit_bytes=new_limit)
