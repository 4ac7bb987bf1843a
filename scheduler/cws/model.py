"""Errors, task states, requests and per-execution records of the CWS state (pure data)."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from predictors import allocation, base
from scheduler import registry
from scheduler.core import interfaces, workflow

MAX_EXECUTIONS = 1000
"""Executions registered at once; more are refused (``LIMIT``) until some are deleted."""


class ErrorKind(enum.StrEnum):
    """Why a request was refused; the REST layer maps each kind to one HTTP status."""

    INVALID = "invalid"
    """The request is malformed or inconsistent with the state (400)."""
    UNKNOWN_EXECUTION = "unknown_execution"
    """No execution of that name is registered (400, as in CWS)."""
    UNKNOWN_NAME = "unknown_name"
    """A strategy names an unknown policy (404, as in CWS)."""
    UNKNOWN_TASK = "unknown_task"
    """No task of that id is registered in the execution (404)."""
    DUPLICATE = "duplicate"
    """The execution or the task id is already registered (409, D20)."""
    LIMIT = "limit"
    """A state bound is reached (429)."""


class CwsError(Exception):
    """A refused request; nothing was changed."""

    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


class TaskState(enum.StrEnum):
    """CWS task states (cws-semantics 1.5); a task only ever moves to a higher level."""

    RECEIVED_CONFIG = "RECEIVED_CONFIG"
    UNSCHEDULED = "UNSCHEDULED"
    SCHEDULED = "SCHEDULED"
    PREPARED = "PREPARED"
    INIT_WITH_ERRORS = "INIT_WITH_ERRORS"
    PROCESSING_FINISHED = "PROCESSING_FINISHED"
    FINISHED = "FINISHED"
    FINISHED_WITH_ERROR = "FINISHED_WITH_ERROR"
    ERROR = "ERROR"
    DELETED = "DELETED"


_LEVEL = {
    TaskState.RECEIVED_CONFIG: 0,
    TaskState.UNSCHEDULED: 1,
    TaskState.SCHEDULED: 2,
    TaskState.PREPARED: 3,
    TaskState.INIT_WITH_ERRORS: 3,
    TaskState.PROCESSING_FINISHED: 4,
    TaskState.FINISHED: 5,
    TaskState.FINISHED_WITH_ERROR: 5,
    TaskState.ERROR: 1000,
    TaskState.DELETED: 1_000_000,
}


# --- requests (built and validated by scheduler.rest.schemas) ------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Registration:
    """The body of ``POST /v1/scheduler/{e}`` (SchedulerConfig) that wfsched uses."""

    name: str
    strategy: str
    namespace: str = "default"
    memory_predictor: str | None = None
    min_memory: int | None = None
    max_memory: int | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    """Other fields, recorded as given (``dns``, ``costFunction``, ``traceEnabled``, ...)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Vertex:
    """One DAG vertex: CWS ``{uid, label, type}``."""

    uid: int
    kind: workflow.VertexKind
    label: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Edge:
    """One DAG edge: CWS ``{uid, label, from, to}``; an absent endpoint is ``None``."""

    uid: int
    source: int | None
    target: int | None
    label: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskRegistration:
    """The body of ``POST task/{id}`` (TaskConfig) that wfsched uses."""

    process: str
    pod_name: str
    name: str | None = None
    input_size: int = 0
    memory_bytes: int | None = None
    cpus: float | None = None
    repetition: int = 0
    input_files: int = 0
    """How many entries ``inputs.fileInputs`` had (counted, not stored: it can hold 10^4+)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskMetrics:
    """The body of ``POST metrics/task/{id}``: bytes, bytes, bytes, milliseconds."""

    ram_request: int | None = None
    peak_vmem: int | None = None
    peak_rss: int | None = None
    realtime: int | None = None

    @property
    def valid(self) -> bool:
        """A usable observation (cws-semantics 5.2): ``peakRss > 0`` and ``realtime >= 0``."""
        return (
            self.peak_rss is not None
            and self.peak_rss > 0
            and self.realtime is not None
            and self.realtime >= 0
        )


# --- state --------------------------------------------------------------------------------


@dataclass(slots=True)
class TaskRecord:
    """A registered task: its registration, CWS state, pod, batch and metrics."""

    id: int
    spec: TaskRegistration
    registered_at: float
    state: TaskState = TaskState.RECEIVED_CONFIG
    error: str | None = None
    pod_uid: str = ""
    batch: int | None = None
    metrics: TaskMetrics | None = None

    def advance(self, state: TaskState) -> None:
        """Move to ``state`` if it is a higher level (CWS states never go back)."""
        if _LEVEL[state] > _LEVEL[self.state]:
            self.state = state


@dataclass(slots=True)
class Batch:
    """A batch: registered tasks whose pods were not seen yet (unready) and were (ready)."""

    id: int
    opened_at: float
    closed_at: float | None = None
    expected: int | None = None
    unready: set[int] = field(default_factory=set)
    ready: list[int] = field(default_factory=list)


@dataclass(slots=True)
class Execution:
    """One registered execution (a workflow run) and everything the REST API told about it."""

    name: str
    namespace: str
    run: workflow.RunId
    strategy: registry.PolicySpec
    policies: interfaces.Policies
    predictor: registry.PredictorSpec | None
    allocation: allocation.AllocationPolicy
    options: Mapping[str, Any]
    registered_at: float
    registration: Registration | None = None
    """The request that created it, as sent (replayed when the state is restored)."""
    last_active: float = 0.0
    """The last request or pod event of the execution (loop clock); idle ones expire."""
    vertices: dict[int, tuple[workflow.VertexKind, str | None]] = field(default_factory=dict)
    process_uid: dict[str, int] = field(default_factory=dict)
    edges: dict[int, tuple[int, int] | None] = field(default_factory=dict)
    implicit: set[str] = field(default_factory=set)
    tasks: dict[int, TaskRecord] = field(default_factory=dict)
    by_pod: dict[str, int] = field(default_factory=dict)
    batches: dict[int, Batch] = field(default_factory=dict)
    open_batch: int | None = None
    next_batch: int = 1
    predictors: dict[str, base.MemoryPredictor] = field(default_factory=dict)
    observations: dict[str, int] = field(default_factory=dict)

    def predictor_for(self, process: str) -> base.MemoryPredictor | None:
        """The predictor of ``process``, created on first use; ``None`` without a spec."""
        if self.predictor is None:
            return None
        predictor = self.predictors.get(process)
        if predictor is None:
            predictor = self.predictor.make()
            self.predictors[process] = predictor
        return predictor


@dataclass(slots=True)
class Waiting:
    """A pod of an execution without task registration, held since ``since``."""

    run: workflow.RunId
    pod: str
    since: float


@dataclass(frozen=True, slots=True)
class Observation:
    """A valid task-metrics observation, for the loop's own memory model."""

    run: workflow.RunId
    step: str
    input_bytes: int
    peak_bytes: int


@dataclass(slots=True)
class Effects:
    """What the loop must do after a state change (taken with ``take_effects``)."""

    refresh_held: bool = False
    redescribe: list[str] = field(default_factory=list)
    observations: list[Observation] = field(default_factory=list)
    batch_timeouts: int = 0

    def __bool__(self) -> bool:
        return bool(
            self.refresh_held or self.redescribe or self.observations or self.batch_timeouts
        )
