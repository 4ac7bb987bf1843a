"""WfCommons WfFormat instances (1.4 and 1.5), read once into plain task records.

The one reader of the format: the memory replay (``predictors.traces``) and the scheduling
simulator (``scheduler.devtools.simulate``, hence the cluster replay) derive what each needs from
the :class:`WfTask` records :func:`parse` returns. Pure: the caller reads the file.

WfFormat 1.5 splits a task into its ``workflow.specification.tasks`` entry (name, parents,
children, ``inputFiles`` ids resolved through ``specification.files``) and its
``workflow.execution.tasks`` record (``runtimeInSeconds``, ``avgCPU``, ``memoryInBytes``,
``readBytes``, ``command``), joined by ``id``; 1.4 has one inline record per task in
``workflow.tasks``, its input files listed in ``files[]`` with ``link == "input"``. A valid
instance has at least one task, an execution record with a finite ``runtimeInSeconds >= 0``
for every task, and parents and children that are tasks of the instance.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_ID_SUFFIX = re.compile(r"_ID\d+$")


class InstanceError(ValueError):
    """The WfFormat document is malformed; the message says what and where."""


@dataclass(frozen=True, slots=True, kw_only=True)
class WfTask:
    """One task of an instance: its specification joined with its execution record.

    Attributes:
        id: The task id.
        name: The task name (its id when it has none).
        category: The task's ``category`` (specification or execution record), if any.
        program: ``command.program`` of the execution record, if any.
        parents: Ids of the tasks it waits for.
        children: Ids of the tasks that wait for it.
        input_bytes: Summed sizes of its input files; ``None`` when it lists none whose size is
            known.
        read_bytes: ``readBytes`` of the execution record, if any.
        runtime_s: ``runtimeInSeconds``.
        avg_cpu: ``avgCPU``, a percentage of one core (0 when missing).
        memory_bytes: ``memoryInBytes`` (peak), ``None`` when missing or 0.
    """

    id: str
    name: str
    category: str | None
    program: str | None
    parents: tuple[str, ...]
    children: tuple[str, ...]
    input_bytes: int | None
    read_bytes: int | None
    runtime_s: float
    avg_cpu: float
    memory_bytes: int | None


def process_name(name: str) -> str:
    """The task name without the ``_ID<digits>`` suffix Pegasus and Makeflow add."""
    return _ID_SUFFIX.sub("", name)


def loads(text: str) -> tuple[WfTask, ...]:
    """Parse the JSON text of an instance (see :func:`parse`).

    Raises:
        InstanceError: Not JSON, or not a valid instance.
    """
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise InstanceError(f"not valid JSON: {exc}") from None
    return parse(document)


def parse(document: object) -> tuple[WfTask, ...]:
    """Return the tasks of a parsed WfFormat document, in document order.

    Raises:
        InstanceError: Required fields missing or inconsistent (the message names them).
    """
    if not isinstance(document, Mapping):
        raise InstanceError("top level must be a JSON object")
    spec_tasks, exec_tasks, files = _task_lists(document)
    try:
        sizes = {f["id"]: int(f.get("sizeInBytes") or 0) for f in files}
        measured = {t["id"]: t for t in exec_tasks}
        joined = [(t, measured[t["id"]]) for t in spec_tasks]
    except (KeyError, TypeError, ValueError) as exc:
        raise InstanceError(f"task or file without a valid id ({exc!s})") from None
    tasks = tuple(_task(spec, execution, sizes) for spec, execution in joined)
    known = {task.id for task in tasks}
    for task in tasks:
        for other in task.parents + task.children:
            if other not in known:
                raise InstanceError(f"task {task.id!r} refers to unknown task {other!r}")
    return tasks


def _task_lists(document: Mapping[str, Any]) -> tuple[list[Any], list[Any], list[Any]]:
    """The specification tasks, execution records and files of a 1.5 or 1.4 document."""
    wf = document.get("workflow")
    if not isinstance(wf, Mapping):
        raise InstanceError("missing object 'workflow'")
    if isinstance(wf.get("specification"), Mapping):
        spec, execution = wf["specification"], wf.get("execution")
        if not isinstance(execution, Mapping):
            raise InstanceError("missing object 'workflow.execution'")
        spec_tasks, exec_tasks = spec.get("tasks"), execution.get("tasks")
        files = spec.get("files") or []
    else:  # WfFormat 1.4: one task list with measurements inline
        spec_tasks = exec_tasks = wf.get("tasks")
        files = []
    if not isinstance(spec_tasks, list) or not isinstance(exec_tasks, list) or not spec_tasks:
        raise InstanceError("'workflow.specification.tasks' must be a non-empty list")
    if not isinstance(files, list):
        raise InstanceError("'workflow.specification.files' must be a list")
    return spec_tasks, exec_tasks, files


def _task(
    spec: Mapping[str, Any], execution: Mapping[str, Any], sizes: Mapping[str, int]
) -> WfTask:
    task_id = spec["id"]
    try:
        runtime = float(execution["runtimeInSeconds"])
        avg_cpu = float(execution.get("avgCPU") or 0.0)
        memory = int(execution.get("memoryInBytes") or 0)
        read = execution.get("readBytes")
        read_bytes = None if read is None else int(read)
        parents = tuple(spec.get("parents") or ())
        children = tuple(spec.get("children") or ())
        input_bytes = _input_bytes(spec, sizes)
    except (KeyError, TypeError, ValueError):
        raise InstanceError(
            f"task {task_id!r}: missing or invalid runtimeInSeconds/avgCPU/memoryInBytes/files"
        ) from None
    if not math.isfinite(runtime) or runtime < 0 or not math.isfinite(avg_cpu):
        raise InstanceError(f"task {task_id!r}: runtime and avgCPU must be finite, runtime >= 0")
    category = spec.get("category") or execution.get("category")
    command = execution.get("command")
    program = command.get("program") if isinstance(command, Mapping) else None
    return WfTask(
        id=task_id,
        name=str(spec.get("name") or task_id),
        category=category if isinstance(category, str) and category else None,
        program=program if isinstance(program, str) else None,
        parents=parents,
        children=children,
        input_bytes=input_bytes,
        read_bytes=read_bytes,
        runtime_s=runtime,
        avg_cpu=avg_cpu,
        memory_bytes=memory or None,
    )


def _input_bytes(spec: Mapping[str, Any], sizes: Mapping[str, int]) -> int | None:
    """Summed input file sizes (1.5 ``inputFiles`` ids, 1.4 ``files[]``), ``None`` if none."""
    total = 0
    found = False
    for file_id in spec.get("inputFiles") or ():
        if file_id in sizes:
            total += sizes[file_id]
            found = True
    for entry in spec.get("files") or ():
        if isinstance(entry, Mapping) and entry.get("link") == "input":
            total += int(entry.get("sizeInBytes") or entry.get("size") or 0)
            found = True
    return total if found else None
