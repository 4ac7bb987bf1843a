"""How REST handler threads reach the loop thread, and the CWS task hook on the loop thread.

Data flow::

    handler thread: CwsBridge.call(op) ──► _Call(op, future) ──► loop.events
                                                                     │ (loop thread)
                                              op(loop) on CwsState, then flush(loop) ◄┘
                    future.result(timeout) ◄── result or CwsError

    loop thread:    SchedulerLoop ──► CwsBridge.describe / finished (TaskHook) ──► CwsState

Everything that reads or changes ``CwsState`` runs on the loop thread: request operations as
``LoopCommand``s, pod hooks from inside the loop, and a one-second ``_Tick`` (batch timeouts,
registration grace). After each, :meth:`CwsBridge.flush` executes the state's ``Effects``:
``refresh_held`` and ``redescribe`` on the loop, observations into the loop's memory model, and
the batch-timeout metric. Effects produced inside a hook (while the loop is upserting a pod)
are deferred to a ``_Flush`` command, so the loop is never re-entered.

A handler that times out cancels its command; a command whose future was cancelled before it
started is skipped, so a 503 never leaves a half-applied request behind.
"""

from __future__ import annotations

import concurrent.futures
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from scheduler import cws, workflows
from scheduler import memory as memory_mod
from scheduler import metrics as metrics_mod
from scheduler.core import cluster
from scheduler.kube import translate

log = logging.getLogger(__name__)

_T = TypeVar("_T")
_MAX_FLUSH_ROUNDS = 10


class LoopLike(Protocol):
    """The parts of ``scheduler.loop.SchedulerLoop`` the REST API uses (on the loop thread)."""

    registry: workflows.WorkflowRegistry
    cache: cluster.ClusterCache
    metrics: metrics_mod.Metrics
    memory: memory_mod.MemoryModel | None
    clock: Callable[[], float]

    def refresh_held(self) -> None:
        """Re-describe every held pod."""

    def redescribe(self, uid: str) -> None:
        """Re-describe one pending pod."""


class LoopTimeoutError(Exception):
    """The loop thread did not run a command in time."""


class _Call:
    """A request operation queued for the loop thread."""

    __slots__ = ("bridge", "future", "op")

    def __init__(
        self,
        bridge: CwsBridge,
        op: Callable[[LoopLike], Any],
        future: concurrent.futures.Future[Any],
    ) -> None:
        self.bridge = bridge
        self.op = op
        self.future = future

    def apply(self, loop: LoopLike) -> None:
        if not self.future.set_running_or_notify_cancel():
            return  # the handler gave up before the loop got here: do nothing
        try:
            result = self.op(loop)
        except BaseException as exc:  # handed to the waiting handler thread
            self.bridge.flush(loop)
            self.future.set_exception(exc)
            return
        self.bridge.flush(loop)
        self.future.set_result(result)


class _Flush:
    """Executes effects produced inside a hook, after the loop finished that event."""

    __slots__ = ("bridge",)

    def __init__(self, bridge: CwsBridge) -> None:
        self.bridge = bridge

    def apply(self, loop: LoopLike) -> None:
        self.bridge.flush_queued = False
        self.bridge.flush(loop)


class _Tick:
    """Time passes: batch timeouts and registration grace periods."""

    __slots__ = ("bridge",)

    def __init__(self, bridge: CwsBridge) -> None:
        self.bridge = bridge

    def apply(self, loop: LoopLike) -> None:
        self.bridge.state.tick(now=loop.clock())
        self.bridge.flush(loop)


class CwsBridge:
    """The CWS ``TaskHook`` of the loop and the handlers' way onto the loop thread."""

    def __init__(
        self,
        state: cws.CwsState,
        *,
        events: queue.Queue[Any],
        clock: Callable[[], float],
        timeout_s: float = 10.0,
        tick_s: float = 1.0,
    ) -> None:
        self.state = state
        self.events = events
        self.clock = clock
        self.timeout_s = timeout_s
        self.tick_s = tick_s
        self.flush_queued = False
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    # --- handler threads --------------------------------------------------------------------

    def call(self, op: Callable[[LoopLike], _T]) -> _T:
        """Run ``op`` on the loop thread and return its result (or raise its exception).

        Raises:
            LoopTimeoutError: The loop did not start the command within ``timeout_s``; it was
                cancelled and will not run.
        """
        future: concurrent.futures.Future[_T] = concurrent.futures.Future()
        self.events.put(_Call(self, op, future))
        try:
            return future.result(timeout=self.timeout_s)
        except concurrent.futures.TimeoutError:
            if future.cancel():
                raise LoopTimeoutError(
                    f"the scheduling loop did not answer within {self.timeout_s:g}s"
                ) from None
        return future.result()  # started meanwhile: it finishes quickly

    # --- ticker -----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the one-second tick (batch timeouts, registration grace)."""
        if self._ticker is not None:
            return
        self._ticker = threading.Thread(target=self._tick, name="wfsched-cws-tick", daemon=True)
        self._ticker.start()

    def stop(self) -> None:
        """Stop the tick."""
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=5)

    def _tick(self) -> None:
        while not self._stop.wait(self.tick_s):
            self.events.put(_Tick(self))

    # --- loop thread ------------------------------------------------------------------------

    def flush(self, loop: LoopLike) -> None:
        """Execute the state's effects (loop thread, outside of any hook)."""
        for _ in range(_MAX_FLUSH_ROUNDS):
            effects = self.state.take_effects()
            if not effects:
                return
            if effects.batch_timeouts:
                loop.metrics.batch_timeouts.inc(effects.batch_timeouts)
            memory = loop.memory
            for obs in effects.observations if memory is not None else ():
                assert memory is not None
                memory.observe(
                    memory.key(obs.run, obs.step), float(obs.input_bytes), float(obs.peak_bytes)
                )
            for uid in effects.redescribe:
                loop.redescribe(uid)
            if effects.refresh_held:
                loop.refresh_held()
        log.warning("CWS effects still pending after %d rounds", _MAX_FLUSH_ROUNDS)

    def describe(
        self, facts: translate.PodFacts, labels: workflows.TaskLabels
    ) -> tuple[workflows.TaskLabels, bool]:
        """See ``scheduler.loop.TaskHook.describe``."""
        result = self.state.describe(facts, labels, now=self.clock())
        self._defer_flush()
        return result

    def finished(self, facts: translate.PodFacts, labels: workflows.TaskLabels) -> None:
        """See ``scheduler.loop.TaskHook.finished``."""
        self.state.finished(facts, labels)
        self._defer_flush()

    def _defer_flush(self) -> None:
        if not self.flush_queued and self.state.has_effects():
            self.flush_queued = True
            self.events.put(_Flush(self))
