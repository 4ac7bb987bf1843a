"""Kubernetes Events, emitted off the scheduling path with a bounded backlog.

The loop calls ``EventRecorder.record`` and moves on; worker threads make the API calls. Under
a burst (10,000 pods bound in a minute) the backlog is bounded, so an Event is either written
within seconds of what it reports or dropped and counted, never written minutes late:

* ``Warning`` Events (bad input, unschedulable pods) wait in their own queue, are sent first
  and are dropped only when that queue is full too;
* an Event identical to one still waiting (same object, reason and note) is coalesced;
* nothing here ever raises into the caller or blocks it.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

WARNING = "Warning"


@dataclass(frozen=True, slots=True)
class _Event:
    namespace: str
    pod_name: str
    pod_uid: str
    reason: str
    note: str
    event_type: str
    action: str
    regarding_kind: str

    def emit_kwargs(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "pod_name": self.pod_name,
            "pod_uid": self.pod_uid,
            "reason": self.reason,
            "note": self.note,
            "event_type": self.event_type,
            "action": self.action,
            "regarding_kind": self.regarding_kind,
        }


class EventRecorder:
    """A bounded, coalescing Event queue drained by ``workers`` threads.

    ``emit`` is ``KubeClient.create_event`` (or a fake with its keyword arguments); it may
    return an outcome string (``sent``, ``failed``, ``dropped``), ``None`` counts as ``sent``.
    ``on_outcome(event_type, outcome)`` is called once per recorded Event with that outcome,
    or with ``queue_full`` / ``coalesced`` when the Event never reached ``emit``.
    """

    def __init__(
        self,
        emit: Callable[..., str | None],
        *,
        workers: int = 4,
        max_queued: int = 1000,
        max_queued_warnings: int = 5000,
        on_outcome: Callable[[str, str], None] | None = None,
    ) -> None:
        self._emit = emit
        self._max = {WARNING: max_queued_warnings, "Normal": max_queued}
        self._queues: dict[str, collections.deque[_Event]] = {
            WARNING: collections.deque(),
            "Normal": collections.deque(),
        }
        self._waiting: set[_Event] = set()
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

    def record(
        self,
        *,
        namespace: str,
        pod_name: str,
        pod_uid: str,
        reason: str,
        note: str,
        event_type: str = "Normal",
        action: str = "Scheduling",
        regarding_kind: str = "Pod",
    ) -> bool:
        """Queue an Event; return False when it was dropped or coalesced. Never blocks."""
        event = _Event(
            namespace, pod_name, pod_uid, reason, note, event_type, action, regarding_kind
        )
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
            self._report(event.event_type, "closed")
        for thread in self._threads:
            thread.join(timeout=1.0)

    def _next(self) -> _Event | None:
        with self._cond:
            while True:
                if self._closed:
                    return None
                for lane in (WARNING, "Normal"):
                    if self._queues[lane]:
                        event = self._queues[lane].popleft()
                        self._waiting.discard(event)
                        self._busy += 1
                        return event
                self._cond.wait()

    def _work(self) -> None:
        while (event := self._next()) is not None:
            outcome = "failed"
            try:
                outcome = self._emit(**event.emit_kwargs()) or "sent"
            except Exception:  # emit must not raise; if it does, the worker survives
                log.warning("event emission raised", exc_info=True)
            finally:
                with self._cond:
                    self._busy -= 1
                    self._cond.notify_all()
            self._report(event.event_type, outcome)

    def _report(self, event_type: str, outcome: str) -> None:
        if self._on_outcome is None:
            return
        try:
            self._on_outcome(event_type, outcome)
        except Exception:
            log.warning("event outcome callback failed", exc_info=True)
