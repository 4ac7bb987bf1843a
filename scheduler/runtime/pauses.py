"""Short pauses for the daemon process: garbage-collector and GIL settings, measured.

Every thread of the daemon stops while CPython's cyclic garbage collector runs. With the
interpreter's defaults (a young collection every 700 allocations, a full one whenever enough
objects survived) a replay of a 200-task workflow spent over a second in collections, single
full collections taking hundreds of milliseconds on a busy machine: time in which no watch event
is handled and no Binding is sent. And a bind worker back from its request waits up to the GIL
switch interval (5 ms by default) for each hand-over while another thread computes.

:func:`tune` (at start-up) makes young collections rarer, so the short-lived objects of watch
events die before they are ever scanned, lowers the GIL switch interval, and times every
collection into ``wfsched_gc_pause_seconds{generation}``. :func:`freeze` (once the informers'
initial LISTs are cached) moves everything alive into the permanent generation, so full
collections stop walking the start-up heap (modules, caches) again and again.
"""

from __future__ import annotations

import gc
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from scheduler.runtime import metrics as metrics_mod

GC_THRESHOLDS = (20_000, 20, 20)
"""Allocations between young collections, and collections between older ones."""
SWITCH_INTERVAL_S = 0.001
"""How long a thread may hold the GIL while another one waits for it."""


def tune(metrics: metrics_mod.Metrics | None = None) -> None:
    """Apply the process-wide settings and, with ``metrics``, time every collection.

    Idempotent per ``metrics`` object: calling it again does not add a second callback.
    """
    gc.set_threshold(*GC_THRESHOLDS)
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    if metrics is None or any(getattr(cb, "metrics", None) is metrics for cb in gc.callbacks):
        return
    gc.callbacks.append(_PauseTimer(metrics))


def freeze() -> None:
    """Collect once, then exempt every object alive now from later collections."""
    gc.collect()
    gc.freeze()


class _PauseTimer:
    """A ``gc.callbacks`` entry observing each collection's wall time."""

    def __init__(self, metrics: metrics_mod.Metrics) -> None:
        self.metrics = metrics
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        generation = str(info.get("generation", "?"))
        elapsed = time.perf_counter() - self._started
        self.metrics.gc_pause.labels(generation=generation).observe(elapsed)
