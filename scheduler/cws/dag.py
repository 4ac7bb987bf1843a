"""DAG vertices and edges of an execution: validated in full, then applied to its WorkflowDag.

REST vertices live in the run's ``WorkflowDag`` under ``("cws", uid)``; PROCESS vertices are
found there by label, so the steps of task labels and the REST processes are the same vertices.
The execution keeps a mirror of its vertices and edges (by uid) to validate a whole request
before anything changes, and to remove edges by uid.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from scheduler.core import errors, workflow
from scheduler.cws import model


def vertex_id(uid: int) -> tuple[str, int]:
    """The id of a REST vertex in the run's ``WorkflowDag``."""
    return ("cws", uid)


def add_vertices(
    exe: model.Execution, dag: workflow.WorkflowDag, vertices: Sequence[model.Vertex]
) -> dict[str, Any]:
    """Add vertices all at once (route 3); identical re-posts are no-ops.

    Raises:
        model.CwsError: ``INVALID`` naming the first conflicting vertex; nothing is added.
    """
    known_steps = set(dag.steps())
    planned: dict[int, tuple[workflow.VertexKind, str | None]] = {}
    labels: dict[str, int] = {}
    for i, v in enumerate(vertices):
        old = exe.vertices.get(v.uid) or planned.get(v.uid)
        if old is not None:
            if old != (v.kind, v.label):
                raise model.CwsError(
                    model.ErrorKind.INVALID,
                    f"vertices[{i}]: uid {v.uid} already exists as {old[0]} {old[1]!r}",
                )
            continue
        if v.kind is workflow.VertexKind.PROCESS:
            if not v.label:
                raise model.CwsError(
                    model.ErrorKind.INVALID, f"vertices[{i}]: a PROCESS needs a label"
                )
            owner = exe.process_uid.get(v.label, labels.get(v.label))
            foreign = v.label in known_steps and v.label not in exe.implicit
            if owner is not None or foreign:
                raise model.CwsError(
                    model.ErrorKind.INVALID,
                    f"vertices[{i}]: process label {v.label!r} is already vertex "
                    f"{owner if owner is not None else 'of another source'}",
                )
            labels[v.label] = v.uid
        planned[v.uid] = (v.kind, v.label)
    for uid, (kind, label) in planned.items():
        if label is not None and label in labels and label in exe.implicit:
            # Registered implicitly by a task before its vertex arrived: replace it.
            dag.remove_vertices([dag.add_step(label)])
            exe.implicit.discard(label)
        dag.add_vertex(vertex_id(uid), kind=kind, label=label)
        exe.vertices[uid] = (kind, label)
        if kind is workflow.VertexKind.PROCESS and label is not None:
            exe.process_uid[label] = uid
    return {"added": len(planned)}


def remove_vertices(
    exe: model.Execution, dag: workflow.WorkflowDag, uids: Sequence[int]
) -> dict[str, Any]:
    """Remove vertices with their edges (route 4); unknown uids are ignored."""
    gone = [uid for uid in dict.fromkeys(uids) if uid in exe.vertices]
    dag.remove_vertices(vertex_id(uid) for uid in gone)
    for uid in gone:
        _kind, label = exe.vertices.pop(uid)
        if label is not None and exe.process_uid.get(label) == uid:
            del exe.process_uid[label]
    dropped = set(gone)
    for edge_uid, ends in list(exe.edges.items()):
        if ends is not None and (ends[0] in dropped or ends[1] in dropped):
            del exe.edges[edge_uid]
    return {"removed": len(gone), "unknown": [u for u in uids if u not in dropped]}


def add_edges(
    exe: model.Execution, dag: workflow.WorkflowDag, edges: Sequence[model.Edge]
) -> dict[str, Any]:
    """Add edges all at once (route 5); an edge with an absent endpoint is ignored.

    Raises:
        model.CwsError: ``INVALID`` for an unknown vertex (naming the uid), an edge uid reused
            with other endpoints, or a cycle; nothing is added.
    """
    planned: dict[int, tuple[int, int] | None] = {}
    for i, e in enumerate(edges):
        ends = None if e.source is None or e.target is None else (e.source, e.target)
        for end in ends or ():
            if end not in exe.vertices:
                raise model.CwsError(
                    model.ErrorKind.INVALID, f"edges[{i}] (uid {e.uid}): unknown vertex {end}"
                )
        if e.uid in exe.edges or e.uid in planned:
            old = exe.edges[e.uid] if e.uid in exe.edges else planned[e.uid]
            if old != ends:
                raise model.CwsError(
                    model.ErrorKind.INVALID,
                    f"edges[{i}]: uid {e.uid} already exists as {old[0] if old else None}"
                    f" -> {old[1] if old else None}",
                )
            continue
        planned[e.uid] = ends
    pairs = [(vertex_id(a), vertex_id(b)) for a, b in filter(None, planned.values())]
    try:
        dag.add_edges(pairs)
    except errors.DagError as exc:
        message = re.sub(r"\('cws', (-?\d+)\)", r"\1", str(exc))
        raise model.CwsError(model.ErrorKind.INVALID, f"edges: {message}") from None
    exe.edges.update(planned)
    ignored = sum(1 for ends in planned.values() if ends is None)
    return {"added": len(planned) - ignored, "ignored": ignored}


def remove_edges(
    exe: model.Execution, dag: workflow.WorkflowDag, uids: Sequence[int]
) -> dict[str, Any]:
    """Remove edges by uid (route 6); unknown uids are ignored."""
    gone = {uid: exe.edges.pop(uid) for uid in dict.fromkeys(uids) if uid in exe.edges}
    still = set(filter(None, exe.edges.values()))
    pairs = {ends for ends in gone.values() if ends is not None and ends not in still}
    dag.remove_edges((vertex_id(a), vertex_id(b)) for a, b in pairs)
    return {"removed": len(gone), "unknown": [u for u in uids if u not in gone]}
