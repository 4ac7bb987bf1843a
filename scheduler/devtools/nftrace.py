"""An nf-core run as a workflow to replay: a Nextflow trace file, plus its process DAG if given.

Pure apart from :func:`load_trace`, which reads the files. The trace is parsed by
``predictors.traces.parse_nextflow_trace`` (the project's one Nextflow trace reader, with its
data hygiene: only ``COMPLETED`` rows are tasks, a retried task keeps its first request). Each
task keeps what decides a replay's makespan and memory:

- **step** = the ``process`` column (the abstract task nf-cws and the predictors learn from);
- **request** = ``cpus`` (1 when missing) and ``memory`` (the nf-core preset the pipeline asked
  for; 0 when missing: no memory request);
- **runtime** = ``realtime`` (the task's own run time, without queueing or staging);
- **peak** = ``peak_rss`` (what it really used; ``None`` when missing: it never fails);
- **input size** = ``rchar`` (bytes read, the input-size proxy the predictors use).

Dependencies (``TraceWorkflow.dependency_source``):

- ``trace``: from the trace alone, so any trace file replays: a task is released once every
  task that had completed before it was submitted (``submit``, else ``start``) has completed.
  Those sets grow with time, so only the *frontier* is kept as parents: the tasks that completed
  after the latest submission among the completed ones (the rest are implied through them).
- ``dag``: from Nextflow's process DAG (``dag.html`` beside the trace, or given): a task waits
  only for the tasks of its *upstream processes* (the nearest PROCESS vertices before it,
  through operators) that had completed before it was submitted. The DAG has no task-level
  edges; completion-before-submission stands in for them, so a task never starts earlier than
  its inputs could have existed. A process missing from the DAG keeps the ``trace`` rule.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from predictors import traces

TraceError = traces.TraceError
"""The trace (or its DAG) cannot be read."""

_DAG_NODE = re.compile(
    r"\{\s*data:\s*\{\s*id:\s*'([^']+)',\s*label:\s*'([^']*)'\s*\},\s*classes:\s*'(\w+)'"
)
_DAG_EDGE = re.compile(r"\{\s*data:\s*\{\s*source:\s*'([^']+)',\s*target:\s*'([^']+)'")


@dataclass(frozen=True, slots=True, kw_only=True)
class TraceTask:
    """One task of the trace with what the replay needs (times in unscaled seconds)."""

    id: str
    name: str
    step: str
    parents: tuple[str, ...]
    runtime_s: float
    cpu_millis: int
    memory_bytes: int
    peak_bytes: int | None
    input_size: int
    image: str = ""
    """The container image the trace recorded (``container``), ``""`` when unknown."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TraceWorkflow:
    """A trace ready to replay: tasks in submission order and where their edges came from."""

    name: str
    tasks: tuple[TraceTask, ...]
    dependency_source: str
    dropped: Mapping[str, int] = field(default_factory=dict)

    @property
    def children(self) -> dict[str, list[str]]:
        """Task id -> ids of the tasks that list it as a parent."""
        result: dict[str, list[str]] = {}
        for task in self.tasks:
            for parent in task.parents:
                result.setdefault(parent, []).append(task.id)
        return result


def parse_process_dag(text: str) -> dict[str, set[str]]:
    """Return, per PROCESS label of a Nextflow ``dag.html``, its nearest upstream processes.

    Operators and origins are walked through: ``A -> map -> join -> B`` makes A upstream of B.

    Raises:
        TraceError: the text holds no PROCESS vertex.
    """
    kinds: dict[str, tuple[str, str]] = {}
    for vertex, label, kind in _DAG_NODE.findall(text):
        kinds[vertex] = (label, kind)
    if not any(kind == "PROCESS" for _, kind in kinds.values()):
        raise TraceError("not a Nextflow DAG: no PROCESS vertex found")
    incoming: dict[str, list[str]] = {}
    for source, target in _DAG_EDGE.findall(text):
        incoming.setdefault(target, []).append(source)
    upstream: dict[str, set[str]] = {}
    for vertex, (label, kind) in kinds.items():
        if kind != "PROCESS":
            continue
        found = upstream.setdefault(label, set())
        seen: set[str] = set()
        stack = list(incoming.get(vertex, ()))
        while stack:
            current = stack.pop()
            if current in seen:
                continue
            seen.add(current)
            current_label, current_kind = kinds.get(current, ("", "OPERATOR"))
            if current_kind == "PROCESS":
                found.add(current_label)
            else:
                stack.extend(incoming.get(current, ()))
    return upstream


def build_workflow(
    run: traces.Run, *, upstream: Mapping[str, set[str]] | None = None
) -> TraceWorkflow:
    """Turn a parsed trace into a workflow; ``upstream`` is the process DAG, if any.

    Raises:
        TraceError: the trace has no completed task.
    """
    if not run.tasks:
        raise TraceError(f"{run.name}: no completed task in the trace")
    ordered = sorted(run.tasks, key=lambda t: (_submitted(t), t.order))
    ids = _unique_ids(ordered)
    parents = _frontier_parents(ordered, ids)
    source = "trace"
    if upstream is not None:
        # A process the DAG does not know keeps the trace's frontier parents.
        from_dag = _dag_parents(ordered, ids, upstream)
        parents = [
            from_dag[index] if task.process in upstream else parents[index]
            for index, task in enumerate(ordered)
        ]
        source = "dag"
    tasks = tuple(
        TraceTask(
            id=ids[index],
            name=task.name or task.process,
            step=task.process,
            parents=parents[index],
            runtime_s=task.realtime_ms / 1000.0,
            cpu_millis=1000 * max(1, task.cpus or 1),
            memory_bytes=task.request_bytes or 0,
            peak_bytes=task.peak_bytes,
            input_size=task.input_bytes or 0,
            image=task.container,
        )
        for index, task in enumerate(ordered)
    )
    return TraceWorkflow(name=run.name, tasks=tasks, dependency_source=source, dropped=run.dropped)


def load_trace(
    path: str | Path, *, dag: str | Path | None = None, use_dag: bool = True
) -> TraceWorkflow:
    """Read a trace file and its process DAG (``dag``, else ``dag.html`` beside it, if any).

    ``use_dag=False`` ignores any DAG (dependencies from the trace alone).
    The name is ``<directory>/<file stem>`` (``rnaseq/trace-1``).

    Raises:
        TraceError: unreadable or malformed trace or DAG.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TraceError(f"cannot read {path}: {exc}") from None
    name = f"{path.parent.name}/{path.stem}" if path.parent.name else path.stem
    run = traces.parse_nextflow_trace(text, name=name)
    upstream = None
    dag_path = Path(dag) if dag is not None else path.parent / "dag.html"
    if use_dag and (dag is not None or dag_path.is_file()):
        try:
            dag_text = dag_path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise TraceError(f"cannot read {dag_path}: {exc}") from None
        upstream = parse_process_dag(dag_text)
    return build_workflow(run, upstream=upstream)


def is_trace_file(path: str | Path) -> bool:
    """Whether ``path`` looks like a Nextflow trace (its header has the needed columns)."""
    try:
        with Path(path).open(encoding="utf-8") as handle:
            header = handle.readline()
        traces.detect_separator(header)
    except (OSError, UnicodeDecodeError, TraceError):
        return False
    return True


# -- dependencies ----------------------------------------------------------------------------


def _submitted(task: traces.Task) -> float:
    return task.submit_ms if task.submit_ms is not None else task.start_ms


def _unique_ids(tasks: Sequence[traces.Task]) -> list[str]:
    ids: list[str] = []
    seen: set[str] = set()
    for index, task in enumerate(tasks):
        candidate = str(task.order)
        if candidate in seen:
            candidate = f"{task.order}-{index}"
        seen.add(candidate)
        ids.append(candidate)
    return ids


def _frontier_parents(tasks: Sequence[traces.Task], ids: Sequence[str]) -> list[tuple[str, ...]]:
    """Parents = tasks completed in [latest submission among the completed, own submission)."""
    by_completion = sorted(range(len(tasks)), key=lambda i: tasks[i].complete_ms)
    completions = [tasks[i].complete_ms for i in by_completion]
    # latest submission among the first k completed tasks, k = 0..n
    latest_submit = [float("-inf")]
    for i in by_completion:
        latest_submit.append(max(latest_submit[-1], _submitted(tasks[i])))
    result: list[tuple[str, ...]] = []
    for task in tasks:
        done = bisect.bisect_left(completions, _submitted(task))
        if done == 0:
            result.append(())
            continue
        implied = bisect.bisect_left(completions, latest_submit[done])
        result.append(tuple(ids[by_completion[k]] for k in range(implied, done)))
    return result


def _dag_parents(
    tasks: Sequence[traces.Task], ids: Sequence[str], upstream: Mapping[str, set[str]]
) -> list[tuple[str, ...]]:
    """Parents = tasks of the upstream processes completed before the task's submission."""
    by_process: dict[str, list[int]] = {}
    for index, task in enumerate(tasks):
        by_process.setdefault(task.process, []).append(index)
    completions = {
        process: sorted((tasks[i].complete_ms, i) for i in members)
        for process, members in by_process.items()
    }
    result: list[tuple[str, ...]] = []
    for task in tasks:
        submitted = _submitted(task)
        parents: list[str] = []
        for process in sorted(upstream.get(task.process, ())):
            done = completions.get(process, [])
            count = bisect.bisect_left(done, (submitted, -1))
            parents.extend(ids[i] for _, i in done[:count])
        result.append(tuple(parents))
    return result


def steps(workflow: TraceWorkflow) -> Iterable[str]:
    """The distinct steps of ``workflow`` in first-appearance order."""
    return dict.fromkeys(task.step for task in workflow.tasks)
