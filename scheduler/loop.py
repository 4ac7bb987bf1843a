"""The scheduling loop: one decision thread turning watch events into bindings.

Data flow::

    informers ──(kind, type, obj)──►  events queue  ◄──(BindOutcome)── bind workers
                                          │
                                 SchedulerLoop.run (one thread)
                                          │  apply events: ClusterCache, WorkflowRegistry,
                                          │  SchedulingQueue
                                          ▼
                       run_cycle(snapshot, queue, dags, policies, ctx)  (pure core)
                                          │
              Bind → cache.assume + bind worker;  MarkUnschedulable → condition + Event

Only this thread touches the cache, the registry and the queue. Bind workers only call the API
and report back through the events queue. Every assume ends in a confirm (the watch sees the
pod bound), or a forget (the bind failed, the pod vanished). A 409 or 404 on bind is final for
that attempt: the assumption is forgotten, the task goes back to its place in the queue with
a backoff that doubles with each consecutive failure (409) or is dropped (404), and the watch
delivers the truth.

Leadership: cycles run only while ``may_bind()`` is true, and a bind worker checks it again
right before each resize and Binding call; a bind picked up after leadership was lost is
abandoned (never sent) and its task returns to its place without a penalty. At most
``max_in_flight_binds`` binds wait for a worker, so losing the lease drops a bounded backlog.
A replica that may not bind blocks on the events queue: a standby only applies watch events.

A cycle that raises (a policy breaking its contract) does not end the loop: the task that makes
it fail on its own is found by bisection (``core.isolate``) and set aside with an Event, retried
after a growing delay; the other tasks are scheduled by the next cycle.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import logging
import math
import queue
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from scheduler import eventrecorder, workflows
from scheduler import memory as memory_mod
from scheduler import metrics as metrics_mod
from scheduler import settings as settings_mod
from scheduler.core import (
    cluster,
    context,
    cycle,
    decisions,
    interfaces,
    isolate,
    resources,
    workflow,
)
from scheduler.core.queue import SchedulingQueue
from scheduler.kube import errors as kube_errors
from scheduler.kube import keys, translate

log = logging.getLogger(__name__)

POD_EVENTS = "pods"
NODE_EVENTS = "nodes"
NODE_USAGE_EVENTS = "node-metrics"
POD_USAGE_EVENTS = "pod-metrics"

_MAX_EVENTS_PER_TURN = 5000
_EVENTS_BETWEEN_COMMANDS = 64
_FINISHED_MEMORY = 200_000
_EVICTION_PERIOD_S = 10.0
"""Longest time between two sweeps of ``SchedulerLoop.evict_idle``."""
_IN_FLIGHT_PER_WORKER = 16
"""Binds decided but not yet reported, per bind worker, before cycles stop placing."""
_IDLE_WAIT_S = 0.5
"""Longest block on the events queue, so ticks and memory saves still happen."""


class _Wake:
    """Queued to end a blocking wait of the loop (a command or a leadership change)."""


_WAKE = _Wake()


class KubeActions(Protocol):
    """The API calls the loop makes (implemented by ``scheduler.kube.client.KubeClient``)."""

    def bind(self, namespace: str, name: str, uid: str, node: str) -> None:
        """Create a Binding; raise an error with an ``http_status`` attribute on failure."""

    def set_pod_condition(self, namespace: str, name: str, condition: dict[str, Any]) -> None:
        """Patch one condition into ``status.conditions`` via ``pods/status``."""

    def create_event(
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
    ) -> str | None:
        """Emit an Event about a pod (or the ``regarding_kind`` object ``pod_name``).

        Must not raise. May return ``sent``, ``failed`` or ``dropped``.
        """

    def get_configmap(self, namespace: str, name: str) -> dict[str, Any] | None:
        """Return a ConfigMap, or ``None`` when it does not exist."""

    def resize_pod(self, namespace: str, name: str, containers: list[dict[str, Any]]) -> Any:
        """PATCH ``pods/resize`` with the given container resources."""

    def patch_pod_metadata(
        self,
        namespace: str,
        name: str,
        *,
        labels: Mapping[str, str | None] | None = None,
        annotations: Mapping[str, str | None] | None = None,
    ) -> Any:
        """Merge labels and annotations into a pod (``None`` removes a key)."""

    def put_configmap(
        self, namespace: str, name: str, data: Mapping[str, str], *, labels: Mapping[str, str]
    ) -> Any:
        """Create or update a ConfigMap."""


class TaskHook(Protocol):
    """Lets another component (the CWS REST API) shape and hold tasks; runs on the loop thread.

    ``describe`` sees every pending pod of ours before it is queued and returns the labels to
    use (e.g. from a task registration) and whether to hold the task back (an open batch).
    Held pods are re-described when ``SchedulerLoop.refresh_held`` runs. ``finished`` sees
    every finished pod of ours once.
    """

    def describe(
        self, facts: translate.PodFacts, labels: workflows.TaskLabels
    ) -> tuple[workflows.TaskLabels, bool]:
        """Return ``(labels, held)`` for a pending pod."""

    def finished(self, facts: translate.PodFacts, labels: workflows.TaskLabels) -> None:
        """Observe a finished pod (success or failure)."""


class LoopCommand(Protocol):
    """Work another thread hands to the loop thread through the events queue."""

    def apply(self, loop: SchedulerLoop) -> None:
        """Run on the loop thread with exclusive access to the loop's state."""


@dataclass(frozen=True, slots=True)
class BindOutcome:
    """A bind worker's report (pushed onto the events queue)."""

    bind: decisions.Bind
    ok: bool
    status: int = 0
    reason: str = ""
    seconds: float = 0.0
    resize_refused: bool = False
    """The memory resize before the bind was refused; the pod was not bound."""
    abandoned: bool = False
    """Leadership was lost before the calls were made: nothing was sent."""


@dataclass(frozen=True, slots=True)
class DagLoaded:
    """The text of a run's DAG ConfigMap (``None`` when missing), fetched off-thread.

    ``configmap`` is the ConfigMap's (namespace, name, uid) when it exists, so a refusal can be
    reported on the object the user has to fix.
    """

    run: workflow.RunId
    text: str | None
    configmap: tuple[str, str, str] | None = None


@dataclass(slots=True)
class _Pending:
    facts: translate.PodFacts
    labels: workflows.TaskLabels
    task: workflow.Task
    problems_reported: bool = False


@dataclass(slots=True)
class _SetAside:
    """A task whose cycles raised: out of the queue until ``retry_at``."""

    retry_at: float
    failures: int


@dataclass(slots=True)
class LoopStats:
    """Counters for tests, logs and the readiness probe."""

    cycles: int = 0
    turns: int = 0
    """Iterations of ``run``: bounded by events, ticks and cycles, never a busy spin."""
    binds_ok: int = 0
    binds_failed: int = 0
    binds_abandoned: int = 0
    cycle_failures: int = 0
    handler_errors: int = 0
    """Events whose handler raised (the catch-all of ``_handle``); zero in a healthy run."""
    last_cycle_s: float = 0.0
    cycle_times: list[float] = field(default_factory=list)


def _bind_reason(status: int) -> str:
    return {
        409: "conflict",
        404: "not_found",
        403: "forbidden",
        422: "invalid",
        429: "throttled",
    }.get(status, "server_error" if status >= 500 else ("unavailable" if status == 0 else "other"))


class SchedulerLoop:
    """Owns scheduling state; ``run`` processes events and runs cycles until stopped."""

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
        memory_save_interval_s: float = 30.0,
    ) -> None:
        self.settings = settings
        self.kube = kube
        self.policies = policies
        self.metrics = metrics
        self.events: queue.Queue[Any] = events if events is not None else queue.Queue()
        self.clock = clock
        self.wall_clock = wall_clock
        self.may_bind = may_bind
        self.memory = memory
        self.memory_store = memory_store
        self._memory_save_interval_s = memory_save_interval_s
        self._saved_memory_version = memory.version if memory is not None else 0
        self._next_memory_save = 0.0
        self.cache = cluster.ClusterCache()
        self.registry = workflows.WorkflowRegistry()
        max_backoff = settings.unschedulable_backoff_s
        self.queue = SchedulingQueue(initial_backoff=min(1.0, max_backoff), max_backoff=max_backoff)
        self.commands: queue.Queue[LoopCommand] = queue.Queue()
        """Work from other threads (the REST API), run ahead of queued watch events."""
        self.max_in_flight_binds = max(1, settings.bind_workers * _IN_FLIGHT_PER_WORKER)
        self._set_aside: dict[str, _SetAside] = {}
        self._capped = False
        self._binds_outstanding = 0
        self._cycle_retry_at = -math.inf
        self._cycle_retries = 0
        self.stats = LoopStats()
        self._names = frozenset(settings.scheduler_names)
        self._execution_prefix = f"{settings.scheduler_names[0]}-"
        self._namespaces = frozenset(settings.namespaces)
        self._pending: dict[str, _Pending] = {}
        self._key_to_uid: dict[workflow.TaskKey, str] = {}
        self._in_flight: dict[str, decisions.Bind] = {}
        self._pending_for_retry: dict[str, _Pending] = {}
        self._finished: OrderedDict[str, None] = OrderedDict()
        self._running_runs: dict[str, workflow.RunId] = {}
        """uid → run of our pods bound and not finished: their runs are never evicted."""
        self._next_eviction = 0.0
        self._node_raw: dict[str, Mapping[str, Any]] = {}
        self._usage: dict[str, resources.Resources] = {}
        self._dirty = True
        self._cycle_id = 0
        self._rng = random.Random(settings.seed)
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
        self._fetching_dags: set[workflow.RunId] = set()
        self._held: dict[str, translate.PodFacts] = {}
        self._peak_usage: dict[tuple[str, str], int] = {}
        self.task_hooks: list[TaskHook] = []
        """Hooks consulted for every pending and finished pod of ours, in order."""

    # --- ownership -------------------------------------------------------------------------

    def is_ours(self, facts: translate.PodFacts) -> bool:
        """True when the pod names one of our schedulers and is in a watched namespace."""
        if self._namespaces and facts.ref.namespace not in self._namespaces:
            return False
        name = facts.scheduler_name
        return name in self._names or name.startswith(self._execution_prefix)

    # --- main loop -------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Process events and run cycles until ``stop`` is set.

        Never raises on bad input or a failing cycle. Blocks on the events queue whenever no
        cycle can run now (nothing changed, not leading, every bind slot taken, or cycles
        backing off after a failure), so an idle or standby replica uses no CPU.
        """
        next_tick = self.clock() + self.settings.cycle_interval_s
        while not stop.is_set():
            self.stats.turns += 1
            self._run_commands()
            if not self._cycle_due():
                now = self.clock()
                wake_at = [next_tick, self._next_memory_save]
                if self._cycle_retry_at > now:
                    wake_at.append(self._cycle_retry_at)
                timeout = min(max(0.0, min(wake_at) - now), _IDLE_WAIT_S)
                with contextlib.suppress(queue.Empty):
                    self._handle(self.events.get(timeout=timeout))
            self._drain()
            now = self.clock()
            if now >= next_tick:
                self._dirty = True
                next_tick = now + self.settings.cycle_interval_s
            self._retry_set_aside(now)
            if self._cycle_due():
                self._dirty = False
                self.run_guarded_cycle()
            if now >= self._next_memory_save:
                self._next_memory_save = now + self._memory_save_interval_s
                self.save_memory()
            self.evict_idle(now)
        self.shutdown()

    def _cycle_due(self) -> bool:
        """True when a cycle should run now: state changed, leading, room for binds."""
        return (
            self._dirty
            and self.clock() >= self._cycle_retry_at
            and self._bind_slots() > 0
            and self.may_bind()
        )

    def _bind_slots(self) -> int:
        """Binds a cycle may still hand to the workers (those not yet reported are counted)."""
        return self.max_in_flight_binds - self._binds_outstanding

    def submit_command(self, command: LoopCommand) -> None:
        """Hand ``command`` to the loop thread; it runs ahead of queued watch events.

        Thread-safe. The command's ``apply`` runs on the loop thread; an exception it raises is
        logged and counted, never propagated.
        """
        self.commands.put(command)
        self.events.put(_WAKE)

    def wake(self) -> None:
        """End a blocking wait at once (e.g. leadership was gained). Thread-safe."""
        self._dirty = True
        self.events.put(_WAKE)

    def _run_commands(self) -> None:
        while True:
            try:
                command = self.commands.get_nowait()
            except queue.Empty:
                return
            self._handle(command)

    def shutdown(self, *, event_timeout_s: float = 5.0) -> None:
        """Wait for in-flight binds and side effects, and queued Events (``event_timeout_s``).

        The loop cannot run again afterwards.
        """
        self._pool.shutdown(wait=True, cancel_futures=False)
        self._side_pool.shutdown(wait=True, cancel_futures=False)
        self.recorder.close(timeout=event_timeout_s)

    def _drain(self) -> None:
        for handled in range(_MAX_EVENTS_PER_TURN):
            if handled % _EVENTS_BETWEEN_COMMANDS == 0:
                self._run_commands()
            try:
                item = self.events.get_nowait()
            except queue.Empty:
                return
            self._handle(item)

    def _handle(self, item: Any) -> None:
        try:
            if item is _WAKE:
                return
            if isinstance(item, BindOutcome):
                self._on_bind_outcome(item)
            elif isinstance(item, DagLoaded):
                self._on_dag_loaded(item)
            elif hasattr(item, "apply") and callable(item.apply):
                item.apply(self)
            elif isinstance(item, tuple) and len(item) == 3:
                kind, event_type, obj = item
                if kind == POD_EVENTS:
                    self._on_pod(event_type, obj)
                elif kind == NODE_EVENTS:
                    self._on_node(event_type, obj)
                elif kind == NODE_USAGE_EVENTS:
                    self._on_node_usage(obj)
                elif kind == POD_USAGE_EVENTS:
                    self._on_pod_usage(obj)
        except Exception:  # one bad event must never stop scheduling
            self.stats.handler_errors += 1
            self.metrics.event_handling_errors.inc()
            log.exception("event handling failed", extra={"event": repr(item)[:300]})

    # --- pods ------------------------------------------------------------------------------

    def _on_pod(self, event_type: str, obj: Mapping[str, Any]) -> None:
        try:
            facts = translate.pod_facts(obj)
        except ValueError as exc:
            log.warning("ignoring pod event without identity: %s", exc)
            return
        uid = facts.ref.uid
        gone = event_type == "DELETED"
        if gone or facts.finished:
            self._pod_gone(facts)
            if gone:
                self._finished.pop(uid, None)  # no event about this uid follows a deletion
            return
        if facts.node_name:
            self._note_running(facts)
            self._pending_gone(uid)
            confirmed = self._in_flight.pop(uid, None)
            if confirmed is not None:
                self.queue.bind_succeeded(confirmed.task)
            self._pending_for_retry.pop(uid, None)
            self.cache.upsert_pod(translate.pod_info(facts))
            return
        if not self.is_ours(facts) or facts.terminating:
            self._pending_gone(uid)
            return
        if uid in self._in_flight:
            return
        self._upsert_pending(facts)

    def labels_of(self, facts: translate.PodFacts) -> tuple[workflows.TaskLabels, bool]:
        """Return the workflow labels of a pod of ours after every hook, and whether held."""
        labels = workflows.read_task_labels(facts, execution_prefix=self._execution_prefix)
        held = False
        for hook in self.task_hooks:
            labels, hold = hook.describe(facts, labels)
            held = held or hold
        return labels, held

    def refresh_held(self) -> None:
        """Re-describe held pods (call after a batch was released or a task registered)."""
        for uid, facts in list(self._held.items()):
            del self._held[uid]
            self._upsert_pending(facts)

    def redescribe(self, uid: str) -> None:
        """Run the task hooks again for a pending pod whose registration changed.

        A queued pod leaves the queue and is described afresh (it may become held); a held
        pod is re-described as by ``refresh_held``. Pods being bound, bound or unknown are left
        alone.
        """
        entry = self._pending.get(uid)
        facts = entry.facts if entry is not None else self._held.get(uid)
        if facts is None:
            return
        self._pending_gone(uid)
        self._upsert_pending(facts)

    def _upsert_pending(self, facts: translate.PodFacts) -> None:
        uid = facts.ref.uid
        known = self._pending.get(uid)
        if known is not None:
            labels = known.labels
        else:
            labels, held = self.labels_of(facts)
            if held:
                self._held[uid] = facts
                return
        problems = list(facts.problems) + list(labels.problems)
        if known is None:
            problems += self.registry.observe_task(labels)
            self._request_dags()
            submission = self.registry.next_submission()
        else:
            submission = known.task.submission
        task = workflow.Task(
            key=workflow.TaskKey(labels.run, labels.task_id),
            step=labels.step,
            submission=submission,
            request=facts.request,
            input_size=labels.input_size,
            attempt=labels.attempt,
            constraints=facts.constraints,
            scheduling_gates=facts.scheduling_gates,
            pod=facts.ref,
            memory_basis=facts.memory_basis,
        )
        other = self._key_to_uid.get(task.key)
        if other is not None and other != uid:
            # Two live pods claim the same task id: keep both schedulable by making the
            # second one's key unique, and say so.
            problems.append(
                translate.Problem("task id", f"{task.key.task} already used by {other}")
            )
            task = dataclasses.replace(
                task, key=workflow.TaskKey(labels.run, f"{labels.task_id}#{facts.ref.name}")
            )
        if self.memory is not None:
            self.memory.set_workflow(labels.run, labels.workflow_name)
            if len(facts.container_names) != 1 or facts.first_container_memory[0] <= 0:
                self.memory.mark_unscalable(task.key)
        entry = _Pending(facts=facts, labels=labels, task=task)
        if known is not None:
            entry.problems_reported = known.problems_reported
        self._pending[uid] = entry
        self._key_to_uid[task.key] = uid
        aside = self._set_aside.get(uid)
        if aside is None or aside.retry_at == math.inf:
            self.queue.add(task)
        self._dirty = True
        if problems and not entry.problems_reported:
            entry.problems_reported = True
            self._report_problems(facts, problems)

    def _pending_gone(self, uid: str) -> None:
        self._held.pop(uid, None)
        self._set_aside.pop(uid, None)
        entry = self._pending.pop(uid, None)
        if entry is not None:
            self.queue.remove(entry.task.key)
            if self._key_to_uid.get(entry.task.key) == uid:
                del self._key_to_uid[entry.task.key]

    def _pod_gone(self, facts: translate.PodFacts) -> None:
        uid = facts.ref.uid
        self._pending_gone(uid)
        self._pending_for_retry.pop(uid, None)
        gone = self._in_flight.pop(uid, None)
        if gone is not None:
            self.queue.remove(gone.task)
            self.cache.forget(uid)
        self.cache.remove_pod(uid)
        self._running_runs.pop(uid, None)
        self._dirty = True
        if facts.finished and self.is_ours(facts) and uid not in self._finished:
            self._finished[uid] = None
            if len(self._finished) > _FINISHED_MEMORY:
                self._finished.popitem(last=False)
            labels, _ = self.labels_of(facts)
            self.registry.record_finished(
                labels, success=facts.phase == "Succeeded", runtime_s=facts.runtime_s
            )
            for hook in self.task_hooks:
                hook.finished(facts, labels)
            self._observe_memory(facts, labels)
        self._peak_usage.pop((facts.ref.namespace, facts.ref.name), None)

    def _report_problems(
        self, facts: translate.PodFacts, problems: list[translate.Problem]
    ) -> None:
        text = "; ".join(str(p) for p in problems)[:900]
        for problem in problems:
            kind = problem.field.split("[")[0].split(".")[0] or "other"
            self.metrics.input_errors.labels(kind=kind if len(kind) < 40 else "other").inc()
        log.warning(
            "malformed workflow metadata ignored",
            extra={"pod": f"{facts.ref.namespace}/{facts.ref.name}", "problems": text},
        )
        self.recorder.record(
            namespace=facts.ref.namespace,
            pod_name=facts.ref.name,
            pod_uid=facts.ref.uid,
            reason="InvalidWorkflowMetadata",
            note=f"ignored: {text}",
            event_type="Warning",
        )

    # --- DAG documents ---------------------------------------------------------------------

    def _request_dags(self) -> None:
        for run, ref in self.registry.pending_dag_refs():
            if run in self._fetching_dags:
                continue
            self._fetching_dags.add(run)
            self._side_pool.submit(self._fetch_dag, run, ref)

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

    def _on_dag_loaded(self, item: DagLoaded) -> None:
        self._fetching_dags.discard(item.run)
        error = self.registry.apply_dag_document(item.run, item.text)
        self._dirty = True
        if error is None:
            return
        self.metrics.input_errors.labels(kind="dag").inc()
        log.warning("DAG document refused", extra={"run": item.run, "error": error})
        if item.configmap is not None:
            # On the ConfigMap itself: reported even when every pod of the run is bound.
            namespace, name, uid = item.configmap
            self.recorder.record(
                namespace=namespace,
                pod_name=name,
                pod_uid=uid,
                regarding_kind="ConfigMap",
                reason="InvalidWorkflowDAG",
                note=error[:900],
                event_type="Warning",
            )
        for entry in self._pending.values():
            if entry.labels.run == item.run:
                self.recorder.record(
                    namespace=entry.facts.ref.namespace,
                    pod_name=entry.facts.ref.name,
                    pod_uid=entry.facts.ref.uid,
                    reason="InvalidWorkflowDAG",
                    note=error[:900],
                    event_type="Warning",
                )
                break

    # --- nodes -----------------------------------------------------------------------------

    def _on_node(self, event_type: str, obj: Mapping[str, Any]) -> None:
        name = str((obj.get("metadata") or {}).get("name") or "")
        if not name:
            return
        if event_type == "DELETED":
            self._node_raw.pop(name, None)
            self.cache.remove_node(name)
        else:
            self._node_raw[name] = obj
            info, problems = translate.node_info(obj, self._usage.get(name))
            if problems:
                log.warning("node %s: %s", name, "; ".join(map(str, problems)))
            self.cache.upsert_node(info)
        self._dirty = True

    def _on_node_usage(self, items: Any) -> None:
        usage: dict[str, resources.Resources] = {}
        for item in items or ():
            name = str((item.get("metadata") or {}).get("name") or "")
            value = translate.usage_from_metrics(item)
            if name and value is not None:
                usage[name] = value
        self._usage = usage
        for name, raw in self._node_raw.items():
            info, _ = translate.node_info(raw, usage.get(name))
            self.cache.upsert_node(info)

    # --- cycles ----------------------------------------------------------------------------

    def run_guarded_cycle(self) -> decisions.CycleResult | None:
        """Run :meth:`run_one_cycle`; a cycle that raises is handled, never propagated."""
        try:
            result = self.run_one_cycle()
        except Exception as exc:  # a policy broke its contract: keep the loop alive
            self._on_cycle_failure(exc)
            return None
        self._cycle_retries = 0
        return result

    def run_one_cycle(self) -> decisions.CycleResult | None:
        """Run one scheduling cycle over the current state and execute its decisions.

        Does nothing (returns ``None``) with an empty queue, no free bind slot, or while this
        replica may not bind.

        Raises:
            Exception: Whatever the policies raise (see :meth:`run_guarded_cycle`).
        """
        self._update_queue_metrics()
        slots = self._bind_slots()
        if not len(self.queue) or slots <= 0 or not self.may_bind():
            return None
        self._cycle_id += 1
        started = time.perf_counter()
        ctx = context.CycleContext(
            cycle_id=self._cycle_id,
            now=self.clock(),
            rng=self._rng,
            settings=context.CycleSettings(max_binds=slots),
        )
        result = cycle.run_cycle(
            snapshot=self.cache.snapshot(),
            queue=self.queue,
            dags=self.registry.dags,
            policies=self.policies,
            ctx=ctx,
        )
        self.queue.apply(result)
        self._capped = len(result.binds) >= slots
        elapsed = time.perf_counter() - started
        self.stats.cycles += 1
        self.stats.last_cycle_s = elapsed
        if len(self.stats.cycle_times) < 100_000:
            self.stats.cycle_times.append(elapsed)
        self.metrics.cycle_duration.observe(elapsed)
        resizes = {d.task: d for d in result.decisions if isinstance(d, decisions.Resize)}
        for decision in result.decisions:
            if isinstance(decision, decisions.Bind):
                self._start_bind(decision, resizes.get(decision.task))
            elif isinstance(decision, decisions.MarkUnschedulable):
                self._mark_unschedulable(decision)
            elif isinstance(decision, decisions.Reject):
                self.metrics.schedule_attempts.labels(result="unschedulable").inc()
        self._update_queue_metrics()
        return result

    def _on_cycle_failure(self, exc: Exception) -> None:
        """Log and count a failed cycle; set aside the task that fails alone, if any."""
        self.stats.cycle_failures += 1
        snapshot = self.cache.snapshot()
        dags = self.registry.dags

        def fails(subset: Sequence[workflow.Task]) -> bool:
            trial = SchedulingQueue()
            for task in subset:
                trial.add(task)
            ctx = context.CycleContext(cycle_id=self._cycle_id, now=self.clock())
            try:
                cycle.run_cycle(
                    snapshot=snapshot, queue=trial, dags=dags, policies=self.policies, ctx=ctx
                )
            except Exception:
                return True
            return False

        found = isolate.find_failing_task(self.queue.tasks(), fails)
        culprit = found.task
        log.error(
            "scheduling cycle failed",
            exc_info=exc,
            extra={
                "cycle_id": self._cycle_id,
                "task": str(culprit.key) if culprit is not None else "",
                "trials": found.trials,
            },
        )
        uid = self._key_to_uid.get(culprit.key) if culprit is not None else None
        if culprit is None or uid is None or uid not in self._pending:
            # Nothing to blame on one task: retry the whole cycle after a growing delay.
            self.metrics.cycle_errors.labels(action="retried").inc()
            self._cycle_retries += 1
            self._cycle_retry_at = self.clock() + self._backoff_s(self._cycle_retries)
            self._dirty = True
            return
        self.metrics.cycle_errors.labels(action="task_set_aside").inc()
        previous = self._set_aside.get(uid)
        failures = 1 if previous is None else previous.failures + 1
        delay = self._backoff_s(failures)
        self._set_aside[uid] = _SetAside(retry_at=self.clock() + delay, failures=failures)
        self.queue.remove(culprit.key)
        self._dirty = True
        pod = self._pending[uid].facts.ref
        self.recorder.record(
            namespace=pod.namespace,
            pod_name=pod.name,
            pod_uid=pod.uid,
            reason="FailedScheduling",
            note=f"scheduling this pod failed ({type(exc).__name__}: {str(exc)[:300]}); "
            f"set aside for {delay:g}s, other pods are scheduled meanwhile",
            event_type="Warning",
        )

    def _backoff_s(self, failures: int) -> float:
        """Delay after ``failures`` consecutive failures: 1 s doubling up to the cap."""
        cap = self.settings.unschedulable_backoff_s
        return float(min(cap, min(1.0, cap) * 2 ** min(failures - 1, 30)))

    def _retry_set_aside(self, now: float) -> None:
        """Put set-aside tasks whose delay is over back into the queue."""
        if not self._set_aside:
            return
        for uid, entry in list(self._set_aside.items()):
            pending = self._pending.get(uid)
            if pending is None:
                del self._set_aside[uid]
            elif now >= entry.retry_at and pending.task.key not in self.queue:
                self.queue.add(pending.task)
                entry.retry_at = math.inf  # until it fails again or binds
                self._dirty = True

    def _update_queue_metrics(self) -> None:
        gated = sum(1 for t in self.queue.tasks() if t.gated)
        now = self.clock()
        backoff = sum(1 for t in self.queue.tasks() if self.queue.backing_off(t.key, now))
        unschedulable = sum(
            1 for t in self.queue.tasks() if self.queue.reported_reason(t.key) is not None
        )
        self.metrics.pending_tasks.labels(queue="gated").set(gated)
        self.metrics.pending_tasks.labels(queue="batch").set(len(self._held))
        self.metrics.pending_tasks.labels(queue="set_aside").set(
            sum(1 for entry in self._set_aside.values() if entry.retry_at != math.inf)
        )
        self.metrics.pending_tasks.labels(queue="backoff").set(backoff)
        self.metrics.pending_tasks.labels(queue="unschedulable").set(unschedulable)
        self.metrics.pending_tasks.labels(queue="active").set(
            max(0, len(self.queue) - gated - backoff - unschedulable)
        )
        stale_before = self.wall_clock() - self.settings.stale_pending_s
        self.metrics.stale_pending.set(
            sum(1 for p in self._pending.values() if 0 < p.facts.created < stale_before)
        )

    def _start_bind(self, bind: decisions.Bind, resize: decisions.Resize | None = None) -> None:
        uid = bind.pod.uid if bind.pod else self._key_to_uid.get(bind.task, "")
        entry = self._pending.pop(uid, None)
        if entry is None or bind.pod is None:
            return
        if self._key_to_uid.get(bind.task) == uid:
            del self._key_to_uid[bind.task]
        self._in_flight[uid] = bind
        self._pending_for_retry[uid] = entry
        self._set_aside.pop(uid, None)
        self.cache.assume(
            cluster.PodInfo(
                uid=uid,
                node_name=bind.node,
                request=bind.request,
                namespace=bind.pod.namespace,
                name=bind.pod.name,
            )
        )
        created = entry.facts.created
        container = entry.facts.container_names[0] if entry.facts.container_names else ""
        has_limit = entry.facts.memory_limit_follows_request  # a higher limit stays as it is
        self._binds_outstanding += 1
        self._pool.submit(self._bind_worker, bind, created, resize, container, has_limit)

    def _resize_before_bind(
        self, bind: decisions.Bind, resize: decisions.Resize, container: str, has_limit: bool
    ) -> BindOutcome | None:
        """Apply the planned memory; return an outcome when the API server refused it."""
        assert bind.pod is not None
        patch = translate.memory_resize_patch(container, resize.memory_bytes, set_limit=has_limit)
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

    def _bind_worker(
        self,
        bind: decisions.Bind,
        created: float,
        resize: decisions.Resize | None = None,
        container: str = "",
        has_limit: bool = False,
    ) -> None:
        """Resize (if planned) and bind; always report exactly one outcome to the loop."""
        try:
            self._resize_and_bind(bind, created, resize, container, has_limit)
        except Exception as exc:  # an unexpected error must not leave the pod assumed forever
            log.exception("bind worker failed", extra={"task": str(bind.task)})
            self.events.put(BindOutcome(bind=bind, ok=False, reason=str(exc)[:300]))

    def _resize_and_bind(
        self,
        bind: decisions.Bind,
        created: float,
        resize: decisions.Resize | None,
        container: str,
        has_limit: bool,
    ) -> None:
        assert bind.pod is not None
        started = time.perf_counter()
        if resize is not None and container:
            if not self.may_bind():
                self.events.put(BindOutcome(bind=bind, ok=False, abandoned=True))
                return
            refused = self._resize_before_bind(bind, resize, container, has_limit)
            if refused is not None:
                self.events.put(refused)
                return
        # Leadership is checked right before the call: a bind queued before the lease was lost
        # is never sent (its task returns to the queue of whoever leads next).
        if not self.may_bind():
            self.events.put(BindOutcome(bind=bind, ok=False, abandoned=True))
            return
        try:
            self.kube.bind(bind.pod.namespace, bind.pod.name, bind.pod.uid, bind.node)
        except kube_errors.NotSentError:  # leadership was lost while it waited for a token
            self.events.put(BindOutcome(bind=bind, ok=False, abandoned=True))
            return
        except Exception as exc:  # classified by HTTP status, reported to the loop
            status = int(getattr(exc, "http_status", 0) or 0)
            self.events.put(
                BindOutcome(
                    bind=bind,
                    ok=False,
                    status=status,
                    reason=str(exc)[:300],
                    seconds=time.perf_counter() - started,
                )
            )
            return
        seconds = time.perf_counter() - started
        if created > 0:
            self.metrics.pod_scheduling_latency.observe(max(0.0, self.wall_clock() - created))
        self.events.put(BindOutcome(bind=bind, ok=True, seconds=seconds))
        self.recorder.record(
            namespace=bind.pod.namespace,
            pod_name=bind.pod.name,
            pod_uid=bind.pod.uid,
            reason="Scheduled",
            note=f"Successfully assigned {bind.pod.namespace}/{bind.pod.name} to {bind.node}",
        )

    def _on_bind_outcome(self, outcome: BindOutcome) -> None:
        bind = outcome.bind
        assert bind.pod is not None
        uid = bind.pod.uid
        entry = self._pending_for_retry.pop(uid, None)
        self._binds_outstanding -= 1
        if self._capped and self._bind_slots() >= self.max_in_flight_binds // 2:
            self._capped = False  # half the bind slots are free again: place more
            self._dirty = True
        if outcome.abandoned:
            self._on_bind_abandoned(outcome, entry)
            return
        self.metrics.binding_duration.observe(outcome.seconds)
        if outcome.ok:
            self.stats.binds_ok += 1
            self.queue.bind_succeeded(bind.task)
            self.metrics.schedule_attempts.labels(result="scheduled").inc()
            log.info(
                "bound",
                extra={
                    "cycle_id": bind.cycle_id,
                    "pod": f"{bind.pod.namespace}/{bind.pod.name}",
                    "node": bind.node,
                    "run": bind.task.run,
                    "task": bind.task.task,
                },
            )
            return
        if outcome.resize_refused:
            self._on_resize_refused(outcome, entry)
            return
        self.stats.binds_failed += 1
        reason = _bind_reason(outcome.status)
        self.metrics.bind_errors.labels(reason=reason).inc()
        self.metrics.schedule_attempts.labels(result="error").inc()
        log.warning(
            "bind failed",
            extra={
                "cycle_id": bind.cycle_id,
                "pod": f"{bind.pod.namespace}/{bind.pod.name}",
                "node": bind.node,
                "status": outcome.status,
                "reason": reason,
            },
        )
        if self._in_flight.pop(uid, None) is not None:
            self.cache.forget(uid)
        if outcome.status == 404 or entry is None:
            self.queue.remove(bind.task)
            return  # the pod is gone; its DELETED event is on its way
        if reason != "conflict":  # a conflict means somebody else bound it: nothing to report
            self.recorder.record(
                namespace=bind.pod.namespace,
                pod_name=bind.pod.name,
                pod_uid=uid,
                reason="FailedScheduling",
                note=f"Binding to {bind.node} rejected ({outcome.status}): "
                f"{outcome.reason[:300]}; retrying",
                event_type="Warning",
                action="Binding",
            )
        # Conflict or transient error: back to its place in the queue with a backoff that
        # grows with each consecutive failure; if the pod was bound elsewhere meanwhile, the
        # watch removes it again.
        self._restore_pending(uid, entry)
        self.queue.bind_failed(entry.task.key, now=self.clock())
        self._dirty = True

    def _restore_pending(self, uid: str, entry: _Pending) -> None:
        """Make a task whose bind did not happen pending again, at its old queue place."""
        self._pending[uid] = entry
        self._key_to_uid[entry.task.key] = uid
        if entry.task.key not in self.queue:  # e.g. its entry was dropped meanwhile
            self.queue.add(entry.task)

    def _on_bind_abandoned(self, outcome: BindOutcome, entry: _Pending | None) -> None:
        """Leadership was lost before the bind was sent: undo the assumption, requeue."""
        bind = outcome.bind
        assert bind.pod is not None
        uid = bind.pod.uid
        self.stats.binds_abandoned += 1
        self.metrics.bind_errors.labels(reason="not_leader").inc()
        if self._in_flight.pop(uid, None) is not None:
            self.cache.forget(uid)
        if entry is None:
            self.queue.remove(bind.task)
            return
        self._restore_pending(uid, entry)
        self.queue.bind_abandoned(entry.task.key)
        self._dirty = True

    def _on_resize_refused(self, outcome: BindOutcome, entry: _Pending | None) -> None:
        """Forget the smaller reservation; requeue at once to bind with the original request."""
        bind = outcome.bind
        assert bind.pod is not None
        uid = bind.pod.uid
        self.metrics.resizes.labels(result="refused").inc()
        log.warning(
            "memory resize refused; binding with the original request",
            extra={"pod": f"{bind.pod.namespace}/{bind.pod.name}", "status": outcome.status},
        )
        self.recorder.record(
            namespace=bind.pod.namespace,
            pod_name=bind.pod.name,
            pod_uid=uid,
            reason="ResizeRefused",
            note=f"memory resize refused ({outcome.reason[:200]}); using the original request",
            event_type="Warning",
        )
        if self._in_flight.pop(uid, None) is not None:
            self.cache.forget(uid)
        if self.memory is not None:
            self.memory.mark_unscalable(bind.task)
        if entry is None or outcome.status == 404:
            self.queue.remove(bind.task)
            return
        self._restore_pending(uid, entry)
        self.queue.bind_abandoned(entry.task.key)
        self._dirty = True

    # --- bounded state ---------------------------------------------------------------------

    def _note_running(self, facts: translate.PodFacts) -> None:
        """Remember the run of a bound pod of ours until it finishes (keeps the run alive)."""
        uid = facts.ref.uid
        if uid in self._running_runs or not self.is_ours(facts):
            return
        labels = workflows.read_task_labels(facts, execution_prefix=self._execution_prefix)
        self._running_runs[uid] = labels.run

    def active_runs(self) -> set[workflow.RunId]:
        """Runs with a task held, queued, being bound or running."""
        runs = {entry.labels.run for entry in self._pending.values()}
        runs.update(entry.labels.run for entry in self._pending_for_retry.values())
        runs.update(bind.task.run for bind in self._in_flight.values())
        runs.update(self._running_runs.values())
        runs.update(
            workflows.read_task_labels(facts, execution_prefix=self._execution_prefix).run
            for facts in self._held.values()
        )
        return runs

    def evict_idle(self, now: float) -> None:
        """Forget what finished runs and departed tasks left behind; no-op between periods.

        Every ``min(10 s, finished_run_idle_s / 2)``: runs learned from pods that have had no
        active task (``active_runs``) for ``finished_run_idle_s`` leave the registry; the
        memory model keeps marks only for tasks still queued or being bound and workflow names
        only for known runs; peak-usage samples only for pods still counted on a node.
        """
        if now < self._next_eviction:
            return
        idle_s = self.settings.finished_run_idle_s
        self._next_eviction = now + min(_EVICTION_PERIOD_S, idle_s / 2)
        evicted = self.registry.evict_idle(active=self.active_runs(), now=now, idle_s=idle_s)
        if evicted:
            log.info("forgot %d idle workflow runs", len(evicted), extra={"runs": len(evicted)})
        self.metrics.workflow_runs.set(len(self.registry))
        if self.memory is not None:
            tasks = {entry.task.key for entry in self._pending.values()}
            tasks.update(entry.task.key for entry in self._pending_for_retry.values())
            tasks.update(bind.task for bind in self._in_flight.values())
            self.memory.retain(tasks=tasks, runs=self.registry.dags)
        if self._peak_usage:
            counted = {(pod.namespace, pod.name) for pod in self.cache.pods()}
            for key in [key for key in self._peak_usage if key not in counted]:
                del self._peak_usage[key]

    # --- memory observations ---------------------------------------------------------------

    def save_memory(self) -> None:
        """Store the observations in their ConfigMap if they changed (leader only)."""
        if self.memory is None or self.memory_store is None or not self.may_bind():
            return
        if self.memory.version == self._saved_memory_version:
            return
        self._saved_memory_version = self.memory.version
        text = self.memory.export()
        namespace, name = self.memory_store
        self._submit_side_effect(
            self.kube.put_configmap,
            namespace,
            name,
            {memory_mod.STORE_KEY: text},
            labels={"app.kubernetes.io/name": "wfsched", "app.kubernetes.io/component": "memory"},
        )

    def _on_pod_usage(self, items: Any) -> None:
        for item in items or ():
            meta = item.get("metadata") or {}
            total = 0
            for container in item.get("containers") or ():
                usage = translate.usage_from_metrics(container)
                total += usage.memory_bytes if usage else 0
            key = (str(meta.get("namespace")), str(meta.get("name")))
            if total > self._peak_usage.get(key, 0):
                self._peak_usage[key] = total

    def _observe_memory(self, facts: translate.PodFacts, labels: workflows.TaskLabels) -> None:
        # Tasks of CWS executions report their peaks through the REST task-metrics endpoint;
        # observing them here too would count each task twice.
        if self.memory is None or labels.engine == "cws":
            return
        self.memory.set_workflow(labels.run, labels.workflow_name)
        key = self.memory.key(labels.run, labels.step)
        if facts.phase == "Failed":
            if facts.termination_reason == "OOMKilled" and facts.first_container_memory[1] > 0:
                self.memory.observe_failure(
                    key, float(labels.input_size), float(facts.first_container_memory[1])
                )
            return
        peak = self._peak_bytes(facts)
        if peak <= 0 or not self.memory.observe(key, float(labels.input_size), float(peak)):
            return
        self.metrics.observations.set(self.memory.observations)
        request = facts.first_container_memory[0]
        if keys.ORIGINAL_MEMORY_ANNOTATION in facts.annotations and request > 0:
            self.metrics.prediction_ratio.labels(predictor=self.memory.name).observe(request / peak)
        runtime = facts.runtime_s
        if runtime and request > peak:
            self.metrics.wasted_memory.inc((request - peak) * runtime)

    def _peak_bytes(self, facts: translate.PodFacts) -> int:
        """Peak memory of a finished pod: the engine's annotation, else metrics.k8s.io's max."""
        raw = facts.annotations.get(keys.PEAK_MEMORY_ANNOTATION)
        if raw is not None:
            try:
                return resources.integer_value(raw.strip())
            except (ValueError, ArithmeticError):
                self.metrics.input_errors.labels(kind=keys.PEAK_MEMORY_ANNOTATION).inc()
        return self._peak_usage.get((facts.ref.namespace, facts.ref.name), 0)

    def _mark_unschedulable(self, decision: decisions.MarkUnschedulable) -> None:
        pod = decision.pod
        if pod is None:
            return
        log.info(
            "unschedulable",
            extra={
                "cycle_id": decision.cycle_id,
                "pod": f"{pod.namespace}/{pod.name}",
                "reason": decision.reason,
            },
        )
        condition = {
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": decision.reason,
            "lastTransitionTime": datetime.datetime.now(datetime.UTC).strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            ),
        }
        self._submit_side_effect(self.kube.set_pod_condition, pod.namespace, pod.name, condition)
        self.recorder.record(
            namespace=pod.namespace,
            pod_name=pod.name,
            pod_uid=pod.uid,
            reason="FailedScheduling",
            note=decision.reason,
            event_type="Warning",
        )

    def _submit_side_effect(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        def call() -> None:
            try:
                fn(*args, **kwargs)
            except Exception:  # side effects (events, conditions) never stop scheduling
                log.warning("side effect %s failed", getattr(fn, "__name__", fn), exc_info=True)

        with contextlib.suppress(RuntimeError):  # pool already shut down
            self._side_pool.submit(call)
