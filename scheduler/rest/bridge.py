"""How REST handler threads reach the loop thread, and the CWS task hook on the loop thread.

Data flow::

    handler thread: CwsBridge.call(op) ──► _Call(op, future) ──► loop.submit_command
                                                                     │ (loop thread, ahead
                                                                     │  of watch events)
                                              op(loop) on CwsState, then flush(loop) ◄┘
                    future.result(timeout) ◄── result or CwsError

    loop thread:    SchedulerLoop ──► CwsBridge.describe / finished (TaskHook) ──► CwsState

Everything that reads or changes ``CwsState`` runs on the loop thread: request operations as
``LoopCommand``s, pod hooks from inside the loop, and a one-second ``_Tick`` (batch timeouts,
registration grace). After each, :meth:`CwsBridge.flush` executes the state's ``Effects``:
``refresh_held`` and ``redescribe`` on the loop, observations into the loop's memory model, and
the batch-timeout metric. Effects produced inside a hook (while the loop is upserting a pod)
are deferred to a ``_Flush`` command, so the loop is never re-entered.

Commands go through ``SchedulerLoop.submit_command``: the loop runs them ahead of queued watch
events, so a request is answered within a cycle even while a re-list queues tens of thousands of
events. A handler that times out cancels its command; a command whose future was cancelled
before it started is skipped, so a 503 never leaves a half-applied request behind.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from scheduler import cws
from scheduler.core import cluster, podfacts
from scheduler.rest import persist
from scheduler.runtime import memory as memory_mod
from scheduler.runtime import metrics as metrics_mod
from scheduler.runtime import workflows

log = logging.getLogger(__name__)

_T = TypeVar("_T")
_MAX_FLUSH_ROUNDS = 10


class LoopLike(Protocol):
    """The parts of ``runtime.loop.SchedulerLoop`` the REST API uses (on the loop thread)."""

    registry: workflows.WorkflowRegistry
    cache: cluster.ClusterCache
    metrics: metrics_mod.Metrics
    memory: memory_mod.MemoryModel | None
    clock: Callable[[], float]

    def refresh_held(self) -> None:
        """Re-describe every held pod."""

    def redescribe(self, uid: str) -> None:
        """Re-describe one pending pod."""


class CommandSink(Protocol):
    """Where commands for the loop thread go: ``SchedulerLoop.submit_command``."""

    def __call__(self, command: Any, /) -> None:
        """Queue ``command`` (an object with ``apply(loop)``) for the loop thread."""


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
        now = loop.clock()
        self.bridge.state.tick(now=now)
        self.bridge.flush(loop)
        if now >= self.bridge.next_save:
            self.bridge.next_save = now + self.bridge.save_interval_s
            self.bridge.save()


class CwsBridge:
    """The CWS ``TaskHook`` of the loop and the handlers' way onto the loop thread."""

    def __init__(
        self,
        state: cws.CwsState,
        *,
        submit: CommandSink,
        clock: Callable[[], float],
        timeout_s: float = 10.0,
        tick_s: float = 1.0,
        persister: persist.Persister | None = None,
        save_interval_s: float = 1.0,
        may_persist: Callable[[], bool] = lambda: True,
    ) -> None:
        """Connect ``state`` to the loop through ``submit``.

        With a ``persister``, changed executions are handed to it every ``save_interval_s``
        (on the tick) while ``may_persist()`` (the leader), and at once by :meth:`persist_now`.
        """
        self.state = state
        self.persister = persister
        self.save_interval_s = save_interval_s
        self.may_persist = may_persist
        self.next_save = 0.0
        self.submit = submit
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
        self.submit(_Call(self, op, future))
        try:
            return future.result(timeout=self.timeout_s)
        except concurrent.futures.TimeoutError:
            if future.cancel():
                raise LoopTimeoutError(
                    f"the scheduling loop did not answer within {self.timeout_s:g}s"
                ) from None
        return future.result()  # started meanwhile: it finishes quickly

    def persist_now(self, timeout_s: float = 5.0) -> bool:
        """Hand the changes made so far to the persister and wait until they are written.

        Returns:
            True when written (or nothing to write, or persistence is off), False when the
            write failed or took longer than ``timeout_s`` (it is retried in the background).
        """
        if self.persister is None or not self.may_persist():
            return True
        try:
            future = self.call(lambda loop: self.save())
            return future.result(timeout=timeout_s)
        except (LoopTimeoutError, concurrent.futures.TimeoutError):
            return False

    def save_final(self, timeout_s: float = 5.0) -> bool:
        """Store the last changes once the loop thread has stopped (a leader shutting down).

        Only call it when no thread changes the state any more. Returns True when written.
        """
        if self.persister is None or not self.state.has_changes():
            return True
        documents, removed = self.state.take_changes()
        try:
            return self.persister.submit(documents, removed).result(timeout=timeout_s)
        except concurrent.futures.TimeoutError:
            return False

    def restore(self, documents: list[tuple[str, Any]]) -> list[str]:
        """Restore stored executions on the loop thread; return the names restored.

        A document that cannot be restored is logged and skipped.
        """

        def apply(loop: LoopLike) -> list[str]:
            restored = []
            for name, document in documents:
                try:
                    restored.append(self.state.restore(document, now=loop.clock()))
                except (ValueError, cws.CwsError) as exc:
                    log.error(
                        "stored CWS execution not restored: %s",
                        getattr(exc, "message", str(exc))[:300],
                        extra={"execution": name},
                    )
            return restored

        return self.call(apply)

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
            self.submit(_Tick(self))

    # --- loop thread ------------------------------------------------------------------------

    def save(self) -> concurrent.futures.Future[bool]:
        """Hand changed executions to the persister (loop thread); its future says when written."""
        done: concurrent.futures.Future[bool] = concurrent.futures.Future()
        if self.persister is None or not self.may_persist() or not self.state.has_changes():
            done.set_result(True)
            return done
        documents, removed = self.state.take_changes()
        return self.persister.submit(documents, removed)

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
        self, facts: podfacts.PodFacts, labels: workflows.TaskLabels
    ) -> tuple[workflows.TaskLabels, bool]:
        """See ``scheduler.runtime.loop.TaskHook.describe``."""
        result = self.state.describe(facts, labels, now=self.clock())
        self._defer_flush()
        return result

    def finished(self, facts: podfacts.PodFacts, labels: workflows.TaskLabels) -> None:
        """See ``scheduler.runtime.loop.TaskHook.finished``."""
        self.state.finished(facts, labels, now=self.clock())
        self._defer_flush()

    def _defer_flush(self) -> None:
        if not self.flush_queued and self.state.has_effects():
            self.flush_queued = True
            self.submit(_Flush(self))
