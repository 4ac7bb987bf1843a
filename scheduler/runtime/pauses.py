"""Short pauses for the daemon process: garbage-collector and GIL settings, measured.

Every thread of the daemon stops while CPython's cyclic garbage collector runs, and a thread
back from an API call waits for the GIL while another one computes (up to the switch interval,
5 ms by default, per hand-over).

:func:`tune` (at start-up) lowers the GIL switch interval, so the decision thread and the bind
workers hand the interpreter over within a millisecond, and times every collection into
``wfsched_gc_pause_seconds{generation}``. :func:`freeze` (once the informers' initial LISTs are
cached) moves everything alive into the permanent generation, so later full collections stop
walking the start-up heap (modules, caches) again. The young generations keep the
interpreter's thresholds (measured on a replay, a larger young generation made each young
collection longer under load); full collections are made rarer: CPython starts one after
``threshold2`` middle-generation collections once the heap grew by a quarter, and while the
pod cache grows from nothing that was every few seconds at 200 pods/s, each one stopping every
thread for 0.3 to 1 s on a loaded machine. :data:`FULL_COLLECTION_EVERY` raises ``threshold2``:
a full collection still comes (cyclic garbage is freed), after at least that many middle ones.
"""

from __future__ import annotations

import gc
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from scheduler.runtime import metrics as metrics_mod

SWITCH_INTERVAL_S = 0.001
"""How long a thread may hold the GIL while another one waits for it."""

FULL_COLLECTION_EVERY = 100
"""Middle-generation collections between two full ones, at least (the interpreter's is 10)."""


def tune(metrics: metrics_mod.Metrics | None = None) -> None:
    """Apply the process-wide settings and, with ``metrics``, time every collection.

    Idempotent per ``metrics`` object: calling it again does not add a second callback.
    """
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_COLLECTION_EVERY)
    if metrics is None or any(getattr(cb, "metrics", None) is metrics for cb in gc.callbacks):
        return
    gc.callbacks.append(_PauseTimer(metrics))


def freeze() -> None:
    """Exempt every object alive now from later collections.

    No collection first: the daemon freezes right after its informers synced, which is when a
    benchmark or a workflow starts sending pods, and a full collection then stopped every
    thread for 0.4 to 1 s on a busy machine. The price is that cyclic garbage alive at that moment
    is never freed: a one-off of start-up leftovers.
    """
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
