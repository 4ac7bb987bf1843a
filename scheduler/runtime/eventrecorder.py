"""Kubernetes Events, emitted off the scheduling path with a bounded backlog.

The loop calls ``EventRecorder.record`` and moves on; worker threads make the API calls. Under
a burst (10,000 pods bound in a minute) the backlog is bounded, so an Event is either written
within seconds of what it reports or dropped and counted, never written minutes late:

* ``Warning`` Events (bad input, unschedulable pods) wait in their own queue, are sent first
  and are dropped only when that queue is full too;
* an Event identical to one still waiting (same object, reason and note) is coalesced;
* ``Normal`` Events (one ``Scheduled`` per bound pod) are sent by at most ``normal_workers``
  threads at a time (default one, like kube-scheduler's single event sink): at hundreds of pods
  a second they take one thread's share of the process's CPU, not one per worker, and leave the
  rest to the decision thread and the bind workers;
* nothing here ever raises into the caller or blocks it.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable
from typing import NotRequired, Protocol, TypedDict, Unpack

log = logging.getLogger(__name__)

WARNING = "Warning"


class EventFields(TypedDict):
    """One Event: the keyword arguments of ``EventRecorder.record`` and of an ``EventSender``."""

    namespace: str
    pod_name: str
    """The object the Event is about (a pod unless ``regarding_kind`` says otherwise)."""
    pod_uid: str
    reason: str
    note: str
    event_type: NotRequired[str]
    """``Normal`` (the default) or ``Warning``."""
    action: NotRequired[str]
    """What wfsched did (default ``Scheduling``)."""
    regarding_kind: NotRequired[str]
    """Kind of the object (default ``Pod``)."""


class EventSender(Protocol):
    """Sends one Event to the API server: ``KubeClient.create_event`` is the implementation.

    Must not raise, block for long or retry; returns ``sent``, ``failed`` or ``dropped``
    (``None`` counts as ``sent``).
    """

    def __call__(self, **event: Unpack[EventFields]) -> str | None:
        """Send ``event``; return the outcome."""


_DEFAULTS: dict[str, str] = {
    "event_type": "Normal",
    "action": "Scheduling",
    "regarding_kind": "Pod",
}
_Queued = tuple[tuple[str, str], ...]
"""An Event as sorted (field, value) pairs with the defaults filled in: equal Events are equal."""


class EventRecorder:
    """A bounded, coalescing Event queue drained by ``workers`` threads.

    ``emit`` sends each Event (see :class:`EventSender`). ``on_outcome(event_type, outcome)`` is
    called once per recorded Event with the outcome of ``emit``, or with ``queue_full`` /
    ``coalesced`` / ``closed`` when the Event never reached ``emit``. At most
    ``normal_workers`` of the ``workers`` send ``Normal`` Events at a time; any may send a
    ``Warning``.
    """

    def __init__(
        self,
        emit: EventSender,
        *,
        workers: int = 4,
        max_queued: int = 1000,
        max_queued_warnings: int = 5000,
        normal_workers: int = 1,
        on_outcome: Callable[[str, str], None] | None = None,
    ) -> None:
        self._emit = emit
        self._normal_workers = max(1, normal_workers)
        self._normal_busy = 0
        self._max = {WARNING: max_queued_warnings, "Normal": max_queued}
        self._queues: dict[str, collections.deque[_Queued]] = {
            WARNING: collections.deque(),
            "Normal": collections.deque(),
        }
        self._waiting: set[_Queued] = set()
        self._on_outcome = on_outcome
        self._cond = threading.Condition()
        self._closed = False
        self._busy = 0
        self._threads = [
            threading.Thread(target=self._work, name=f"wfsched-events-{i}", daemon=True)
            for i in range(max(1, workers))
        ]
        for thread in self._threads:
            thread.start()

    def record(self, **fields: Unpack[EventFields]) -> bool:
        """Queue an Event; return False when it was dropped or coalesced. Never blocks."""
        event: _Queued = tuple(sorted(dict(_DEFAULTS, **fields).items()))
        event_type = fields.get("event_type", "Normal")
        lane = WARNING if event_type == WARNING else "Normal"
        with self._cond:
            if self._closed:
                outcome = "closed"
            elif event in self._waiting:
                outcome = "coalesced"
            elif len(self._queues[lane]) >= self._max[lane]:
                outcome = "queue_full"
            else:
                self._queues[lane].append(event)
                self._waiting.add(event)
                self._cond.notify()
                return True
        self._report(event_type, outcome)
        return False

    @property
    def backlog(self) -> int:
        """Events waiting for a worker."""
        with self._cond:
            return sum(len(q) for q in self._queues.values())

    def flush(self, timeout: float) -> bool:
        """Wait until every queued Event was handed to ``emit`` and returned."""
        with self._cond:
            return self._cond.wait_for(
                lambda: self._busy == 0 and not any(self._queues.values()), timeout
            )

    def close(self, timeout: float = 5.0) -> None:
        """Stop accepting Events, send what is queued for up to ``timeout`` s, stop workers."""
        self.flush(timeout)
        with self._cond:
            self._closed = True
            dropped = [e for q in self._queues.values() for e in q]
            for q in self._queues.values():
                q.clear()
            self._waiting.clear()
            self._cond.notify_all()
        for event in dropped:
            self._report(dict(event)["event_type"], "closed")
        for thread in self._threads:
            thread.join(timeout=1.0)

    def _next(self) -> _Queued | None:
        with self._cond:
            while True:
                if self._closed:
                    return None
                lanes = [WARNING]
                if self._normal_busy < self._normal_workers:
                    lanes.append("Normal")
                for lane in lanes:
                    if self._queues[lane]:
                        event = self._queues[lane].popleft()
                        self._waiting.discard(event)
                        self._busy += 1
                        if lane == "Normal":
                            self._normal_busy += 1
                        return event
                self._cond.wait()

    def _work(self) -> None:
        while (queued := self._next()) is not None:
            event = dict(queued)
            outcome = "failed"
            try:
                outcome = self._emit(**event) or "sent"
            except Exception:  # emit must not raise; if it does, the worker survives
                log.warning("event emission raised", exc_info=True)
            finally:
                with self._cond:
                    self._busy -= 1
                    if event["event_type"] != WARNING:
                        self._normal_busy -= 1
                    self._cond.notify_all()
            self._report(event["event_type"], outcome)

    def _report(self, event_type: str, outcome: str) -> None:
        if self._on_outcome is None:
            return
        try:
            self._on_outcome(event_type, outcome)
        except Exception:
            log.warning("event outcome callback failed", exc_info=True)
