"""Every Prometheus metric wfsched exports, declared once.

Names follow Prometheus conventions (``wfsched_`` prefix, base units, ``_total`` for counters)
and mirror kube-scheduler's where one exists, so dashboards carry over. No label ever holds a
per-pod, per-task or per-run value: label values come from small fixed sets (results, reasons,
queue names, predictor names), so cardinality stays bounded.

A ``Metrics`` object owns its own ``CollectorRegistry`` so tests can create independent
instances; the daemon creates one and serves ``registry`` on ``/metrics``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

import scheduler

# Scheduling latencies range from milliseconds (a pod bound in the cycle after it appeared) to
# minutes (a pod that waited for capacity).
_LATENCY_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    1800.0,
)
_CYCLE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# Per-stage latencies: from tens of microseconds (a queue hand-over) to minutes (queue wait).
_STAGE_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
)
# predicted / observed peak memory: 1.0 is perfect, below 1.0 an under-prediction (OOM risk).
_RATIO_BUCKETS = (0.25, 0.5, 0.75, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0)

POD_STAGES = (
    "watch_delivery",
    "event_queue",
    "queue_wait",
    "cycle",
    "bind_pool_wait",
    "rate_limiter_wait",
    "bind_call",
    "bind_report",
)
"""Values of ``wfsched_pod_stage_duration_seconds{stage}``, in the order a pod passes them:

- ``watch_delivery``: the pod's ``creationTimestamp`` to its watch event reaching the daemon
  (the timestamp has whole seconds: an upper bound, up to 1 s too high);
- ``event_queue``: the watch event's arrival to the decision thread handling it;
- ``queue_wait``: the task entering the scheduling queue to the cycle that places it (includes
  waiting for room on a node);
- ``cycle``: the duration of the cycle that placed the pod (once per placed pod);
- ``bind_pool_wait``: the placement to a bind worker starting on it;
- ``rate_limiter_wait``: time the Binding (and resize) waited for client rate-limiter tokens;
- ``bind_call``: the Binding request itself, rate-limiter wait excluded;
- ``bind_report``: the bind worker's outcome to the decision thread handling it.
"""

BIND_ERROR_REASONS = (
    "conflict",
    "not_found",
    "forbidden",
    "invalid",
    "throttled",
    "server_error",
    "unavailable",
    "other",
    "not_leader",
)
WATCH_RESTART_REASONS = ("expired", "error", "timeout")
EVENT_OUTCOMES = ("sent", "failed", "dropped", "queue_full", "coalesced", "closed")
"""Fixed label values, exported at zero from the start so every dashboard panel has series
(a rate over a counter that never moved is 0, not "no data")."""

QUEUE_STATES = ("active", "backoff", "unschedulable", "gated", "batch", "set_aside")
"""Values of ``wfsched_pending_tasks{queue}``."""


class Metrics:
    """The metric families of one wfsched process, registered in ``registry``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self.build_info = Info("wfsched_build", "wfsched build information.", registry=r)
        self.build_info.info({"version": scheduler.__version__})
        self.leader = Gauge(
            "wfsched_leader", "1 while this replica holds the scheduling lease.", registry=r
        )
        self.pending_tasks = Gauge(
            "wfsched_pending_tasks",
            "Pending tasks waiting to be bound, by queue state.",
            ["queue"],
            registry=r,
        )
        for state in QUEUE_STATES:
            self.pending_tasks.labels(queue=state).set(0)
        self.schedule_attempts = Counter(
            "wfsched_schedule_attempts",
            "Scheduling attempts of pending tasks, by result.",
            ["result"],
            registry=r,
        )
        for result in ("scheduled", "unschedulable", "error"):
            self.schedule_attempts.labels(result=result)
        self.cycle_duration = Histogram(
            "wfsched_scheduling_cycle_duration_seconds",
            "Time one scheduling cycle (rank, filter, assign) takes.",
            buckets=_CYCLE_BUCKETS,
            registry=r,
        )
        self.pod_scheduling_latency = Histogram(
            "wfsched_pod_scheduling_duration_seconds",
            "Time from a pod's creation to its successful binding.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.pod_stage_duration = Histogram(
            "wfsched_pod_stage_duration_seconds",
            "Time a pod spends in each stage from its creation to its binding, by stage "
            "(watch_delivery, event_queue, queue_wait, cycle, bind_pool_wait, "
            "rate_limiter_wait, bind_call, bind_report).",
            ["stage"],
            buckets=_STAGE_BUCKETS,
            registry=r,
        )
        for stage in POD_STAGES:
            self.pod_stage_duration.labels(stage=stage)
        self.gc_pause = Histogram(
            "wfsched_gc_pause_seconds",
            "Garbage collections of the daemon process (every thread stops), by generation.",
            ["generation"],
            buckets=_STAGE_BUCKETS,
            registry=r,
        )
        for generation in ("0", "1", "2"):
            self.gc_pause.labels(generation=generation)
        self.binding_duration = Histogram(
            "wfsched_binding_duration_seconds",
            "Latency of the Binding API call.",
            buckets=_CYCLE_BUCKETS,
            registry=r,
        )
        self.bind_errors = Counter(
            "wfsched_bind_errors",
            "Failed Binding calls, by reason (conflict, not_found, forbidden, invalid, "
            "throttled, server_error, unavailable, other; not sent: not_leader, gang_undone).",
            ["reason"],
            registry=r,
        )
        for reason in BIND_ERROR_REASONS:
            self.bind_errors.labels(reason=reason)
        self.resizes = Counter(
            "wfsched_resize_requests",
            "In-place memory resizes before binding, by result (applied, refused, error).",
            ["result"],
            registry=r,
        )
        self.memory_grows = Counter(
            "wfsched_memory_grows",
            "Running tasks past their grow threshold, by result (grown, refused: the API "
            "server said no, no_room: the node is full, exhausted: grown too often, at_cap).",
            ["result"],
            registry=r,
        )
        for result in ("grown", "refused", "no_room", "exhausted", "at_cap"):
            self.memory_grows.labels(result=result)
        self.memory_shrinks = Counter(
            "wfsched_memory_shrinks",
            "Running tasks lowered to their step's plan once it was known, by result (decided, "
            "shrunk: the API server accepted the resize, refused).",
            ["result"],
            registry=r,
        )
        for result in ("decided", "shrunk", "refused"):
            self.memory_shrinks.labels(result=result)
        for result in ("applied", "refused", "error"):
            self.resizes.labels(result=result)
        self.prediction_ratio = Histogram(
            "wfsched_memory_prediction_ratio",
            "Predicted memory over observed peak memory of finished tasks, by predictor.",
            ["predictor"],
            buckets=_RATIO_BUCKETS,
            registry=r,
        )
        self.wasted_memory = Counter(
            "wfsched_memory_wasted_byte_seconds",
            "Memory requested but not used by finished tasks (request minus peak, times runtime).",
            registry=r,
        )
        self.observations = Gauge(
            "wfsched_memory_observations",
            "Peak-memory observations stored for the predictors.",
            registry=r,
        )
        self.stale_pending = Gauge(
            "wfsched_stale_pending_pods",
            "Pods with one of our scheduler names pending longer than the stale threshold.",
            registry=r,
        )
        self.workflow_runs = Gauge(
            "wfsched_workflow_runs",
            "Workflow runs whose DAG is kept; runs idle for finished_run_idle_s are dropped.",
            registry=r,
        )
        self.batch_timeouts = Counter(
            "wfsched_batch_timeouts",
            "Batches released by timeout because a registered pod never appeared.",
            registry=r,
        )
        self.input_errors = Counter(
            "wfsched_input_errors",
            "Malformed labels, annotations or DAG documents ignored, by kind.",
            ["kind"],
            registry=r,
        )
        self.input_errors.labels(kind="dag")
        self.events = Counter(
            "wfsched_events",
            "Kubernetes Events by type and outcome (sent, failed, dropped by the rate limiter, "
            "queue_full, coalesced, closed).",
            ["type", "outcome"],
            registry=r,
        )
        for event_type in ("Normal", "Warning"):
            for outcome in EVENT_OUTCOMES:
                self.events.labels(type=event_type, outcome=outcome)
        self.watch_restarts = Counter(
            "wfsched_watch_restarts",
            "Watch restarts, by reason (expired, error, timeout).",
            ["reason"],
            registry=r,
        )
        for reason in WATCH_RESTART_REASONS:
            self.watch_restarts.labels(reason=reason)
        self.cycle_errors = Counter(
            "wfsched_cycle_errors",
            "Scheduling cycles that raised, by what was done (task_set_aside: the task that "
            "fails alone was set aside; retried: no single task to blame, retried after a "
            "backoff).",
            ["action"],
            registry=r,
        )
        for action in ("task_set_aside", "retried"):
            self.cycle_errors.labels(action=action)
        self.event_handling_errors = Counter(
            "wfsched_event_handling_errors",
            "Watch events, bind outcomes and commands whose handling raised (logged, skipped).",
            registry=r,
        )
