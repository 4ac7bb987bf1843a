"""An execution as a JSON document, so that a new leader can continue the run (pure).

What is kept is what scheduling the rest of the run needs: the registration as sent, the DAG's
vertices and edges (by uid, as the engine sent them), implicit processes, every registered
task's scheduling fields (process, pod name, input size and file count, memory and CPU request,
retry count, CWS state, pod uid, batch, metrics), the batches and the batch counter. Not kept:
predictor models (rebuilt by replaying the stored task metrics), timers (a restored closed batch
and the idle clock start again at restore), and nothing a request did not send (no file lists:
``TaskRegistration`` holds a count only).

Tasks are stored as positional lists (``TASK_FIELDS``) to keep a 20,000-task run small.
:func:`load` validates a document fully and raises ``ValueError`` naming the problem, so a
damaged document costs that execution only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from scheduler.core import workflow
from scheduler.cws import model

VERSION = 1
"""Format version; a document of another version is refused."""

TASK_FIELDS = (
    "id",
    "process",
    "pod",
    "name",
    "inputSize",
    "inputFiles",
    "memoryInBytes",
    "cpus",
    "repetition",
    "state",
    "error",
    "podUid",
    "batch",
    "metrics",
)
"""The order of a task's fields in a document's ``tasks`` lists."""


@dataclass(frozen=True, slots=True)
class StoredTask:
    """One task as restored: its registration and the state it had reached."""

    id: int
    spec: model.TaskRegistration
    state: model.TaskState
    error: str | None
    pod_uid: str
    batch: int | None
    metrics: model.TaskMetrics | None


@dataclass(frozen=True, slots=True)
class StoredBatch:
    """One unreleased batch as restored."""

    id: int
    closed: bool
    expected: int | None
    unready: frozenset[int]
    ready: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class StoredExecution:
    """A validated document: everything :meth:`CwsState.restore` needs."""

    registration: model.Registration
    vertices: tuple[model.Vertex, ...]
    edges: tuple[model.Edge, ...]
    implicit: tuple[str, ...]
    tasks: tuple[StoredTask, ...]
    by_pod: tuple[tuple[str, int], ...]
    batches: tuple[StoredBatch, ...]
    open_batch: int | None
    next_batch: int


def dump(exe: model.Execution) -> dict[str, Any]:
    """Return the document of ``exe`` (JSON-serialisable; shares no mutable state with it)."""
    reg = exe.registration
    if reg is None:  # built by hand (tests): describe what the execution uses
        reg = model.Registration(name=exe.name, strategy=str(exe.strategy), namespace=exe.namespace)
    return {
        "version": VERSION,
        "registration": {
            "name": reg.name,
            "strategy": reg.strategy,
            "namespace": reg.namespace,
            "memoryPredictor": reg.memory_predictor,
            "minMemory": reg.min_memory,
            "maxMemory": reg.max_memory,
            "options": dict(reg.options),
        },
        "vertices": [[uid, kind.value, label] for uid, (kind, label) in exe.vertices.items()],
        "edges": [
            [uid, ends[0], ends[1]] if ends is not None else [uid, None, None]
            for uid, ends in exe.edges.items()
        ],
        "implicit": sorted(exe.implicit),
        "tasks": [_dump_task(t) for t in exe.tasks.values()],
        "byPod": [[pod, task_id] for pod, task_id in exe.by_pod.items()],
        "batches": [
            [b.id, b.closed_at is not None, b.expected, sorted(b.unready), list(b.ready)]
            for b in exe.batches.values()
        ],
        "openBatch": exe.open_batch,
        "nextBatch": exe.next_batch,
    }


def _dump_task(task: model.TaskRecord) -> list[Any]:
    spec, m = task.spec, task.metrics
    metrics = None if m is None else [m.ram_request, m.peak_vmem, m.peak_rss, m.realtime]
    return [
        task.id,
        spec.process,
        spec.pod_name,
        spec.name,
        spec.input_size,
        spec.input_files,
        spec.memory_bytes,
        spec.cpus,
        spec.repetition,
        task.state.value,
        task.error,
        task.pod_uid,
        task.batch,
        metrics,
    ]


def load(doc: Any) -> StoredExecution:
    """Validate a document written by :func:`dump`.

    Raises:
        ValueError: The document is not one :func:`dump` writes; the message names the field.
    """
    if not isinstance(doc, Mapping):
        raise ValueError("not a JSON object")
    if doc.get("version") != VERSION:
        raise ValueError(f"version {doc.get('version')!r} is not {VERSION}")
    reg = _mapping(doc, "registration")
    registration = model.Registration(
        name=_str(reg, "name"),
        strategy=_str(reg, "strategy"),
        namespace=_str(reg, "namespace"),
        memory_predictor=_opt(reg, "memoryPredictor", str),
        min_memory=_opt(reg, "minMemory", int),
        max_memory=_opt(reg, "maxMemory", int),
        options=dict(_mapping(reg, "options")),
    )
    try:
        vertices = tuple(
            model.Vertex(uid=_int(v[0]), kind=workflow.VertexKind(v[1]), label=_opt_value(v[2]))
            for v in _list(doc, "vertices")
        )
        edges = tuple(
            model.Edge(uid=_int(e[0]), source=_opt_int(e[1]), target=_opt_int(e[2]))
            for e in _list(doc, "edges")
        )
        tasks = tuple(_load_task(t) for t in _list(doc, "tasks"))
        by_pod = tuple((str(p[0]), _int(p[1])) for p in _list(doc, "byPod"))
        batches = tuple(
            StoredBatch(
                id=_int(b[0]),
                closed=bool(b[1]),
                expected=_opt_int(b[2]),
                unready=frozenset(_int(i) for i in b[3]),
                ready=tuple(_int(i) for i in b[4]),
            )
            for b in _list(doc, "batches")
        )
    except (TypeError, IndexError, KeyError) as exc:
        raise ValueError(f"malformed entry ({exc})") from None
    implicit = tuple(str(label) for label in _list(doc, "implicit"))
    open_batch = doc.get("openBatch")
    next_batch = doc.get("nextBatch")
    if open_batch is not None and not isinstance(open_batch, int):
        raise ValueError("openBatch: expected an integer or null")
    if not isinstance(next_batch, int) or next_batch < 1:
        raise ValueError("nextBatch: expected a positive integer")
    return StoredExecution(
        registration=registration,
        vertices=vertices,
        edges=edges,
        implicit=implicit,
        tasks=tasks,
        by_pod=by_pod,
        batches=batches,
        open_batch=open_batch,
        next_batch=next_batch,
    )


def _load_task(row: Sequence[Any]) -> StoredTask:
    if not isinstance(row, list) or len(row) != len(TASK_FIELDS):
        raise ValueError(f"tasks: expected lists of {len(TASK_FIELDS)} fields")
    values = dict(zip(TASK_FIELDS, row, strict=True))
    cpus = values["cpus"]
    if cpus is not None and not isinstance(cpus, int | float):
        raise ValueError("tasks: cpus must be a number or null")
    spec = model.TaskRegistration(
        process=str(values["process"]),
        pod_name=str(values["pod"]),
        name=_opt_value(values["name"]),
        input_size=_int(values["inputSize"]),
        input_files=_int(values["inputFiles"]),
        memory_bytes=_opt_int(values["memoryInBytes"]),
        cpus=None if cpus is None else float(cpus),
        repetition=_int(values["repetition"]),
    )
    raw_metrics = values["metrics"]
    metrics = None
    if raw_metrics is not None:
        ram, vmem, rss, realtime = (_opt_int(v) for v in raw_metrics)
        metrics = model.TaskMetrics(
            ram_request=ram, peak_vmem=vmem, peak_rss=rss, realtime=realtime
        )
    return StoredTask(
        id=_int(values["id"]),
        spec=spec,
        state=model.TaskState(values["state"]),
        error=_opt_value(values["error"]),
        pod_uid=str(values["podUid"] or ""),
        batch=_opt_int(values["batch"]),
        metrics=metrics,
    )


def _mapping(doc: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = doc.get(key)
    if not isinstance(value, Mapping):
        raise ValueError(f"{key}: expected an object")
    return value


def _list(doc: Mapping[str, Any], key: str) -> list[Any]:
    value = doc.get(key)
    if not isinstance(value, list):
        raise ValueError(f"{key}: expected a list")
    return value


def _str(doc: Mapping[str, Any], key: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"registration.{key}: expected a non-empty string")
    return value


def _opt(doc: Mapping[str, Any], key: str, kind: type[Any]) -> Any:
    value = doc.get(key)
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
        raise ValueError(f"registration.{key}: expected {kind.__name__} or null")
    return value


def _int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"expected an integer, got {type(value).__name__}")
    return value


def _opt_int(value: Any) -> int | None:
    return None if value is None else _int(value)


def _opt_value(value: Any) -> str | None:
    return None if value is None else str(value)
