"""Engine-agnostic workflow grouping: pod labels and annotations → runs, steps, DAG edges.

The convention (prefix ``wfsched.io/``; see docs/workflow-labels.md):

=====================================  ==========  ==========================================
key                                    where       meaning
=====================================  ==========  ==========================================
``wfsched.io/run-id``                  label       the workflow run (unique per run)
``wfsched.io/workflow``                label       the workflow's name, stable across runs
``wfsched.io/step``                    label       the abstract task (process, rule, template)
``wfsched.io/task-id``                 annotation  task id within the run (default: pod name)
``wfsched.io/depends-on``              annotation  comma-separated task ids this task needs
``wfsched.io/input-size``              annotation  input bytes (integer or quantity)
``wfsched.io/attempt``                 annotation  1 for the first attempt, >1 for retries
``wfsched.io/dag-configmap``           annotation  ``name`` or ``namespace/name`` of a
                                                   ConfigMap whose ``dag.json`` holds the
                                                   run's step DAG (CWS vertex/edge model)
=====================================  ==========  ==========================================

Recognised out of the box: Nextflow (``nextflow.io/runName``, ``nextflow.io/processName``),
Argo Workflows (``workflows.argoproj.io/workflow`` label, ``node-name``/``node-id``
annotations), Snakemake's Kubernetes executor (labels derived from its jobs' command, see
``scheduler.kube.snakemake``) and CWS per-execution scheduler names (``<name>-<execution>``).
Snakemake sends no DAG: the rule order is learned from the order in which its jobs appear
(see ``WorkflowRegistry``). Pods without any
of these are singleton workflows. Run ids are qualified by namespace.

Everything here is pure and owned by the decision thread. Malformed values are reported as
``podfacts.Problem``s and the task is handled as if the field were absent.
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from scheduler.core import errors, podfacts, resources, workflow
from scheduler.kube import keys
from scheduler.runtime import history as history_mod

MAX_DAG_DOCUMENT_BYTES = 1 << 20
MAX_DEPENDENCIES = 10_000
MAX_LEARNED_WORKFLOWS = 1000
"""Workflow names whose step edges are kept (least recently used beyond that are dropped)."""

INFERRED_ORDER_ENGINES = frozenset({"snakemake"})
"""Engines that declare no dependencies; their step order is inferred (``WorkflowRegistry``)."""

_ARGO_INDEX = re.compile(r"\(\d+(:[^)]*)?\)$")


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskLabels:
    """What a pod says about its place in a workflow.

    Attributes:
        run: Namespace-qualified run id.
        workflow_name: Stable name of the workflow (for learning across runs), or ``""``.
        engine: ``wfsched``, ``nextflow``, ``argo``, ``snakemake``, ``cws`` or ``none``.
        step: Abstract task name.
        task_id: Task id within the run.
        depends_on: Task ids this task waits for.
        input_size: Input bytes (0 when unknown).
        attempt: 0 for the first attempt, > 0 for retries.
        dag_ref: ``(namespace, name)`` of the run's DAG ConfigMap, if given.
        problems: Malformed fields that were ignored.
    """

    run: workflow.RunId
    workflow_name: str
    engine: str
    step: workflow.StepName
    task_id: str
    depends_on: tuple[str, ...] = ()
    input_size: int = 0
    attempt: int = 0
    dag_ref: tuple[str, str] | None = None
    problems: tuple[podfacts.Problem, ...] = ()


def _qualified(namespace: str, run: str) -> workflow.RunId:
    return workflow.RunId(f"{namespace}/{run}")


def read_task_labels(
    facts: podfacts.PodFacts, *, execution_prefix: str | None = None
) -> TaskLabels:
    """Derive the workflow identity of a pod from its labels and annotations.

    Args:
        facts: The pod.
        execution_prefix: ``"<scheduler name>-"``; a pod whose scheduler name starts with it
            belongs to the CWS execution named by the rest.
    """
    labels, notes, ns = facts.labels, facts.annotations, facts.ref.namespace
    problems: list[podfacts.Problem] = []
    pod_name = facts.ref.name
    engine = "none"
    run_raw = labels.get(keys.RUN_ID_LABEL, "")
    step = labels.get(keys.STEP_LABEL, "")
    task_id = notes.get(keys.TASK_ID_ANNOTATION, "")
    workflow_name = labels.get(keys.WORKFLOW_LABEL, "")
    if run_raw:
        engine = "wfsched"
    elif labels.get(keys.NEXTFLOW_RUN_NAME_LABEL):
        engine, run_raw = "nextflow", labels[keys.NEXTFLOW_RUN_NAME_LABEL]
        step = step or labels.get(keys.NEXTFLOW_PROCESS_NAME_LABEL, "")
    elif labels.get(keys.ARGO_WORKFLOW_LABEL):
        engine, run_raw = "argo", labels[keys.ARGO_WORKFLOW_LABEL]
        node_name = notes.get(keys.ARGO_NODE_NAME_ANNOTATION, "")
        if not step and node_name:
            step = _ARGO_INDEX.sub("", node_name.split(".")[-1]) or node_name
        task_id = task_id or notes.get(keys.ARGO_NODE_ID_ANNOTATION, "")
    elif labels.get(keys.SNAKEMAKE_RUN_LABEL):
        engine, run_raw = "snakemake", labels[keys.SNAKEMAKE_RUN_LABEL]
        step = step or labels.get(keys.SNAKEMAKE_RULE_LABEL, "")
        workflow_name = workflow_name or labels.get(keys.SNAKEMAKE_WORKFLOW_LABEL, "")
    # A Snakemake job's rule is its step also when wfsched.io/ labels name the run.
    step = step or labels.get(keys.SNAKEMAKE_RULE_LABEL, "")
    if not run_raw and execution_prefix and facts.scheduler_name.startswith(execution_prefix):
        engine, run_raw = "cws", facts.scheduler_name[len(execution_prefix) :]
    if not run_raw:
        # A singleton workflow: the pod alone.
        return TaskLabels(
            run=_qualified(ns, f"pod:{pod_name}"),
            workflow_name="",
            engine="none",
            step=workflow.StepName(step or pod_name),
            task_id=task_id or pod_name,
            input_size=_input_size(notes, problems),
            attempt=_attempt(notes, problems),
            problems=tuple(problems),
        )
    return TaskLabels(
        run=_qualified(ns, run_raw),
        workflow_name=workflow_name,
        engine=engine,
        step=workflow.StepName(step or pod_name),
        task_id=task_id or pod_name,
        depends_on=_depends_on(notes, problems),
        input_size=_input_size(notes, problems),
        attempt=_attempt(notes, problems),
        dag_ref=_dag_ref(notes, ns, problems),
        problems=tuple(problems),
    )


def _depends_on(notes: Mapping[str, str], problems: list[podfacts.Problem]) -> tuple[str, ...]:
    raw = notes.get(keys.DEPENDS_ON_ANNOTATION, "")
    ids = tuple(dict.fromkeys(part.strip() for part in raw.split(",") if part.strip()))
    if len(ids) > MAX_DEPENDENCIES:
        problems.append(
            podfacts.Problem(
                keys.DEPENDS_ON_ANNOTATION, f"more than {MAX_DEPENDENCIES} ids; ignored"
            )
        )
        return ()
    return ids


def _input_size(notes: Mapping[str, str], problems: list[podfacts.Problem]) -> int:
    raw = notes.get(keys.INPUT_SIZE_ANNOTATION)
    if raw is None:
        return 0
    try:
        return resources.integer_value(raw.strip())
    except (ValueError, ArithmeticError) as exc:
        problems.append(
            podfacts.Problem(keys.INPUT_SIZE_ANNOTATION, f"{raw!r} is not a size: {exc}")
        )
        return 0


def _attempt(notes: Mapping[str, str], problems: list[podfacts.Problem]) -> int:
    raw = notes.get(keys.ATTEMPT_ANNOTATION)
    if raw is None:
        return 0
    try:
        value = int(raw.strip())
    except ValueError:
        value = 0
    if value < 1:
        problems.append(podfacts.Problem(keys.ATTEMPT_ANNOTATION, f"{raw!r} is not a positive int"))
        return 0
    return value - 1


def _dag_ref(
    notes: Mapping[str, str], namespace: str, problems: list[podfacts.Problem]
) -> tuple[str, str] | None:
    raw = notes.get(keys.DAG_CONFIGMAP_ANNOTATION, "").strip()
    if not raw:
        return None
    parts = raw.split("/")
    name_ok = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
    if len(parts) == 1 and name_ok.match(parts[0]):
        return namespace, parts[0]
    if len(parts) == 2 and all(name_ok.match(p) for p in parts):
        return parts[0], parts[1]
    problems.append(
        podfacts.Problem(
            keys.DAG_CONFIGMAP_ANNOTATION, f"{raw!r} is not <name> or <namespace>/<name>"
        )
    )
    return None


@dataclass(frozen=True, slots=True)
class DagDocument:
    """A parsed ``dag.json``: vertices ``(uid, kind, label)`` and edges ``(from, to)``."""

    vertices: tuple[tuple[Any, workflow.VertexKind, str | None], ...]
    edges: tuple[tuple[Any, Any], ...]


def parse_dag_document(text: str) -> DagDocument:
    """Parse a DAG document (CWS model: ``{"vertices": [...], "edges": [...]}``).

    Vertices are ``{"uid", "label", "type"}`` (type PROCESS, OPERATOR, ORIGIN or NODE; default
    PROCESS); edges are ``{"from", "to"}`` or ``[from, to]``. A shorthand of step names is also
    accepted: ``{"steps": [...], "edges": [["a", "b"], ...]}``.

    Raises:
        DagError: the document is too large, not JSON, or has the wrong shape.
    """
    if len(text.encode()) > MAX_DAG_DOCUMENT_BYTES:
        raise errors.DagError(
            f"{keys.DAG_CONFIGMAP_KEY} is larger than {MAX_DAG_DOCUMENT_BYTES} bytes"
        )
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise errors.DagError(f"{keys.DAG_CONFIGMAP_KEY} is not JSON: {exc}") from None
    except RecursionError:
        raise errors.DagError(f"{keys.DAG_CONFIGMAP_KEY} is nested too deeply") from None
    if not isinstance(doc, Mapping):
        raise errors.DagError(f"{keys.DAG_CONFIGMAP_KEY} must be a JSON object")
    vertices: list[tuple[Any, workflow.VertexKind, str | None]] = []
    ids: dict[Any, Any] = {}
    if "steps" in doc:
        steps = doc["steps"]
        if not isinstance(steps, list) or not all(isinstance(s, str) and s for s in steps):
            raise errors.DagError("steps must be a list of non-empty strings")
        vertices = [(("step", s), workflow.VertexKind.PROCESS, s) for s in steps]
        ids = {s: ("step", s) for s in steps}
    else:
        raw_vertices = doc.get("vertices", [])
        if not isinstance(raw_vertices, list):
            raise errors.DagError("vertices must be a list")
        for i, v in enumerate(raw_vertices):
            if not isinstance(v, Mapping) or "uid" not in v:
                raise errors.DagError(f"vertices[{i}] must be an object with a uid")
            uid = v["uid"]
            if not isinstance(uid, int | str) or isinstance(uid, bool):
                raise errors.DagError(f"vertices[{i}].uid must be an integer or string")
            try:
                kind = workflow.VertexKind(str(v.get("type") or "PROCESS").upper())
            except ValueError:
                raise errors.DagError(f"vertices[{i}].type {v.get('type')!r} is unknown") from None
            label = v.get("label")
            if label is not None and not isinstance(label, str):
                raise errors.DagError(f"vertices[{i}].label must be a string")
            vertices.append((uid, kind, label))
            ids[uid] = uid
    raw_edges = doc.get("edges", [])
    if not isinstance(raw_edges, list):
        raise errors.DagError("edges must be a list")
    edges = []
    for i, e in enumerate(raw_edges):
        if isinstance(e, Mapping):
            pair = (e.get("from"), e.get("to"))
        elif isinstance(e, list) and len(e) == 2:
            pair = (e[0], e[1])
        else:
            raise errors.DagError(f"edges[{i}] must be {{from, to}} or [from, to]")
        for end in pair:
            if not isinstance(end, int | str) or isinstance(end, bool) or end not in ids:
                raise errors.DagError(f"edges[{i}] refers to unknown vertex {end!r}")
        edges.append((ids[pair[0]], ids[pair[1]]))
    return DagDocument(vertices=tuple(vertices), edges=tuple(edges))


@dataclass(slots=True)
class _RunState:
    dag: workflow.WorkflowDag
    workflow_name: str
    dag_ref: tuple[str, str] | None = None
    dag_loaded: bool = False
    tasks: set[str] = field(default_factory=set)
    owned: bool = False
    """Created through ``ensure_run`` by an owner (the CWS API) that forgets it itself."""
    idle_since: float | None = None
    """When ``evict_idle`` first found the run without active tasks (``None``: active)."""
    last_finished_step: str = ""
    """Step of the task that finished successfully last (runs whose order is inferred)."""
    steps_seen: set[str] = field(default_factory=set)
    """Steps with a task seen so far (runs whose order is inferred)."""


class WorkflowRegistry:
    """All known runs and what was learned about each workflow; owned by one thread.

    * ``observe_task`` registers a task (its step, its depends-on edges to tasks already known
      in the run; unknown ids count as finished) and learns step edges for the workflow name.
    * ``apply_dag_document`` merges a run's DAG ConfigMap; a bad one is refused whole.
    * A new run of a workflow name starts with every step edge learned from earlier runs,
      and with their step runtimes (``WorkflowDag.prior_runtimes``), both kept in ``history``
      when there is one, so they outlive a restart.
    * Engines that send no dependencies (``INFERRED_ORDER_ENGINES``: Snakemake submits a job
      only once its inputs exist) get their step order inferred: when the first task of a
      step appears, the step of the task that finished last before it is taken as its parent
      (its most likely trigger). An edge that would close a cycle is ignored.

    Memory is bounded: runs learned from pods are dropped by ``evict_idle`` once they have had
    no active task for a while (the caller says which runs are active); runs created through
    ``ensure_run`` belong to their creator until ``forget_run``; step edges are kept for the
    ``MAX_LEARNED_WORKFLOWS`` most recently used workflow names.
    """

    def __init__(self) -> None:
        self._runs: dict[workflow.RunId, _RunState] = {}
        self._dags: dict[workflow.RunId, workflow.WorkflowDag] = {}
        self._dags_view = MappingProxyType(self._dags)
        self._unloaded_refs: dict[workflow.RunId, tuple[str, str]] = {}
        """Runs whose DAG ConfigMap is referenced and not loaded yet, in insertion order."""
        self._learned: OrderedDict[str, set[tuple[str, str]]] = OrderedDict()
        self._submission = 0
        self.history: history_mod.WorkflowHistory | None = None
        """What earlier runs taught, by workflow key (the ``wfsched.io/workflow`` name, else the
        run id), if kept: step runtimes, and the step edges learned here are added to it and
        read from it when a workflow name is not among the learned ones (after a restart)."""

    def expected_runtimes(self, run: workflow.RunId) -> Mapping[str, float]:
        """Seconds a task of each step of ``run`` is expected to take, from earlier runs.

        What rankings that weigh steps by runtime (``critical_path``) can use for steps of the
        run that have not finished a task yet; empty when nothing was learned.
        """
        state = self._runs.get(run)
        return self._runtimes_for(run, state.workflow_name if state is not None else "")

    def _runtimes_for(self, run: workflow.RunId, workflow_name: str) -> Mapping[str, float]:
        if self.history is None:
            return {}
        return self.history.runtime_estimates(workflow_name or str(run))

    @property
    def dags(self) -> Mapping[workflow.RunId, workflow.WorkflowDag]:
        """The DAG of every known run: a live read-only view, not a copy (for the cycle)."""
        return self._dags_view

    def __len__(self) -> int:
        """Number of known runs."""
        return len(self._runs)

    def dag(self, run: workflow.RunId) -> workflow.WorkflowDag | None:
        """Return the DAG of ``run`` if known."""
        state = self._runs.get(run)
        return None if state is None else state.dag

    def next_submission(self) -> int:
        """Return the next value of the global submission counter (CWS's task id)."""
        self._submission += 1
        return self._submission

    def learned_edges(self, workflow_name: str) -> frozenset[tuple[str, str]]:
        """Return the step edges learned for ``workflow_name`` so far."""
        return frozenset(self._learned.get(workflow_name, ()))

    def ensure_run(self, run: workflow.RunId, *, workflow_name: str = "") -> workflow.WorkflowDag:
        """Return the run's DAG, creating it (seeded with learned step edges) if needed.

        The caller owns the run from now on: ``evict_idle`` never drops it, ``forget_run``
        does. Runs that only pods mention are created by ``observe_task``/``record_finished``.
        """
        state = self._state(run, workflow_name)
        state.owned = True
        return state.dag

    def _state(self, run: workflow.RunId, workflow_name: str) -> _RunState:
        """The run's state, created as a run learned from pods if unknown."""
        state = self._runs.get(run)
        if state is None:
            state = _RunState(dag=workflow.WorkflowDag(run), workflow_name=workflow_name)
            state.dag.prior_runtimes = self._runtimes_for(run, workflow_name)
            self._runs[run] = state
            self._dags[run] = state.dag
            learned = self._learned.get(workflow_name) if workflow_name else None
            if learned is None and workflow_name and self.history is not None:
                stored = self.history.step_edges(workflow_name)
                learned = self._learned_edges_of(workflow_name) if stored else None
                if learned is not None:
                    learned.update(stored)
            if learned:
                self._learned.move_to_end(workflow_name)
                try:
                    state.dag.add_step_edges(sorted(learned))
                except errors.DagError:
                    # Learned edges conflict with each other (a workflow changed shape): drop
                    # them rather than schedule with a wrong DAG.
                    self._learned.pop(workflow_name, None)
                    if self.history is not None:
                        self.history.forget_step_edges(workflow_name)
        return state

    def _learned_edges_of(self, workflow_name: str) -> set[tuple[str, str]]:
        """The mutable edge set of ``workflow_name``, most recently used; LRU-bounded."""
        learned = self._learned.get(workflow_name)
        if learned is None:
            learned = self._learned[workflow_name] = set()
            while len(self._learned) > MAX_LEARNED_WORKFLOWS:
                self._learned.popitem(last=False)
        else:
            self._learned.move_to_end(workflow_name)
        return learned

    def observe_task(self, labels: TaskLabels) -> list[podfacts.Problem]:
        """Register a task and its dependencies; returns problems (e.g. a cycle) to report."""
        state = self._state(labels.run, labels.workflow_name)
        dag = state.dag
        if labels.dag_ref and state.dag_ref is None:
            state.dag_ref = labels.dag_ref
            if not state.dag_loaded:
                self._unloaded_refs[labels.run] = labels.dag_ref
        if labels.engine in INFERRED_ORDER_ENGINES:
            self._infer_step_order(state, labels.step)
        dag.add_task(labels.task_id, labels.step)
        state.tasks.add(labels.task_id)
        problems: list[podfacts.Problem] = []
        known = [(p, labels.task_id) for p in labels.depends_on if dag.has_task(p)]
        if known:
            try:
                dag.add_task_edges(known)
            except errors.DagError as exc:
                problems.append(podfacts.Problem(keys.DEPENDS_ON_ANNOTATION, f"ignored: {exc}"))
                return problems
            if state.workflow_name:
                self._learn_edges(
                    state.workflow_name,
                    {(dag.step_of(parent), labels.step) for parent, _ in known},
                )
        return problems

    def _learn_edges(self, workflow_name: str, edges: set[tuple[str, str]]) -> None:
        """Remember step edges of ``workflow_name`` (and in the history); self-loops ignored."""
        learned = self._learned_edges_of(workflow_name)
        new = {(a, b) for a, b in edges if a != b} - learned
        if new:
            learned.update(new)
            if self.history is not None:
                self.history.learn_step_edges(workflow_name, new)

    def _infer_step_order(self, state: _RunState, step: str) -> None:
        """Take the last finished step as the parent of ``step`` when it first appears."""
        if step in state.steps_seen:
            return
        state.steps_seen.add(step)
        parent = state.last_finished_step
        if not parent or parent == step:
            return
        try:
            state.dag.add_step_edges([(parent, step)])
        except errors.DagError:
            return
        if state.workflow_name:
            self._learn_edges(state.workflow_name, {(parent, step)})

    def pending_dag_refs(self) -> list[tuple[workflow.RunId, tuple[str, str]]]:
        """Runs whose DAG ConfigMap is referenced but not loaded yet.

        Kept as an index updated by ``observe_task``, ``apply_dag_document`` and
        ``forget_run``: the cost is the number of such runs, not the number of runs.
        """
        return list(self._unloaded_refs.items())

    def apply_dag_document(self, run: workflow.RunId, text: str | None) -> str | None:
        """Merge a run's DAG document; return an error message when it was refused.

        ``text`` ``None`` means the ConfigMap or its key does not exist. Either way the run is
        not asked for again, so a bad document costs one Event, not one per cycle.
        """
        state = self._runs.get(run)
        if state is None:
            return None
        state.dag_loaded = True
        self._unloaded_refs.pop(run, None)
        where = "/".join(state.dag_ref or ())
        if text is None:
            return f"DAG ConfigMap {where} or its {keys.DAG_CONFIGMAP_KEY} not found"
        try:
            doc = parse_dag_document(text)
            self._merge(state.dag, doc)
        except errors.DagError as exc:
            return f"DAG ConfigMap {where} ignored: {exc}"
        return None

    @staticmethod
    def _merge(dag: workflow.WorkflowDag, doc: DagDocument) -> None:
        # Validate on a scratch DAG first so a bad document changes nothing.
        scratch = workflow.WorkflowDag(dag.run)
        for uid, kind, label in doc.vertices:
            scratch.add_vertex(uid, kind=kind, label=label)
        scratch.add_edges(doc.edges)
        # PROCESS vertices become the run's steps (shared with label-based tasks); other
        # vertices keep their document uid under a prefix of their own.
        mapped: dict[Any, Any] = {}
        for uid, kind, label in doc.vertices:
            if kind is workflow.VertexKind.PROCESS and label is not None:
                mapped[uid] = dag.add_step(label)
            else:
                mapped[uid] = ("doc", uid)
                dag.add_vertex(mapped[uid], kind=kind, label=label)
        dag.add_edges([(mapped[src], mapped[dst]) for src, dst in doc.edges])

    def record_finished(
        self,
        labels: TaskLabels,
        *,
        success: bool,
        runtime_s: float | None,
    ) -> None:
        """Count a finished task of the run (F, runtimes for critical-path)."""
        state = self._state(labels.run, labels.workflow_name)
        if success:
            state.last_finished_step = labels.step
        dag = state.dag
        dag.record_finished(
            labels.step, success=success, runtime_s=runtime_s, input_size=labels.input_size
        )

    def forget_run(self, run: workflow.RunId) -> bool:
        """Drop one run and its DAG; returns False when it was not known."""
        self._dags.pop(run, None)
        self._unloaded_refs.pop(run, None)
        return self._runs.pop(run, None) is not None

    def evict_idle(
        self, *, active: Collection[workflow.RunId], now: float, idle_s: float
    ) -> list[workflow.RunId]:
        """Drop runs learned from pods that have been inactive for ``idle_s``; return them.

        A run is inactive while it is not in ``active`` (the caller's runs with a task pending,
        being bound or running); its idle time starts at the first call that finds it so, and
        restarts when it is active again. Owned runs (``ensure_run``) are never dropped here.
        Call it periodically with a monotonic ``now``: the idle time is measured in steps of
        that period.
        """
        evicted: list[workflow.RunId] = []
        for run, state in self._runs.items():
            if state.owned or run in active:
                state.idle_since = None
            elif state.idle_since is None:
                state.idle_since = now
            elif now - state.idle_since >= idle_s:
                evicted.append(run)
        for run in evicted:
            self.forget_run(run)
        return evicted
