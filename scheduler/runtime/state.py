"""The scheduler as a pure state machine: stimuli in, instructions out.

:class:`SchedulerState` owns every piece of scheduling state of one replica: the cluster cache
(assumed and bound pods), the scheduling queue, the workflow registry (DAGs), the memory model
and one record per pod of ours. It changes only through its entry points, each of which takes
the time as an argument and returns what the shell must do as data:

=========================  ===================================================================
entry point                stimulus
=========================  ===================================================================
``pod_changed``            a pod was added, modified or deleted (already translated)
``node_changed``           a node was added or modified (``NodeInfo``), or deleted
``pod_usage``              peak memory samples of pods (metrics.k8s.io); with grow-in-place
                           on, returns the grows they call for
``grow_reported``          a grow's outcome (``grow.GrowReported``)
``shrink_reported``        a shrink's outcome (``shrink.ShrinkReported``)
``bind_reported``          a bind worker's outcome (``BindOutcome``)
``dag_loaded``             a run's DAG document was read
``cycle``                  run a scheduling cycle now (the shell asks ``cycle_due`` first)
``tick``                   time passed: set-aside retries, assumed-pod expiry, eviction, saves
``redescribe``,            the CWS API changed what it says about pods (task hooks)
``refresh_held``
=========================  ===================================================================

Instructions (:data:`Instruction`): :class:`StartBind`, :class:`RecordEvent`,
:class:`SetCondition`, :class:`FetchDag`, :class:`SaveMemory`, :class:`SaveHistory`, for
grow-in-place ``grow.GrowMemory`` and ``grow.GrowNotice`` (``scheduler/runtime/grow.py``), and for
shrink-in-place ``shrink.ShrinkMemory`` (``scheduler/runtime/shrink.py``). Nothing here
starts a thread, reads a clock, sleeps or talks to the API server; metrics are counted through
the injected ``Metrics`` object. ``tests/unit/daemon/test_state.py`` drives it event by event.

Pod records (one per pod of ours that is not bound)::

    (pending pod) ──► HELD ──(hooks release it)──► QUEUED ◄──────────────┐
                        ▲                            │ cycle binds it     │ bind failed (backoff)
                        └──(redescribe)──────────────┤                    │ bind abandoned
                                                     ▼                    │ resize refused
                                          SET_ASIDE  BINDING ─────────────┘
                        (its cycles raise; retried   │ bind ok / watch sees it bound
                         after a growing delay)      ▼
                                                  (record dropped; the cache counts the pod)

Scheduling cycle and binding cycle are apart, as in kube-scheduler: ``cycle`` ranks, places
and *assumes* (the cache counts the pod on its node at once); binds then run asynchronously
in the shell and come back through ``bind_reported``: a failure *forgets* the assumption and
puts the task back at its place with a growing backoff; an assumed pod whose binding returned
but that the watch never shows bound is *expired* after ``assumed_pod_ttl_s``.

At most ``max_in_flight_binds`` binds are handed out and not yet reported; a cycle places no
more than the free slots. A cycle that raises is isolated (``core.isolate``): the task that
fails alone is set aside with an Event; otherwise the whole cycle is retried after a backoff.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import math
import random
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from scheduler.core import (
    cluster,
    context,
    cycle,
    decisions,
    incremental,
    interfaces,
    isolate,
    podfacts,
    resources,
    shrink,
    workflow,
)
from scheduler.core.queue import SchedulingQueue
from scheduler.kube import keys, translate
from scheduler.runtime import gangs as gangs_mod
from scheduler.runtime import grow as grow_mod
from scheduler.runtime import history as history_mod
from scheduler.runtime import memory as memory_mod
from scheduler.runtime import settings as settings_mod
from scheduler.runtime import shrink as shrink_mod
from scheduler.runtime import workflows

if TYPE_CHECKING:
    from scheduler.runtime import metrics as metrics_mod

log = logging.getLogger(__name__)

FINISHED_MEMORY = 200_000
"""Finished pods remembered, so a repeated terminal event is counted once."""
IN_FLIGHT_PER_WORKER = 16
"""Binds handed out and not yet reported, per bind worker, before cycles stop placing."""
EVICTION_PERIOD_S = 10.0
"""Longest time between two sweeps of idle runs and departed tasks."""
EXPIRY_PERIOD_S = 1.0
"""Time between two sweeps for assumed pods to expire (kube-scheduler's is 1 s too)."""


GANG_NOT_SENT = "not sent: another member of the gang failed to bind"
"""``BindOutcome.reason`` of gang members whose Binding was never sent (``gangbind``)."""


# --- stimuli ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BindOutcome:
    """A bind worker's report of one ``StartBind``."""

    bind: decisions.Bind
    ok: bool
    status: int = 0
    reason: str = ""
    seconds: float = 0.0
    resize_refused: bool = False
    """The memory resize before the bind was refused; the pod was not bound."""
    abandoned: bool = False
    """Nothing was sent: leadership was lost before the calls were made, or (``reason``
    ``GANG_NOT_SENT``) another member of the pod's gang failed to bind first."""
    reported_at: float = math.nan
    """The shell's clock when the worker reported (the ``bind_report`` stage)."""


@dataclass(frozen=True, slots=True)
class DagLoaded:
    """The text of a run's DAG ConfigMap (``None`` when missing), fetched off-thread.

    ``configmap`` is the ConfigMap's (namespace, name, uid) when it exists, so a refusal can be
    reported on the object the user has to fix.
    """

    run: workflow.RunId
    text: str | None
    configmap: tuple[str, str, str] | None = None


# --- instructions ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class StartBind:
    """Resize (when ``resize`` is set) and bind a pod; report a ``BindOutcome``.

    Attributes:
        bind: The decision.
        resize: The memory plan to apply first, if any.
        container: The container to resize.
        resize_limit: Lower the memory limit together with the request (limit == request).
        created: The pod's creation time (POSIX seconds, 0 unknown), for the latency metric.
    """

    bind: decisions.Bind
    resize: decisions.Resize | None = None
    container: str = ""
    resize_limit: bool = False
    created: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordEvent:
    """Emit a Kubernetes Event about an object (a pod unless ``regarding_kind`` says)."""

    namespace: str
    name: str
    uid: str
    reason: str
    note: str
    event_type: str = "Normal"
    action: str = "Scheduling"
    regarding_kind: str = "Pod"


@dataclass(frozen=True, slots=True, kw_only=True)
class SetCondition:
    """Write ``PodScheduled=False`` with ``reason``/``message`` (the shell adds the time)."""

    namespace: str
    name: str
    reason: str
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchDag:
    """Read a run's DAG ConfigMap ``ref`` and report a ``DagLoaded``."""

    run: workflow.RunId
    ref: tuple[str, str]


@dataclass(frozen=True, slots=True, kw_only=True)
class SaveMemory:
    """Store the memory model's exported observations."""

    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SaveHistory:
    """Store the exported workflow history (``history.WorkflowHistory``)."""

    text: str


Instruction = (
    StartBind
    | RecordEvent
    | SetCondition
    | FetchDag
    | SaveMemory
    | SaveHistory
    | gangs_mod.StartGangBind
    | grow_mod.GrowMemory
    | grow_mod.GrowNotice
    | shrink_mod.ShrinkMemory
)


class TaskHook(Protocol):
    """Lets another component (the CWS REST API) shape and hold tasks.

    ``describe`` sees every pending pod of ours before it is queued and returns the labels to
    use (e.g. from a task registration) and whether to hold the task back (an open batch).
    Held pods are re-described by ``SchedulerState.refresh_held``. ``finished`` sees every
    finished pod of ours once.
    """

    def describe(
        self, facts: podfacts.PodFacts, labels: workflows.TaskLabels
    ) -> tuple[workflows.TaskLabels, bool]:
        """Return ``(labels, held)`` for a pending pod."""

    def finished(self, facts: podfacts.PodFacts, labels: workflows.TaskLabels) -> None:
        """Observe a finished pod (success or failure)."""


# --- state -----------------------------------------------------------------------------------


class PodPhase(enum.StrEnum):
    """Where a pending pod of ours stands (see the module diagram)."""

    HELD = "held"
    QUEUED = "queued"
    SET_ASIDE = "set_aside"
    BINDING = "binding"


@dataclass(slots=True)
class TrackedPod:
    """The one record of a pod of ours that is not bound yet."""

    facts: podfacts.PodFacts
    phase: PodPhase
    labels: workflows.TaskLabels
    task: workflow.Task | None = None
    """``None`` while held."""
    problems_reported: bool = False
    bind: decisions.Bind | None = None
    """The decision being carried out (``BINDING``)."""
    failures: int = 0
    """Consecutive failed cycles this task caused (``SET_ASIDE``)."""
    retry_at: float = math.inf
    """When a set-aside task is queued again."""
    queued_at: float = math.nan
    """When the task first entered the scheduling queue (the ``queue_wait`` stage)."""


@dataclass(slots=True)
class Stats:
    """Counters for tests, logs and the readiness probe."""

    cycles: int = 0
    binds_ok: int = 0
    binds_failed: int = 0
    binds_abandoned: int = 0
    cycle_failures: int = 0
    assumed_expired: int = 0


def _bind_reason(status: int) -> str:
    return {
        409: "conflict",
        404: "not_found",
        403: "forbidden",
        422: "invalid",
        429: "throttled",
    }.get(status, "server_error" if status >= 500 else ("unavailable" if status == 0 else "other"))


class SchedulerState:
    """Every piece of one replica's scheduling state; see the module docstring.

    Args:
        settings: The daemon's settings.
        policies: Ranking, assignment and optional memory planner (``policies`` may be
            replaced later, e.g. by the CWS API's per-execution wrapper).
        metrics: Counters and gauges to update.
        memory: The memory model, when memory scaling is on.
        rng: The random generator of the cycles (seeded by the caller).
        history: What earlier runs taught (step runtimes and edges), kept whether or not
            memory is scaled; a new, empty one by default.
    """

    def __init__(
        self,
        *,
        settings: settings_mod.Settings,
        policies: interfaces.Policies,
        metrics: metrics_mod.Metrics,
        memory: memory_mod.MemoryModel | None = None,
        rng: random.Random | None = None,
        history: history_mod.WorkflowHistory | None = None,
    ) -> None:
        self.settings = settings
        self.policies = policies
        self.metrics = metrics
        self.memory = memory
        self.rng = rng if rng is not None else random.Random(settings.seed)
        self.cache = cluster.ClusterCache()
        self.registry = workflows.WorkflowRegistry()
        self.history = history if history is not None else history_mod.WorkflowHistory()
        self.registry.history = self.history
        cap = settings.unschedulable_backoff_s
        self.queue = SchedulingQueue(initial_backoff=min(1.0, cap), max_backoff=cap)
        self.cycles = incremental.IncrementalScheduler()
        """Runs the cycles over ``queue``; keeps the ranked order and hints in between."""
        self.stats = Stats()
        self.task_hooks: list[TaskHook] = []
        """Hooks consulted for every pending and finished pod of ours, in order."""
        self.max_in_flight_binds = max(1, settings.bind_workers * IN_FLIGHT_PER_WORKER)
        self.pods: dict[str, TrackedPod] = {}
        """uid → record of every pod of ours not bound yet."""
        self._uid_by_key: dict[workflow.TaskKey, str] = {}
        self._names = frozenset(settings.scheduler_names)
        self._execution_prefix = f"{settings.scheduler_names[0]}-"
        self._namespaces = frozenset(settings.namespaces)
        self._finished: OrderedDict[str, None] = OrderedDict()
        self._running_runs: dict[str, workflow.RunId] = {}
        """uid → run of our pods bound and not finished: their runs are never evicted."""
        self._peak_usage: dict[tuple[str, str], int] = {}
        self._fetching_dags: set[workflow.RunId] = set()
        self._outstanding = 0
        self._capped = False
        self._dirty = True
        self._settle_from = math.inf
        """When the first new pending task not yet seen by a cycle arrived (inf: none)."""
        self._last_arrival = -math.inf
        self._cycle_id = 0
        self._cycle_retry_at = -math.inf
        self._cycle_retries = 0
        self._next_eviction = 0.0
        self._next_tick = 0.0
        self._next_memory_save = 0.0
        self._next_expiry = 0.0
        self._set_aside: set[str] = set()
        """uids of tasks set aside (kept small; a stale uid is dropped when met)."""
        self._saved_memory_version = memory.version if memory is not None else 0
        self._saved_history_version = self.history.version
        self.gangs = gangs_mod.GangTracker(settings.gangs)
        """PodGroups, gang members bound, the cycle's gang board (``scheduler.core.gang``)."""
        self.grower = (
            grow_mod.GrowTracker(settings_mod.grow_policy(settings), metrics)
            if settings.grow_in_place
            else None
        )
        """Grow-in-place of running tasks of ours (``grow_in_place``), else ``None``."""
        self.shrinker = (
            shrink_mod.ShrinkTracker(
                shrink.ShrinkPolicy(min_saving_bytes=settings.shrink_min_saving_bytes),
                memory,
                metrics,
            )
            if settings.shrink_running and memory is not None
            else None
        )
        """Shrink-in-place of running tasks started before their step could be planned
        (``shrink_running``, with a memory model), else ``None``."""

    # --- ownership and labels ----------------------------------------------------------------

    def is_ours(self, facts: podfacts.PodFacts) -> bool:
        """True when the pod names one of our schedulers and is in a watched namespace."""
        if self._namespaces and facts.ref.namespace not in self._namespaces:
            return False
        name = facts.scheduler_name
        return name in self._names or name.startswith(self._execution_prefix)

    def labels_of(self, facts: podfacts.PodFacts) -> tuple[workflows.TaskLabels, bool]:
        """Return the workflow labels of a pod of ours after every hook, and whether held."""
        labels = workflows.read_task_labels(facts, execution_prefix=self._execution_prefix)
        held = False
        for hook in self.task_hooks:
            labels, hold = hook.describe(facts, labels)
            held = held or hold
        return labels, held

    def phase_of(self, uid: str) -> PodPhase | None:
        """The phase of a pod of ours not bound yet (``None`` otherwise)."""
        record = self.pods.get(uid)
        return None if record is None else record.phase

    # --- pods ------------------------------------------------------------------------------

    def pod_changed(
        self, facts: podfacts.PodFacts, *, deleted: bool, now: float
    ) -> list[Instruction]:
        """Apply one watch event about a pod."""
        out: list[Instruction] = []
        uid = facts.ref.uid
        if deleted or facts.finished:
            self._pod_gone(facts, out)
            if deleted:
                self._finished.pop(uid, None)  # no event about this uid follows a deletion
            return out
        if facts.node_name:
            self._note_running(facts)
            self.gangs.bound_pod_seen(facts)
            record = self.pods.pop(uid, None)
            if record is not None:
                self._drop_record(uid, record)
            self.cache.upsert_pod(podfacts.pod_info(facts))
            if self.grower is not None:
                self.grower.pod_seen(facts, ours=self.is_ours(facts), cache=self.cache)
            if self.shrinker is not None and self.is_ours(facts):
                # The pod's own labels: the task hooks describe pending pods only (the CWS
                # hook would move a running task back to UNSCHEDULED).
                self.shrinker.pod_seen(
                    facts,
                    lambda: workflows.read_task_labels(
                        facts, execution_prefix=self._execution_prefix
                    ),
                )
            return out
        if not self.is_ours(facts) or facts.terminating:
            self._forget_pending(uid)
            return out
        record = self.pods.get(uid)
        if record is not None and record.phase is PodPhase.BINDING:
            return out  # the bind worker decides; the watch confirms
        if record is None and self.cache.pod_state(uid) is cluster.PodState.ASSUMED:
            # Bound by us and not yet confirmed: an older state (e.g. the resize or the label
            # patch made before the Binding) arriving late. The watch confirms; the assumption
            # expires if it never does.
            return out
        self._upsert_pending(facts, now, out)
        return out

    def redescribe(self, uid: str, *, now: float) -> list[Instruction]:
        """Run the task hooks again for a pending pod whose registration changed.

        A queued or held pod is described afresh (it may become held or be released); pods
        being bound, bound or unknown are left alone.
        """
        record = self.pods.get(uid)
        if record is None or record.phase is PodPhase.BINDING:
            return []
        out: list[Instruction] = []
        self._forget_pending(uid)
        self._upsert_pending(record.facts, now, out)
        return out

    def refresh_held(self, *, now: float) -> list[Instruction]:
        """Re-describe held pods (after a batch was released or a task registered)."""
        out: list[Instruction] = []
        held = [r.facts for r in self.pods.values() if r.phase is PodPhase.HELD]
        for facts in held:
            self._forget_pending(facts.ref.uid)
            self._upsert_pending(facts, now, out)
        return out

    def _upsert_pending(self, facts: podfacts.PodFacts, now: float, out: list[Instruction]) -> None:
        uid = facts.ref.uid
        known = self.pods.get(uid)
        if known is not None and known.task is not None:
            labels = known.labels
        else:
            labels, held = self.labels_of(facts)
            if held:
                self.pods[uid] = TrackedPod(facts=facts, phase=PodPhase.HELD, labels=labels)
                return
        problems = list(facts.problems) + list(labels.problems)
        if known is None or known.task is None:
            problems += self.registry.observe_task(labels)
            self._request_dags(out)
            submission = self.registry.next_submission()
            self._last_arrival = now
            self._settle_from = min(self._settle_from, now)
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
        gang_ref, gang_problems = self.gangs.ref_for(facts, labels)
        if gang_ref is not None or gang_problems:
            task = dataclasses.replace(task, gang=gang_ref)
            problems += gang_problems
        other = self._uid_by_key.get(task.key)
        if other is not None and other != uid:
            # Two live pods claim the same task id: keep both schedulable by making the
            # second one's key unique, and say so.
            problems.append(podfacts.Problem("task id", f"{task.key.task} already used by {other}"))
            task = dataclasses.replace(
                task, key=workflow.TaskKey(labels.run, f"{labels.task_id}#{facts.ref.name}")
            )
        if self.memory is not None:
            self.memory.set_workflow(labels.run, labels.workflow_name)
            key, tool = self.memory.key(labels.run, labels.step), keys.TOOL_ANNOTATION
            self.memory.set_image(key, facts.first_container_image, facts.annotations.get(tool, ""))
            if len(facts.container_names) != 1 or facts.first_container_memory[0] <= 0:
                self.memory.mark_unscalable(task.key)
        record = TrackedPod(facts=facts, phase=PodPhase.QUEUED, labels=labels, task=task)
        record.queued_at = known.queued_at if known is not None else math.nan
        if math.isnan(record.queued_at) and record.phase is PodPhase.QUEUED:
            record.queued_at = now
        if known is not None:
            record.problems_reported = known.problems_reported
            if known.phase is PodPhase.SET_ASIDE:
                record.phase, record.failures = PodPhase.SET_ASIDE, known.failures
                record.retry_at = known.retry_at
        self.pods[uid] = record
        self._uid_by_key[task.key] = uid
        if record.phase is PodPhase.QUEUED:
            self.queue.add(task)
        self._dirty = True
        if problems and not record.problems_reported:
            record.problems_reported = True
            out.append(self._report_problems(facts, problems))

    def _drop_record(self, uid: str, record: TrackedPod) -> None:
        """Undo a record's traces in the queue, the key index and the cache."""
        if record.task is not None:
            self.queue.remove(record.task.key)
            if self._uid_by_key.get(record.task.key) == uid:
                del self._uid_by_key[record.task.key]

    def _forget_pending(self, uid: str) -> None:
        """Drop the record of a pod that is no longer ours to place (not being bound)."""
        record = self.pods.get(uid)
        if record is None or record.phase is PodPhase.BINDING:
            return
        del self.pods[uid]
        self._drop_record(uid, record)

    def _pod_gone(self, facts: podfacts.PodFacts, out: list[Instruction]) -> None:
        uid = facts.ref.uid
        record = self.pods.pop(uid, None)
        if record is not None:
            self._drop_record(uid, record)
            if record.phase is PodPhase.BINDING:
                self.cache.forget(uid)
        self.cache.remove_pod(uid)
        self.gangs.member_gone(uid)
        self._running_runs.pop(uid, None)
        if self.grower is not None:
            self.grower.pod_gone(uid)
        if self.shrinker is not None:
            self.shrinker.pod_gone(uid)
        self._dirty = True
        if facts.finished and self.is_ours(facts) and uid not in self._finished:
            self._finished[uid] = None
            if len(self._finished) > FINISHED_MEMORY:
                self._finished.popitem(last=False)
            labels, _ = self.labels_of(facts)
            self.registry.record_finished(
                labels, success=facts.phase == "Succeeded", runtime_s=facts.runtime_s
            )
            for hook in self.task_hooks:
                hook.finished(facts, labels)
            self._observe_memory(facts, labels)
            if facts.phase == "Succeeded" and facts.runtime_s is not None:
                workflow_key = labels.workflow_name or str(labels.run)
                self.history.observe_runtime(workflow_key, labels.step, facts.runtime_s)
        self._peak_usage.pop((facts.ref.namespace, facts.ref.name), None)

    def _report_problems(
        self, facts: podfacts.PodFacts, problems: list[podfacts.Problem]
    ) -> RecordEvent:
        text = "; ".join(str(p) for p in problems)[:900]
        for problem in problems:
            kind = problem.field.split("[")[0].split(".")[0] or "other"
            self.metrics.input_errors.labels(kind=kind if len(kind) < 40 else "other").inc()
        log.warning(
            "malformed workflow metadata ignored",
            extra={"pod": f"{facts.ref.namespace}/{facts.ref.name}", "problems": text},
        )
        return RecordEvent(
            namespace=facts.ref.namespace,
            name=facts.ref.name,
            uid=facts.ref.uid,
            reason="InvalidWorkflowMetadata",
            note=f"ignored: {text}",
            event_type="Warning",
        )

    # --- DAG documents -----------------------------------------------------------------------

    def _request_dags(self, out: list[Instruction]) -> None:
        for run, ref in self.registry.pending_dag_refs():
            if run not in self._fetching_dags:
                self._fetching_dags.add(run)
                out.append(FetchDag(run=run, ref=ref))

    def dag_loaded(self, item: DagLoaded) -> list[Instruction]:
        """Apply (or refuse, with Events) a run's DAG document."""
        self._fetching_dags.discard(item.run)
        error = self.registry.apply_dag_document(item.run, item.text)
        self._dirty = True
        if error is None:
            return []
        self.metrics.input_errors.labels(kind="dag").inc()
        log.warning("DAG document refused", extra={"run": item.run, "error": error})
        out: list[Instruction] = []
        if item.configmap is not None:
            # On the ConfigMap itself: reported even when every pod of the run is bound.
            namespace, name, uid = item.configmap
            out.append(
                RecordEvent(
                    namespace=namespace,
                    name=name,
                    uid=uid,
                    regarding_kind="ConfigMap",
                    reason="InvalidWorkflowDAG",
                    note=error[:900],
                    event_type="Warning",
                )
            )
        for record in self.pods.values():
            if record.labels.run == item.run:
                ref = record.facts.ref
                out.append(
                    RecordEvent(
                        namespace=ref.namespace,
                        name=ref.name,
                        uid=ref.uid,
                        reason="InvalidWorkflowDAG",
                        note=error[:900],
                        event_type="Warning",
                    )
                )
                break
        return out

    # --- nodes and usage ---------------------------------------------------------------------

    def node_changed(self, name: str, info: cluster.NodeInfo | None) -> None:
        """Add or replace a node (``info``), or remove it (``None``)."""
        if info is None:
            self.cache.remove_node(name)
        else:
            self.cache.upsert_node(info)
        self._dirty = True

    def node_usage_changed(self, infos: Sequence[cluster.NodeInfo]) -> None:
        """Replace nodes whose reported usage changed (does not trigger a cycle)."""
        for info in infos:
            self.cache.upsert_node(info)

    def pod_usage(
        self, peaks: Mapping[tuple[str, str], int], *, leading: bool = True
    ) -> list[Instruction]:
        """Raise the remembered peak memory of pods (namespace, name) to new samples.

        With grow-in-place on and this replica leading, returns the grows (and notices about
        tasks that could not be grown) the new usage calls for.
        """
        for key, total in peaks.items():
            if total > self._peak_usage.get(key, 0):
                self._peak_usage[key] = total
        if self.grower is None or not leading:
            return []
        grows = self.grower.usage(self._peak_usage, self.cache)
        if any(isinstance(g, grow_mod.GrowMemory) for g in grows):
            self._dirty = True  # the cache changed: less room for pending tasks
        return list(grows)

    def shrink_reported(self, report: shrink_mod.ShrinkReported) -> None:
        """Count the outcome of a shrink (a refused one is not tried again)."""
        if self.shrinker is not None:
            self.shrinker.reported(report)

    def grow_reported(self, report: grow_mod.GrowReported) -> None:
        """Apply the outcome of a grow (a refusal gives the room back)."""
        if self.grower is not None:
            self.grower.reported(report, self.cache)
            self._dirty = True

    # --- the scheduling cycle ----------------------------------------------------------------

    def bind_slots(self) -> int:
        """Binds a cycle may still hand out (handed out and not yet reported are counted)."""
        return self.max_in_flight_binds - self._outstanding

    def cycle_due(self, *, now: float, leading: bool) -> bool:
        """True when a cycle should run now.

        That is: state changed, leading, room for binds, and the tasks arrived since the last
        cycle settled (``Settings.arrival_settle_s``).
        """
        return (
            self._dirty
            and leading
            and now >= self._cycle_retry_at
            and now >= self._settled_at()
            and self.bind_slots() > 0
            and len(self.queue) > 0
        )

    def _settled_at(self) -> float:
        """When the tasks arrived since the last cycle count as one settled release.

        No wait when it is off (the default), with no new task since the last cycle, or under a
        ranking that orders by arrival.
        """
        if (
            self.settings.arrival_settle_s <= 0
            or math.isinf(self._settle_from)
            or interfaces.orders_by_arrival(self.policies.ranking)
        ):
            return -math.inf
        return min(
            self._last_arrival + self.settings.arrival_settle_s,
            self._settle_from + self.settings.arrival_settle_max_s,
        )

    def wake_at(self, *, now: float) -> float:
        """The next time ``tick`` or a cycle retry has work, for the shell's idle wait."""
        times = [self._next_tick, self._next_eviction, self._next_memory_save, self._next_expiry]
        if self._cycle_retry_at > now:
            times.append(self._cycle_retry_at)
        settled_at = self._settled_at()
        if settled_at > now:
            times.append(settled_at)
        for uid in self._set_aside:
            record = self.pods.get(uid)
            if record is not None and record.phase is PodPhase.SET_ASIDE:
                times.append(record.retry_at)
        return min(times)

    def mark_dirty(self) -> None:
        """Ask for a cycle at the next opportunity (e.g. leadership was gained)."""
        self._dirty = True

    def cycle(
        self, *, now: float, leading: bool
    ) -> tuple[decisions.CycleResult | None, list[Instruction]]:
        """Run one scheduling cycle and turn its decisions into instructions.

        Places nothing with an empty queue, no free bind slot, or while not ``leading``. A
        cycle that raises is handled (see the module docstring), never propagated.
        """
        slots = self.bind_slots()
        if not leading or slots <= 0:
            return None, []  # stays dirty: the cycle runs once this replica may place
        self._dirty = False
        self._settle_from = math.inf
        if not len(self.queue):
            return None, []
        self._cycle_id += 1
        ctx = context.CycleContext(
            cycle_id=self._cycle_id,
            now=now,
            rng=self.rng,
            settings=context.CycleSettings(
                max_binds=slots,
                unschedulable_report_interval_s=self.settings.unschedulable_report_interval_s,
            ),
        )
        try:
            if self.queue.gang_member_count:
                # Gangs are placed by the reference cycle only; the incremental state then
                # restarts cold (it must not miss what this cycle changed).
                self.cycles.reset()
                result = cycle.run_cycle(
                    snapshot=self.cache.snapshot(),
                    queue=self.queue,
                    dags=self.registry.dags,
                    policies=self.policies,
                    ctx=ctx,
                    gangs=self.gangs.board_for_cycle(),
                )
            else:
                result = self.cycles.run_cycle(
                    snapshot=self.cache.snapshot(),
                    queue=self.queue,
                    dags=self.registry.dags,
                    policies=self.policies,
                    ctx=ctx,
                )
        except Exception as exc:  # a policy broke its contract: keep scheduling the rest
            return None, self._cycle_failed(exc, now)
        self._cycle_retries = 0
        self.stats.cycles += 1
        self.queue.apply(result)
        self._capped = len(result.binds) >= slots
        out: list[Instruction] = []
        resizes = {d.task: d for d in result.decisions if isinstance(d, decisions.Resize)}
        for decision in result.decisions:
            if isinstance(decision, decisions.Bind):
                out.extend(self._start_bind(decision, resizes.get(decision.task), now))
            elif isinstance(decision, decisions.MarkUnschedulable):
                out.extend(self._unschedulable(decision))
            elif isinstance(decision, decisions.Reject):
                self.metrics.schedule_attempts.labels(result="unschedulable").inc()
        # The gang clocks need the queued gangs, not the order; without a gang member queued,
        # no gang waits and the queue is not walked at all.
        queued = self.queue.waiting_tasks() if self.queue.gang_member_count else ()
        self.gangs.board.after_cycle(queued, now)
        gang_of = {t.key: t.gang.key for t in self._binding_gang_tasks(result) if t.gang}
        return result, self.gangs.group_binds(out, gang_of) if gang_of else out

    def _binding_gang_tasks(self, result: decisions.CycleResult) -> list[workflow.Task]:
        """The tasks of gangs that this cycle's binds place."""
        out = []
        for bind in result.binds:
            record = self.pods.get(bind.pod.uid) if bind.pod is not None else None
            if record is not None and record.task is not None and record.task.gang is not None:
                out.append(record.task)
        return out

    def pod_group_changed(
        self, info: translate.PodGroupInfo, *, deleted: bool, now: float
    ) -> list[Instruction]:
        """A PodGroup was added, changed or deleted: re-read the gang of its queued pods."""
        if not self.gangs.pod_group_changed(info, deleted=deleted):
            return []
        out: list[Instruction] = []
        for record in list(self.pods.values()):
            facts = record.facts
            if record.task is None or record.phase is PodPhase.BINDING:
                continue
            if facts.scheduling_group != info.name or facts.ref.namespace != info.namespace:
                continue
            ref, problems = self.gangs.ref_for(facts, record.labels)
            record.task = dataclasses.replace(record.task, gang=ref)
            if record.phase is PodPhase.QUEUED:
                self.queue.add(record.task)
            if problems:
                out.append(self._report_problems(facts, problems))
        self._dirty = True
        return out

    def _start_bind(
        self, bind: decisions.Bind, resize: decisions.Resize | None, now: float
    ) -> list[Instruction]:
        uid = bind.pod.uid if bind.pod is not None else self._uid_by_key.get(bind.task, "")
        record = self.pods.get(uid)
        if record is None or bind.pod is None:
            return []
        record.phase, record.bind = PodPhase.BINDING, bind
        record.failures, record.retry_at = 0, math.inf
        self.gangs.member_bound(uid, record.task.gang if record.task is not None else None)
        if not math.isnan(record.queued_at):
            self.metrics.pod_stage_duration.labels(stage="queue_wait").observe(
                max(0.0, now - record.queued_at)
            )
        self.cache.assume(
            cluster.PodInfo(
                uid=uid,
                node_name=bind.node,
                request=bind.request,
                namespace=bind.pod.namespace,
                name=bind.pod.name,
            )
        )
        self._outstanding += 1
        facts = record.facts
        return [
            StartBind(
                bind=bind,
                resize=resize,
                container=facts.container_names[0] if facts.container_names else "",
                resize_limit=facts.memory_limit_follows_request,
                created=facts.created,
            )
        ]

    def _unschedulable(self, decision: decisions.MarkUnschedulable) -> list[Instruction]:
        pod = decision.pod
        if pod is None:
            return []
        log.info(
            "unschedulable",
            extra={
                "cycle_id": decision.cycle_id,
                "pod": f"{pod.namespace}/{pod.name}",
                "reason": decision.reason,
            },
        )
        return [
            SetCondition(
                namespace=pod.namespace,
                name=pod.name,
                reason="Unschedulable",
                message=decision.reason,
            ),
            RecordEvent(
                namespace=pod.namespace,
                name=pod.name,
                uid=pod.uid,
                reason="FailedScheduling",
                note=decision.reason,
                event_type="Warning",
            ),
        ]

    def _cycle_failed(self, exc: Exception, now: float) -> list[Instruction]:
        """Count a failed cycle; set aside the task that fails alone, if any."""
        self.stats.cycle_failures += 1
        snapshot = self.cache.snapshot()
        dags = self.registry.dags

        def fails(subset: Sequence[workflow.Task]) -> bool:
            trial = SchedulingQueue()
            for task in subset:
                trial.add(task)
            ctx = context.CycleContext(cycle_id=self._cycle_id, now=now)
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
        uid = self._uid_by_key.get(culprit.key) if culprit is not None else None
        record = self.pods.get(uid) if uid is not None else None
        if culprit is None or uid is None or record is None:
            # Nothing to blame on one task: retry the whole cycle after a growing delay.
            self.metrics.cycle_errors.labels(action="retried").inc()
            self._cycle_retries += 1
            self._cycle_retry_at = now + self._backoff_s(self._cycle_retries)
            self._dirty = True
            return []
        self.metrics.cycle_errors.labels(action="task_set_aside").inc()
        record.failures += 1
        delay = self._backoff_s(record.failures)
        record.phase, record.retry_at = PodPhase.SET_ASIDE, now + delay
        self._set_aside.add(uid)
        self.queue.remove(culprit.key)
        self._dirty = True
        ref = record.facts.ref
        return [
            RecordEvent(
                namespace=ref.namespace,
                name=ref.name,
                uid=ref.uid,
                reason="FailedScheduling",
                note=f"scheduling this pod failed ({type(exc).__name__}: {str(exc)[:300]}); "
                f"set aside for {delay:g}s, other pods are scheduled meanwhile",
                event_type="Warning",
            )
        ]

    def _backoff_s(self, failures: int) -> float:
        """Delay after ``failures`` consecutive failures: 1 s doubling up to the cap."""
        cap = self.settings.unschedulable_backoff_s
        return float(min(cap, min(1.0, cap) * 2 ** min(failures - 1, 30)))

    # --- the binding cycle's outcomes --------------------------------------------------------

    def bind_reported(self, outcome: BindOutcome, *, now: float) -> list[Instruction]:
        """Apply a bind worker's outcome: confirm, forget and requeue, or drop."""
        bind = outcome.bind
        assert bind.pod is not None
        uid = bind.pod.uid
        self._outstanding -= 1
        if self._capped and self.bind_slots() >= self.max_in_flight_binds // 2:
            self._capped = False  # half the bind slots are free again: place more
            self._dirty = True
        record = self.pods.get(uid)
        if record is not None and record.bind is not bind:
            record = None  # a newer record of the same pod: this outcome is stale
        if outcome.abandoned:
            self.stats.binds_abandoned += 1
            why = "gang_undone" if outcome.reason == GANG_NOT_SENT else "not_leader"
            self.metrics.bind_errors.labels(reason=why).inc()
            self._undo_bind(uid, record, backoff=False, now=now)
            return []
        self.metrics.binding_duration.observe(outcome.seconds)
        if outcome.ok:
            self.stats.binds_ok += 1
            self.metrics.schedule_attempts.labels(result="scheduled").inc()
            self.cache.finish_binding(uid, now=now, ttl=self.settings.assumed_pod_ttl_s)
            if record is not None:
                del self.pods[uid]
                self._drop_record(uid, record)
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
            return []
        if outcome.resize_refused:
            return self._resize_refused(outcome, record, now)
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
        if outcome.status == 404:
            self.cache.forget(uid)
            self.gangs.member_gone(uid)
            if record is not None:
                del self.pods[uid]
                self._drop_record(uid, record)
            return []  # the pod is gone; its DELETED event is on its way
        self._undo_bind(uid, record, backoff=True, now=now)
        if record is None or reason == "conflict":
            return []  # a conflict means somebody else bound it: nothing to report
        return [
            RecordEvent(
                namespace=bind.pod.namespace,
                name=bind.pod.name,
                uid=uid,
                reason="FailedScheduling",
                note=f"Binding to {bind.node} rejected ({outcome.status}): "
                f"{outcome.reason[:300]}; retrying",
                event_type="Warning",
                action="Binding",
            )
        ]

    def _undo_bind(self, uid: str, record: TrackedPod | None, *, backoff: bool, now: float) -> None:
        """Forget the assumption; the task returns to its place (with a backoff or not).

        If the pod was bound elsewhere meanwhile, the watch removes it again.
        """
        self.cache.forget(uid)
        self.gangs.member_gone(uid)
        if record is None or record.task is None:
            return
        record.phase, record.bind = PodPhase.QUEUED, None
        key = record.task.key
        if key not in self.queue:  # e.g. its entry was dropped meanwhile
            self.queue.add(record.task)
        if backoff:
            self.queue.bind_failed(key, now=now)
        else:
            self.queue.bind_abandoned(key)
        self._dirty = True

    def _resize_refused(
        self, outcome: BindOutcome, record: TrackedPod | None, now: float
    ) -> list[Instruction]:
        """Forget the smaller reservation; requeue at once to bind with the original request."""
        bind = outcome.bind
        assert bind.pod is not None
        self.metrics.resizes.labels(result="refused").inc()
        log.warning(
            "memory resize refused; binding with the original request",
            extra={"pod": f"{bind.pod.namespace}/{bind.pod.name}", "status": outcome.status},
        )
        if self.memory is not None:
            self.memory.mark_unscalable(bind.task)
        if outcome.status == 404:
            self.cache.forget(bind.pod.uid)
            if record is not None:
                del self.pods[bind.pod.uid]
                self._drop_record(bind.pod.uid, record)
        else:
            self._undo_bind(bind.pod.uid, record, backoff=False, now=now)
        return [
            RecordEvent(
                namespace=bind.pod.namespace,
                name=bind.pod.name,
                uid=bind.pod.uid,
                reason="ResizeRefused",
                note=f"memory resize refused ({outcome.reason[:200]}); using the original request",
                event_type="Warning",
            )
        ]

    # --- time --------------------------------------------------------------------------------

    def tick(self, *, now: float, leading: bool) -> list[Instruction]:
        """Do what time makes due: the periodic cycle, set-aside retries, expiry, eviction.

        Also returns a ``SaveMemory`` and a ``SaveHistory`` when leading and the observations or
        the history changed since the last save, at most every ``memory_save_interval_s``, and,
        leading with ``shrink_running``, the shrinks of running tasks whose step the memory
        model learned about.
        """
        out: list[Instruction] = []
        if now >= self._next_tick:
            self._next_tick = now + self.settings.cycle_interval_s
            self._dirty = True
        if now >= self._next_memory_save:
            self._next_memory_save = now + self.settings.memory_save_interval_s
            if leading:
                out.extend(self.stores_to_save())
        for uid in list(self._set_aside):
            record = self.pods.get(uid)
            if record is None or record.phase is not PodPhase.SET_ASIDE:
                self._set_aside.discard(uid)
            elif now >= record.retry_at and record.task is not None:
                self._set_aside.discard(uid)
                record.phase = PodPhase.QUEUED
                self.queue.add(record.task)
                self._dirty = True
        if now >= self._next_expiry:
            self._next_expiry = now + EXPIRY_PERIOD_S
            self._expire_assumed(now)
        if self.shrinker is not None and leading:
            out.extend(self.shrinker.due(self._peak_usage))
        self.evict_idle(now)
        return out

    def _expire_assumed(self, now: float) -> None:
        expired = self.cache.expire(now=now)
        if expired:
            self.stats.assumed_expired += len(expired)
            log.warning(
                "assumed pods never confirmed by the watch were forgotten",
                extra={"pods": ",".join(f"{p.namespace}/{p.name}" for p in expired)[:500]},
            )
            self._dirty = True

    def stores_to_save(self) -> list[SaveMemory | SaveHistory]:
        """The memory observations and the workflow history, each if changed since last time."""
        saves: list[SaveMemory | SaveHistory] = []
        memory = self.memory_to_save()
        if memory is not None:
            saves.append(memory)
        if self.history.version != self._saved_history_version:
            self._saved_history_version = self.history.version
            saves.append(SaveHistory(text=self.history.export()))
        return saves

    def memory_to_save(self) -> SaveMemory | None:
        """The observations to store if they changed since the last call (leader only)."""
        if self.memory is None or self.memory.version == self._saved_memory_version:
            return None
        self._saved_memory_version = self.memory.version
        return SaveMemory(text=self.memory.export())

    # --- bounded state -----------------------------------------------------------------------

    def _note_running(self, facts: podfacts.PodFacts) -> None:
        """Remember the run of a bound pod of ours until it finishes (keeps the run alive)."""
        uid = facts.ref.uid
        if uid in self._running_runs or not self.is_ours(facts):
            return
        labels = workflows.read_task_labels(facts, execution_prefix=self._execution_prefix)
        self._running_runs[uid] = labels.run

    def active_runs(self) -> set[workflow.RunId]:
        """Runs with a task held, queued, set aside, being bound or running."""
        runs = {record.labels.run for record in self.pods.values()}
        runs.update(self._running_runs.values())
        return runs

    def evict_idle(self, now: float) -> None:
        """Forget what finished runs and departed tasks left behind; no-op between periods.

        Every ``min(10 s, finished_run_idle_s / 2)``: runs learned from pods that have had no
        active task (``active_runs``) for ``finished_run_idle_s`` leave the registry; the
        memory model keeps marks only for tasks still tracked and workflow names only for
        known runs; peak-usage samples only for pods still counted on a node.
        """
        if now < self._next_eviction:
            return
        idle_s = self.settings.finished_run_idle_s
        self._next_eviction = now + min(EVICTION_PERIOD_S, idle_s / 2)
        evicted = self.registry.evict_idle(active=self.active_runs(), now=now, idle_s=idle_s)
        if evicted:
            log.info("forgot %d idle workflow runs", len(evicted), extra={"runs": len(evicted)})
        self.metrics.workflow_runs.set(len(self.registry))
        if self.memory is not None:
            tasks = {r.task.key for r in self.pods.values() if r.task is not None}
            self.memory.retain(tasks=tasks, runs=self.registry.dags)
        if self._peak_usage:
            counted = {(pod.namespace, pod.name) for pod in self.cache.pods()}
            for key in [key for key in self._peak_usage if key not in counted]:
                del self._peak_usage[key]

    # --- memory observations -----------------------------------------------------------------

    def _observe_memory(self, facts: podfacts.PodFacts, labels: workflows.TaskLabels) -> None:
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

    def _peak_bytes(self, facts: podfacts.PodFacts) -> int:
        """Peak memory of a finished pod: the engine's annotation, else metrics.k8s.io's max."""
        raw = facts.annotations.get(keys.PEAK_MEMORY_ANNOTATION)
        if raw is not None:
            try:
                return resources.integer_value(raw.strip())
            except (ValueError, ArithmeticError):
                self.metrics.input_errors.labels(kind=keys.PEAK_MEMORY_ANNOTATION).inc()
        return self._peak_usage.get((facts.ref.namespace, facts.ref.name), 0)

    # --- metrics -----------------------------------------------------------------------------

    def update_queue_metrics(self, *, now: float, wall_now: float) -> None:
        """Set the pending-task gauges (``wall_now``: POSIX seconds, for staleness)."""
        gated, backoff, unschedulable = self.queue.waiting_counts(now)
        held = set_aside = stale = 0
        stale_before = wall_now - self.settings.stale_pending_s
        for record in self.pods.values():
            if record.phase is PodPhase.HELD:
                held += 1
            elif record.phase is PodPhase.SET_ASIDE:
                set_aside += 1
            if 0 < record.facts.created < stale_before:
                stale += 1
        pending = self.metrics.pending_tasks
        pending.labels(queue="gated").set(gated)
        pending.labels(queue="batch").set(held)
        pending.labels(queue="set_aside").set(set_aside)
        pending.labels(queue="backoff").set(backoff)
        pending.labels(queue="unschedulable").set(unschedulable)
        pending.labels(queue="active").set(
            max(0, len(self.queue) - gated - backoff - unschedulable)
        )
        self.metrics.stale_pending.set(stale)


__all__ = [
    "BindOutcome",
    "DagLoaded",
    "FetchDag",
    "Instruction",
    "PodPhase",
    "RecordEvent",
    "SaveHistory",
    "SaveMemory",
    "SchedulerState",
    "SetCondition",
    "StartBind",
    "Stats",
    "TaskHook",
    "TrackedPod",
]
