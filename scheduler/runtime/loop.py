"""The shell around the scheduler's state machine: one decision thread and its effect runners.

Data flow::

    informers ──(kind, type, raw)──►  events queue  ◄── BindOutcome / DagLoaded (runners)
    REST API ──(command)──► commands queue (run first)      │
                                          │                  │
                             SchedulerLoop.run (one thread): translate raw objects,
                             feed ``state.SchedulerState``, run cycles when due
                                          │ instructions
              ┌──────────────┬────────────┼──────────────┬──────────────┐
              ▼              ▼            ▼              ▼              ▼
          binder         event sender  condition     DAG fetcher    memory saver
       (resize, label,  (EventRecorder)  writer     (ConfigMap read) (ConfigMap write)
        bind; a pool)                  (side pool)   (side pool)     (side pool)

Only the loop thread touches the state. The runners only call the API and report back
through the events queue; a bind worker always reports exactly one outcome. Bindings and
resizes are sent only while ``may_bind()`` holds: checked before each call and, through the
client's ``write_guard``, again after the rate limiter granted it. A replica that may not bind
(a standby) only applies watch events and blocks on the queue the rest of the time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import itertools
import logging
import math
import queue
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol, Unpack

from scheduler.core import decisions, interfaces, podfacts, resources, workflow
from scheduler.kube import errors as kube_errors
from scheduler.kube import keys, translate
from scheduler.runtime import eventrecorder, gangbind, growshell, workflows
from scheduler.runtime import gangs as gangs_mod
from scheduler.runtime import grow as grow_mod
from scheduler.runtime import history as history_mod
from scheduler.runtime import memory as memory_mod
from scheduler.runtime import metrics as metrics_mod
from scheduler.runtime import settings as settings_mod
from scheduler.runtime import shrink as shrink_mod
from scheduler.runtime import state as state_mod

log = logging.getLogger(__name__)

POD_EVENTS = "pods"
NODE_EVENTS = "nodes"
POD_GROUP_EVENTS = "podgroups"
NODE_USAGE_EVENTS = "node-metrics"
POD_USAGE_EVENTS = "pod-metrics"

_MAX_EVENTS_PER_TURN = 5000
_EVENTS_BETWEEN_COMMANDS = 64
_IDLE_WAIT_S = 0.5
"""Longest block on the events queue, so ticks still happen on time."""
QUEUE_METRICS_INTERVAL_S = 1.0
"""The pending-task gauges take a pass over the queue and the tracked pods, so they are
refreshed at most this often (a scrape every 15 s or more sees no difference), and within
``_IDLE_WAIT_S`` of the interval's end once something changed."""

BindOutcome = state_mod.BindOutcome
DagLoaded = state_mod.DagLoaded
TaskHook = state_mod.TaskHook


class _Wake:
    """Queued to end a blocking wait of the loop (a command or a leadership change)."""


_WAKE = _Wake()


class KubeActions(growshell.Resizer, Protocol):
    """The API calls the loop makes (implemented by ``scheduler.kube.client.KubeClient``)."""

    def bind(self, namespace: str, name: str, uid: str, node: str) -> None:
        """Create a Binding; raise an error with an ``http_status`` attribute on failure."""

    def set_pod_condition(self, namespace: str, name: str, condition: dict[str, Any]) -> None:
        """Patch one condition into ``status.conditions`` via ``pods/status``."""

    def create_event(self, **event: Unpack[eventrecorder.EventFields]) -> str | None:
        """Emit an Event (see ``eventrecorder.EventSender``); must not raise."""

    def get_configmap(self, namespace: str, name: str) -> dict[str, Any] | None:
        """Return a ConfigMap, or ``None`` when it does not exist."""

    def put_configmap(
        self,
        namespace: str,
        name: str,
        data: Mapping[str, str],
        *,
        labels: Mapping[str, str],
        field_manager: str = ...,
    ) -> Any:
        """Create or update the ``data`` keys of a ConfigMap owned by ``field_manager``."""


class LoopCommand(Protocol):
    """Work another thread hands to the loop thread (``SchedulerLoop.submit_command``)."""

    def apply(self, loop: SchedulerLoop) -> None:
        """Run on the loop thread with exclusive access to the loop's state."""


@dataclass(slots=True)
class LoopStats:
    """The shell's counters, beside the state machine's (``loop.state.stats``)."""

    state: state_mod.Stats
    turns: int = 0
    """Iterations of ``run``: bounded by events, ticks and cycles, never a busy spin."""
    handler_errors: int = 0
    """Stimuli whose handling raised (the catch-all of ``_handle``); zero in a healthy run."""
    last_cycle_s: float = 0.0
    cycle_times: list[float] = field(default_factory=list)

    @property
    def cycles(self) -> int:
        """Cycles that ran to their end."""
        return self.state.cycles

    @property
    def binds_ok(self) -> int:
        """Bindings the API server accepted."""
        return self.state.binds_ok

    @property
    def binds_failed(self) -> int:
        """Bindings refused or failed (abandoned ones not counted)."""
        return self.state.binds_failed

    @property
    def binds_abandoned(self) -> int:
        """Binds dropped unsent because leadership was lost."""
        return self.state.binds_abandoned

    @property
    def cycle_failures(self) -> int:
        """Cycles that raised."""
        return self.state.cycle_failures


class SchedulerLoop:
    """Runs the state machine on one thread and carries out its instructions."""

    def __init__(
        self,
        *,
        settings: settings_mod.Settings,
        kube: KubeActions,
        policies: interfaces.Policies,
        metrics: metrics_mod.Metrics,
        events: queue.Queue[Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        may_bind: Callable[[], bool] = lambda: True,
        memory: memory_mod.MemoryModel | None = None,
        memory_store: tuple[str, str] | None = None,
        memory_save_interval_s: float | None = None,
        history: history_mod.WorkflowHistory | None = None,
    ) -> None:
        if memory_save_interval_s is not None:
            settings = dataclasses.replace(settings, memory_save_interval_s=memory_save_interval_s)
        self.settings = settings
        self.kube = kube
        self.metrics = metrics
        self.events: queue.Queue[Any] = events if events is not None else queue.Queue()
        self.commands: queue.Queue[LoopCommand] = queue.Queue()
        """Work from other threads (the REST API), run ahead of queued watch events."""
        self.clock = clock
        self.wall_clock = wall_clock
        self.may_bind = may_bind
        self.memory_store = memory_store
        self._store_order = itertools.count()
        self._store_lock = threading.Lock()
        self._store_written: dict[str, int] = {}
        """The order of the last save applied, per store key."""
        self.state = state_mod.SchedulerState(
            settings=settings,
            policies=policies,
            metrics=metrics,
            memory=memory,
            rng=random.Random(settings.seed),
            history=history,
        )
        self.stats = LoopStats(state=self.state.stats)
        self._queue_metrics_at = -math.inf
        self._queue_metrics_stale = True
        self._stage_children: dict[str, Any] = {}
        self._node_raw: dict[str, Mapping[str, Any]] = {}
        self._usage: dict[str, resources.Resources] = {}
        self._pool = ThreadPoolExecutor(
            max_workers=settings.bind_workers, thread_name_prefix="wfsched-bind"
        )
        # Events, conditions, DAG reads and state saves never wait in line behind binds, and
        # binds never wait behind them.
        self._side_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="wfsched-side")
        self.recorder = eventrecorder.EventRecorder(
            kube.create_event,
            on_outcome=lambda event_type, outcome: metrics.events.labels(
                type=event_type, outcome=outcome
            ).inc(),
        )

    # --- the state, as other components see it ------------------------------------------------

    @property
    def policies(self) -> interfaces.Policies:
        """The policies cycles run with (the CWS API wraps them)."""
        return self.state.policies

    @policies.setter
    def policies(self, value: interfaces.Policies) -> None:
        self.state.policies = value

    @property
    def queue(self) -> Any:
        """The scheduling queue (read only outside the loop thread's tests)."""
        return self.state.queue

    @property
    def cache(self) -> Any:
        """The cluster cache."""
        return self.state.cache

    @property
    def registry(self) -> workflows.WorkflowRegistry:
        """The workflow registry (DAGs per run)."""
        return self.state.registry

    @property
    def memory(self) -> memory_mod.MemoryModel | None:
        """The memory model, when memory scaling is on."""
        return self.state.memory

    @property
    def task_hooks(self) -> list[state_mod.TaskHook]:
        """Hooks consulted for every pending and finished pod of ours, in order."""
        return self.state.task_hooks

    @property
    def max_in_flight_binds(self) -> int:
        """Binds handed to the workers and not yet reported, at most."""
        return self.state.max_in_flight_binds

    def is_ours(self, facts: podfacts.PodFacts) -> bool:
        """True when the pod names one of our schedulers and is in a watched namespace."""
        return self.state.is_ours(facts)

    def labels_of(self, facts: podfacts.PodFacts) -> tuple[workflows.TaskLabels, bool]:
        """Return the workflow labels of a pod of ours after every hook, and whether held."""
        return self.state.labels_of(facts)

    def refresh_held(self) -> None:
        """Re-describe held pods (call after a batch was released or a task registered)."""
        self._execute(self.state.refresh_held(now=self.clock()))

    def redescribe(self, uid: str) -> None:
        """Run the task hooks again for a pending pod whose registration changed."""
        self._execute(self.state.redescribe(uid, now=self.clock()))

    def active_runs(self) -> set[workflow.RunId]:
        """Runs with a task held, queued, set aside, being bound or running."""
        return self.state.active_runs()

    def evict_idle(self, now: float) -> None:
        """Forget what idle runs and departed tasks left behind (see the state machine)."""
        self.state.evict_idle(now)

    # --- the thread ---------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Process stimuli and run cycles until ``stop`` is set.

        Never raises on bad input or a failing cycle. Blocks on the events queue whenever no
        cycle can run now (nothing changed, not leading, every bind slot taken, or cycles
        backing off after a failure), so an idle or standby replica uses no CPU.
        """
        while not stop.is_set():
            self.stats.turns += 1
            self._run_commands()
            now = self.clock()
            if not self.state.cycle_due(now=now, leading=self.may_bind()):
                timeout = min(max(0.0, self.state.wake_at(now=now) - now), _IDLE_WAIT_S)
                with contextlib.suppress(queue.Empty):
                    self._handle(self.events.get(timeout=timeout))
            self._drain()
            leading = self.may_bind()
            self._execute(self.state.tick(now=self.clock(), leading=leading))
            if self.state.cycle_due(now=self.clock(), leading=leading):
                self._guarded_cycle()
            self._refresh_queue_metrics()
        self.shutdown()

    def _guarded_cycle(self) -> None:
        """Run a cycle; a defect that escapes the state machine is logged, never fatal.

        ``SchedulerState.cycle`` already handles policies that raise; this catches what it
        does not (a bug in carrying out decisions), so the daemon keeps scheduling.
        """
        try:
            self.run_one_cycle()
        except Exception:
            self.stats.handler_errors += 1
            self.metrics.event_handling_errors.inc()
            log.exception("scheduling cycle failed outside the policies")

    def run_one_cycle(self) -> decisions.CycleResult | None:
        """Run one scheduling cycle now and carry out its decisions (never raises)."""
        started = time.perf_counter()
        result, instructions = self.state.cycle(now=self.clock(), leading=self.may_bind())
        if result is not None:
            elapsed = time.perf_counter() - started
            self.stats.last_cycle_s = elapsed
            if len(self.stats.cycle_times) < 100_000:
                self.stats.cycle_times.append(elapsed)
            self.metrics.cycle_duration.observe(elapsed)
            for _bind in result.binds:
                self._stage("cycle", elapsed)
        self._execute(instructions)
        self._queue_metrics_stale = True
        self._refresh_queue_metrics()
        return result

    def _refresh_queue_metrics(self) -> None:
        """Refresh the pending-task gauges if something changed and the interval passed.

        At most once per :data:`QUEUE_METRICS_INTERVAL_S` of the loop's clock.
        """
        now = self.clock()
        if self._queue_metrics_stale and now - self._queue_metrics_at >= QUEUE_METRICS_INTERVAL_S:
            self._queue_metrics_at = now
            self._queue_metrics_stale = False
            self.state.update_queue_metrics(now=now, wall_now=self.wall_clock())

    def submit_command(self, command: LoopCommand) -> None:
        """Hand ``command`` to the loop thread; it runs ahead of queued watch events.

        Thread-safe. The command's ``apply`` runs on the loop thread; an exception it raises is
        logged and counted, never propagated.
        """
        self.commands.put(command)
        self.events.put(_WAKE)

    def wake(self) -> None:
        """Ask for a cycle and end a blocking wait at once (leadership gained). Thread-safe."""
        self.events.put(_WAKE)
        self.commands.put(_MarkDirty())

    def shutdown(self, *, event_timeout_s: float = 5.0) -> None:
        """Wait for in-flight binds and side effects, and queued Events (``event_timeout_s``).

        The loop cannot run again afterwards.
        """
        self._pool.shutdown(wait=True, cancel_futures=False)
        self._side_pool.shutdown(wait=True, cancel_futures=False)
        self.recorder.close(timeout=event_timeout_s)

    def save_stores_now(self) -> None:
        """Write the memory observations and the workflow history where they changed, here.

        For shutdown, once the loop thread has stopped, so nothing learned since the last
        periodic save is lost. Failures are logged, never raised.
        """
        if self.memory_store is None:
            return
        for save in self.state.stores_to_save():
            try:
                self._write_store(save, next(self._store_order))
            except Exception:  # shutting down: a lost save costs only what it held
                log.warning("could not store %s on shutdown", type(save).__name__, exc_info=True)

    def _run_commands(self) -> None:
        while True:
            try:
                command = self.commands.get_nowait()
            except queue.Empty:
                return
            self._handle(command)

    def _drain(self) -> None:
        for handled in range(_MAX_EVENTS_PER_TURN):
            if handled % _EVENTS_BETWEEN_COMMANDS == 0:
                self._run_commands()
            try:
                item = self.events.get_nowait()
            except queue.Empty:
                return
            self._handle(item)

    # --- stimuli ------------------------------------------------------------------------------

    def _handle(self, item: Any) -> None:
        """Turn one queued item into a stimulus of the state machine (never raises)."""
        try:
            if item is _WAKE:
                return
            self._queue_metrics_stale = True
            now = self.clock()
            if isinstance(item, BindOutcome):
                if item.reported_at == item.reported_at:  # not NaN
                    self._stage("bind_report", now - item.reported_at)
                self._execute(self.state.bind_reported(item, now=now))
            elif isinstance(item, grow_mod.GrowReported):
                self.state.grow_reported(item)
            elif isinstance(item, shrink_mod.ShrinkReported):
                self.state.shrink_reported(item)
            elif isinstance(item, DagLoaded):
                self._execute(self.state.dag_loaded(item))
            elif hasattr(item, "apply") and callable(item.apply):
                item.apply(self)
            elif isinstance(item, tuple) and len(item) in (3, 4):
                kind, event_type, obj = item[:3]
                arrived = float(item[3]) if len(item) == 4 else None
                if arrived is not None and math.isnan(arrived):
                    arrived = None  # from a LIST: no delivery time
                if kind == POD_EVENTS:
                    self._on_pod(event_type, obj, now, arrived)
                elif kind == NODE_EVENTS:
                    self._on_node(event_type, obj)
                elif kind == POD_GROUP_EVENTS:
                    self._on_pod_group(event_type, obj, now)
                elif kind == NODE_USAGE_EVENTS:
                    self._on_node_usage(obj)
                elif kind == POD_USAGE_EVENTS:
                    self._on_pod_usage(obj)
        except Exception:  # one bad stimulus must never stop scheduling
            self.stats.handler_errors += 1
            self.metrics.event_handling_errors.inc()
            log.exception("event handling failed", extra={"event": repr(item)[:300]})

    def _stage(self, stage: str, seconds: float) -> None:
        """Observe one stage of a pod's way to binding (``metrics.POD_STAGES``)."""
        child = self._stage_children.get(stage)
        if child is None:  # resolved once per stage: ``labels()`` costs a lock and a lookup
            child = self._stage_children[stage] = self.metrics.pod_stage_duration.labels(stage)
        child.observe(max(0.0, seconds))

    def _on_pod(
        self, event_type: str, obj: Mapping[str, Any], now: float, arrived: float | None = None
    ) -> None:
        try:
            facts = translate.pod_facts(obj)
        except ValueError as exc:
            log.warning("ignoring pod event without identity: %s", exc)
            return
        if arrived is not None:
            self._stage("event_queue", now - arrived)
            if (
                event_type == "ADDED"
                and not facts.node_name
                and facts.created > 0
                and self.state.phase_of(facts.ref.uid) is None
                and self.state.is_ours(facts)
            ):
                arrived_wall = self.wall_clock() - (now - arrived)
                self._stage("watch_delivery", arrived_wall - facts.created)
        self._execute(self.state.pod_changed(facts, deleted=event_type == "DELETED", now=now))

    def _on_pod_group(self, event_type: str, obj: Mapping[str, Any], now: float) -> None:
        try:
            info = translate.pod_group_info(obj)
        except ValueError as exc:
            log.warning("ignoring PodGroup event without identity: %s", exc)
            return
        deleted = event_type == "DELETED"
        self._execute(self.state.pod_group_changed(info, deleted=deleted, now=now))

    def _on_node(self, event_type: str, obj: Mapping[str, Any]) -> None:
        name = str((obj.get("metadata") or {}).get("name") or "")
        if not name:
            return
        if event_type == "DELETED":
            self._node_raw.pop(name, None)
            self.state.node_changed(name, None)
            return
        self._node_raw[name] = obj
        info, problems = translate.node_info(obj, self._usage.get(name))
        if problems:
            log.warning("node %s: %s", name, "; ".join(map(str, problems)))
        self.state.node_changed(name, info)

    def _on_node_usage(self, items: Any) -> None:
        usage: dict[str, resources.Resources] = {}
        for item in items or ():
            name = str((item.get("metadata") or {}).get("name") or "")
            value = translate.usage_from_metrics(item)
            if name and value is not None:
                usage[name] = value
        self._usage = usage
        self.state.node_usage_changed(
            [translate.node_info(raw, usage.get(name))[0] for name, raw in self._node_raw.items()]
        )

    def _on_pod_usage(self, items: Any) -> None:
        peaks: dict[tuple[str, str], int] = {}
        for item in items or ():
            meta = item.get("metadata") or {}
            total = 0
            for container in item.get("containers") or ():
                usage = translate.usage_from_metrics(container)
                total += usage.memory_bytes if usage else 0
            key = (str(meta.get("namespace")), str(meta.get("name")))
            peaks[key] = max(total, peaks.get(key, 0))
        self._execute(self.state.pod_usage(peaks, leading=self.may_bind()))

    # --- effect runners -------------------------------------------------------------------------

    def _execute(self, instructions: Iterable[state_mod.Instruction]) -> None:
        for instruction in instructions:
            if isinstance(instruction, state_mod.StartBind):
                self._pool.submit(self._bind_worker, instruction, self.clock())
            elif isinstance(instruction, gangs_mod.StartGangBind):
                self._pool.submit(self._gang_bind_worker, instruction)
            elif isinstance(instruction, state_mod.RecordEvent):
                self.recorder.record(
                    namespace=instruction.namespace,
                    pod_name=instruction.name,
                    pod_uid=instruction.uid,
                    reason=instruction.reason,
                    note=instruction.note,
                    event_type=instruction.event_type,
                    action=instruction.action,
                    regarding_kind=instruction.regarding_kind,
                )
            elif isinstance(instruction, state_mod.SetCondition):
                condition = {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": instruction.reason,
                    "message": instruction.message,
                    "lastTransitionTime": datetime.datetime.fromtimestamp(
                        self.wall_clock(), datetime.UTC
                    ).strftime("%Y-%m-%dT%H:%M:%SZ"),
                }
                self._submit_side_effect(
                    self.kube.set_pod_condition, instruction.namespace, instruction.name, condition
                )
            elif isinstance(instruction, state_mod.FetchDag):
                self._submit_side_effect(self._fetch_dag, instruction.run, instruction.ref)
            elif isinstance(instruction, grow_mod.GrowMemory | grow_mod.GrowNotice):
                self._grow(instruction)
            elif isinstance(instruction, shrink_mod.ShrinkMemory):
                self._submit_side_effect(
                    growshell.shrink, self.kube, self.recorder, self.events, instruction
                )
            elif (
                isinstance(instruction, state_mod.SaveMemory | state_mod.SaveHistory)
                and self.memory_store is not None
            ):
                self._save_store(instruction)

    def _submit_side_effect(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        def call() -> None:
            try:
                fn(*args, **kwargs)
            except Exception:  # side effects (events, conditions) never stop scheduling
                log.warning("side effect %s failed", getattr(fn, "__name__", fn), exc_info=True)

        with contextlib.suppress(RuntimeError):  # pool already shut down
            self._side_pool.submit(call)

    def _grow(self, instruction: grow_mod.GrowMemory | grow_mod.GrowNotice) -> None:
        """Carry out grow-in-place (``scheduler.runtime.growshell``) off the loop thread."""
        if isinstance(instruction, grow_mod.GrowNotice):
            growshell.notify(self.recorder, instruction)
            return
        self._submit_side_effect(
            growshell.resize, self.kube, self.recorder, self.events, instruction
        )

    def _save_store(self, instruction: state_mod.SaveMemory | state_mod.SaveHistory) -> None:
        """Apply one key of the store ConfigMap under that key's own field manager.

        Server-side apply drops only the fields the same manager applied before and left out
        now, so saving one key never removes the other.
        """
        self._submit_side_effect(self._write_store, instruction, next(self._store_order))

    def _write_store(
        self, instruction: state_mod.SaveMemory | state_mod.SaveHistory, order: int
    ) -> None:
        """Apply one save unless a later save of the same key was applied already.

        Saves run on several threads; ``order`` is the order the state handed them out in.
        """
        assert self.memory_store is not None
        namespace, name = self.memory_store
        if isinstance(instruction, state_mod.SaveMemory):
            key, manager = memory_mod.STORE_KEY, keys.FIELD_MANAGER
        else:
            key, manager = history_mod.HISTORY_KEY, keys.HISTORY_FIELD_MANAGER
        with self._store_lock:
            if order < self._store_written.get(key, -1):
                return
            self._store_written[key] = order
            self.kube.put_configmap(
                namespace,
                name,
                {key: instruction.text},
                labels={
                    "app.kubernetes.io/name": "wfsched",
                    "app.kubernetes.io/component": "memory",
                },
                field_manager=manager,
            )

    def _fetch_dag(self, run: workflow.RunId, ref: tuple[str, str]) -> None:
        text: str | None = None
        found: tuple[str, str, str] | None = None
        try:
            cm = self.kube.get_configmap(*ref)
            if cm is not None:
                uid = (cm.get("metadata") or {}).get("uid")
                found = (ref[0], ref[1], uid if isinstance(uid, str) else "")
                value = (cm.get("data") or {}).get(keys.DAG_CONFIGMAP_KEY)
                text = value if isinstance(value, str) else None
        except Exception:  # reported as a missing document
            log.exception("reading DAG ConfigMap %s failed", "/".join(ref))
        self.events.put(DagLoaded(run=run, text=text, configmap=found))

    def _bind_worker(self, start: state_mod.StartBind, submitted: float) -> None:
        """Resize (if planned) and bind; always report exactly one outcome to the loop."""
        self._stage("bind_pool_wait", self.clock() - submitted)
        try:
            outcome = self._resize_and_bind(start)
        except Exception as exc:  # an unexpected error must not leave the pod assumed forever
            log.exception("bind worker failed", extra={"task": str(start.bind.task)})
            outcome = BindOutcome(bind=start.bind, ok=False, reason=str(exc)[:300])
        self.events.put(dataclasses.replace(outcome, reported_at=self.clock()))

    def _limiter_waited_s(self, *, reset: bool = False) -> float:
        """Seconds this worker thread waited for rate-limiter tokens (0 without a limiter)."""
        limiter = getattr(self.kube, "limiter", None)
        waited = getattr(limiter, "thread_waited_s", None)
        return float(waited(reset=reset)) if callable(waited) else 0.0

    def _gang_bind_worker(self, start: gangs_mod.StartGangBind) -> None:
        """Bind a gang's members all or nothing (``gangbind``); one outcome per member."""
        outcomes = gangbind.bind_gang(
            start,
            bind_one=self._resize_and_bind,
            delete_pod=getattr(self.kube, "delete_pod", None),
        )
        for outcome in outcomes:
            self.events.put(outcome)

    def _resize_and_bind(self, start: state_mod.StartBind) -> BindOutcome:
        bind = start.bind
        assert bind.pod is not None
        started = time.perf_counter()
        self._limiter_waited_s(reset=True)
        # Leadership is checked right before each call (and by the client's write guard after
        # the rate limiter): a bind queued before the lease was lost is never sent.
        if start.resize is not None and start.container:
            if not self.may_bind():
                return BindOutcome(bind=bind, ok=False, abandoned=True)
            refused = self._resize_before_bind(start, start.resize)
            if refused is not None:
                return refused
        if not self.may_bind():
            return BindOutcome(bind=bind, ok=False, abandoned=True)
        bind_started = time.perf_counter()
        waited_before = self._limiter_waited_s()
        try:
            self.kube.bind(bind.pod.namespace, bind.pod.name, bind.pod.uid, bind.node)
        except kube_errors.NotSentError:  # leadership was lost while it waited for a token
            return BindOutcome(bind=bind, ok=False, abandoned=True)
        except Exception as exc:  # classified by HTTP status in the state machine
            return BindOutcome(
                bind=bind,
                ok=False,
                status=int(getattr(exc, "http_status", 0) or 0),
                reason=str(exc)[:300],
                seconds=time.perf_counter() - started,
            )
        seconds = time.perf_counter() - started
        waited = self._limiter_waited_s()
        self._stage("rate_limiter_wait", waited)
        self._stage("bind_call", time.perf_counter() - bind_started - (waited - waited_before))
        if start.created > 0:
            self.metrics.pod_scheduling_latency.observe(max(0.0, self.wall_clock() - start.created))
        self.recorder.record(
            namespace=bind.pod.namespace,
            pod_name=bind.pod.name,
            pod_uid=bind.pod.uid,
            reason="Scheduled",
            note=f"Successfully assigned {bind.pod.namespace}/{bind.pod.name} to {bind.node}",
        )
        return BindOutcome(bind=bind, ok=True, seconds=seconds)

    def _resize_before_bind(
        self, start: state_mod.StartBind, resize: decisions.Resize
    ) -> BindOutcome | None:
        """Apply the planned memory; return an outcome when it was refused or not sent."""
        bind = start.bind
        assert bind.pod is not None
        patch = translate.memory_resize_patch(
            start.container, resize.memory_bytes, set_limit=start.resize_limit
        )
        try:
            self.kube.resize_pod(bind.pod.namespace, bind.pod.name, patch)
        except kube_errors.NotSentError:
            return BindOutcome(bind=bind, ok=False, abandoned=True)
        except Exception as exc:  # refused or failed: bind later with the original request
            status = int(getattr(exc, "http_status", 0) or 0)
            return BindOutcome(
                bind=bind, ok=False, status=status, reason=str(exc)[:300], resize_refused=True
            )
        self.metrics.resizes.labels(result="applied").inc()
        for _attempt in range(2):  # the label matters to nf-cws: one retry
            try:
                self.kube.patch_pod_metadata(
                    bind.pod.namespace,
                    bind.pod.name,
                    labels={keys.CWS_MEMORY_SCALED_LABEL: "true"},
                    annotations={
                        keys.ORIGINAL_MEMORY_ANNOTATION: str(resize.original_memory_bytes)
                    },
                )
                break
            except Exception:  # logged; the resize itself stands
                log.warning("labelling resized pod %s failed", bind.pod.name, exc_info=True)
        return None


@dataclass(frozen=True, slots=True)
class _MarkDirty:
    """A command: ask the state machine for a cycle (leadership was gained)."""

    def apply(self, loop: SchedulerLoop) -> None:
        loop.state.mark_dirty()
