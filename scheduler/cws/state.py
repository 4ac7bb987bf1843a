"""``CwsState``: executions, batches, task registrations and pod matching (see the package)."""

from __future__ import annotations

import dataclasses
import logging
import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from predictors import allocation
from scheduler import registry
from scheduler.core import cluster, interfaces, podfacts, workflow
from scheduler.cws import dag as dag_mod
from scheduler.cws import model, snapshot
from scheduler.runtime import workflows

log = logging.getLogger(__name__)

_MAX_RELEASED_MEMORY = 100_000
_MAX_RUN_MEMORY = 10_000
"""Runs remembered as ended (deleted, expired) or seen without registration."""
_MAX_FINISHED_UNKNOWN = 10_000
"""Finished pods of executions not (yet) known, kept for a restore to claim."""


class CwsState:
    """All CWS executions; owned by the loop thread. See the module docstring."""

    def __init__(
        self,
        *,
        workflows_registry: workflows.WorkflowRegistry,
        default_predictor: str = "",
        min_memory_bytes: int = allocation.DEFAULT_FLOOR_BYTES,
        min_memory_per_cpu_bytes: int = 0,
        max_memory_bytes: int = 0,
        batch_timeout_s: float = 30.0,
        registration_grace_s: float = 30.0,
        namespaces: Sequence[str] = (),
        max_executions: int = model.MAX_EXECUTIONS,
        adopt_unregistered: bool = False,
        idle_expiry_s: float = 0.0,
    ) -> None:
        """Create an empty state.

        ``adopt_unregistered``: schedule pods of executions never registered here (after
        ``registration_grace_s``); off, they are held for ever, because another CWS instance
        with the same scheduler name may own them. ``idle_expiry_s``: drop an execution after
        this long without a request or a pod event (nobody DELETEd it); 0 never drops one.
        """
        self._registry = workflows_registry
        self.default_predictor = default_predictor
        self.min_memory_bytes = min_memory_bytes
        self.min_memory_per_cpu_bytes = min_memory_per_cpu_bytes
        self.max_memory_bytes = max_memory_bytes
        self.batch_timeout_s = batch_timeout_s
        self.registration_grace_s = registration_grace_s
        self.namespaces = frozenset(namespaces)
        self.max_executions = max_executions
        self.adopt_unregistered = adopt_unregistered
        self.idle_expiry_s = idle_expiry_s
        self._now = 0.0
        self._dirty: set[str] = set()
        self._removed: set[str] = set()
        self._ended: OrderedDict[workflow.RunId, None] = OrderedDict()
        self._foreign: OrderedDict[workflow.RunId, None] = OrderedDict()
        self._finished_unknown: OrderedDict[tuple[workflow.RunId, str], tuple[bool, str]] = (
            OrderedDict()
        )
        self.executions: dict[str, model.Execution] = {}
        self._by_run: dict[workflow.RunId, model.Execution] = {}
        self._waiting: dict[str, model.Waiting] = {}
        self._waiting_by_pod: dict[tuple[workflow.RunId, str], str] = {}
        self._released: OrderedDict[str, tuple[workflow.RunId, str]] = OrderedDict()
        self._released_by_pod: dict[tuple[workflow.RunId, str], str] = {}
        self._warned: set[tuple[str, str]] = set()
        self._effects = model.Effects()

    # --- plumbing -------------------------------------------------------------------------

    def take_effects(self) -> model.Effects:
        """Return and clear what the loop must do after the last changes."""
        effects, self._effects = self._effects, model.Effects()
        return effects

    def has_effects(self) -> bool:
        """True when ``take_effects`` would return something to do."""
        return bool(self._effects)

    def execution(self, name: str) -> model.Execution:
        """Return a registered execution.

        Raises:
            model.CwsError: ``UNKNOWN_EXECUTION`` with CWS's message.
        """
        exe = self.executions.get(name)
        if exe is None:
            raise model.CwsError(
                model.ErrorKind.UNKNOWN_EXECUTION, f"There is no scheduler for {name}"
            )
        return exe

    def by_run(self, run: workflow.RunId) -> model.Execution | None:
        """The execution whose pods form ``run``, if registered."""
        return self._by_run.get(run)

    def _dag(self, exe: model.Execution) -> workflow.WorkflowDag:
        return self._registry.ensure_run(exe.run)

    def _clock(self, now: float) -> None:
        """Advance the state's idea of the time (methods without ``now`` use the last one)."""
        self._now = max(self._now, now)

    def _active(self, exe: model.Execution) -> None:
        """The execution was used: restart its idle clock."""
        exe.last_active = self._now

    def _changed(self, exe: model.Execution) -> None:
        """The execution was used and changed: restart its idle clock, save it again."""
        exe.last_active = self._now
        self._dirty.add(exe.name)

    # --- persistence ----------------------------------------------------------------------

    def take_changes(self) -> tuple[dict[str, dict[str, Any]], set[str]]:
        """Return the documents of executions changed since the last call, and the removed names.

        A name is in at most one of the two. Documents are built here (loop thread); encoding
        and writing them is the caller's business, off the loop thread.
        """
        docs = {
            name: snapshot.dump(self.executions[name])
            for name in sorted(self._dirty)
            if name in self.executions
        }
        removed = self._removed - docs.keys()
        self._dirty, self._removed = set(), set()
        return docs, removed

    def has_changes(self) -> bool:
        """True when :meth:`take_changes` would return something."""
        return bool(self._dirty or self._removed)

    def restore(self, doc: Any, *, now: float) -> str:
        """Re-create an execution from a document of :meth:`take_changes`; return its name.

        The registration is replayed (same checks), then the DAG, the tasks with their states
        and metrics (which retrain the process predictors), F from finished tasks, and the
        batches; a closed batch's timeout and the idle clock start again now. Pods held while
        the execution was unknown are re-described.

        Raises:
            ValueError: The document is malformed.
            model.CwsError: The registration is refused (e.g. the name is registered already).
        """
        self._clock(now)
        stored = snapshot.load(doc)
        name = stored.registration.name
        self.register(stored.registration, now=now)
        exe = self.executions[name]
        dag = self._dag(exe)
        try:
            if stored.vertices:
                dag_mod.add_vertices(exe, dag, stored.vertices)
            for label in stored.implicit:
                if label not in exe.process_uid:
                    dag.add_step(label)
                    exe.implicit.add(label)
            if stored.edges:
                dag_mod.add_edges(exe, dag, stored.edges)
        except model.CwsError as exc:
            self._drop(exe)
            self._removed.discard(name)
            raise ValueError(f"DAG: {exc.message}") from None
        for item in stored.tasks:
            task = model.TaskRecord(
                id=item.id,
                spec=item.spec,
                registered_at=now,
                state=item.state,
                error=item.error,
                pod_uid=item.pod_uid,
                batch=item.batch,
                metrics=item.metrics,
            )
            ended = self._finished_unknown.pop((exe.run, item.spec.pod_name), None)
            if ended is not None:  # finished while no replica knew the execution
                succeeded, reason = ended
                task.advance(
                    model.TaskState.FINISHED if succeeded else model.TaskState.FINISHED_WITH_ERROR
                )
                if not succeeded:
                    task.error = task.error or reason
            exe.tasks[item.id] = task
            self._replay(exe, dag, task)
        exe.by_pod.update(stored.by_pod)
        for stored_batch in stored.batches:
            exe.batches[stored_batch.id] = model.Batch(
                id=stored_batch.id,
                opened_at=now,
                closed_at=now if stored_batch.closed else None,
                expected=stored_batch.expected,
                unready=set(stored_batch.unready),
                ready=list(stored_batch.ready),
            )
        exe.open_batch = stored.open_batch if stored.open_batch in exe.batches else None
        exe.next_batch = stored.next_batch
        for batch in list(exe.batches.values()):
            if batch.closed_at is not None and not batch.unready:
                self._release(exe, batch)
        self._dirty.discard(name)
        self._effects.refresh_held = True
        log.info(
            "execution restored",
            extra={"execution": name, "run": exe.run, "tasks": len(exe.tasks)},
        )
        return name

    def _replay(
        self, exe: model.Execution, dag: workflow.WorkflowDag, task: model.TaskRecord
    ) -> None:
        """Feed a restored task's metrics to its predictor and its end to F."""
        process = task.spec.process
        if task.state in (model.TaskState.FINISHED, model.TaskState.FINISHED_WITH_ERROR):
            dag.record_finished(
                process,
                success=task.state is model.TaskState.FINISHED,
                input_size=task.spec.input_size,
            )
        metrics = task.metrics
        if metrics is None or not metrics.valid:
            return
        assert metrics.peak_rss is not None
        predictor = exe.predictor_for(process)
        if predictor is not None:
            try:
                predictor.observe(float(task.spec.input_size), float(metrics.peak_rss))
            except ValueError:
                return  # refused when it was first posted, too: not counted then either
        exe.observations[process] = exe.observations.get(process, 0) + 1

    # --- executions -----------------------------------------------------------------------

    def register(self, reg: model.Registration, *, now: float) -> dict[str, Any]:
        """Register an execution (route 1).

        Raises:
            model.CwsError: ``DUPLICATE`` (D20), ``UNKNOWN_NAME`` (unknown ranking or assignment),
                ``INVALID`` (bad strategy syntax, predictor, memory bounds or namespace),
                ``LIMIT``.
        """
        self._clock(now)
        if reg.name in self.executions:
            raise model.CwsError(
                model.ErrorKind.DUPLICATE,
                f"execution {reg.name!r} is already registered; DELETE it before registering "
                "it again",
            )
        if len(self.executions) >= self.max_executions:
            raise model.CwsError(
                model.ErrorKind.LIMIT, f"{self.max_executions} executions are registered already"
            )
        if self.namespaces and reg.namespace not in self.namespaces:
            raise model.CwsError(
                model.ErrorKind.INVALID,
                f"namespace {reg.namespace!r} is not watched by this scheduler (watched: "
                f"{', '.join(sorted(self.namespaces))})",
            )
        try:
            spec = registry.parse_strategy(reg.strategy)
            policies = spec.build()
        except registry.UnknownPolicyError as exc:
            raise model.CwsError(model.ErrorKind.UNKNOWN_NAME, f"strategy: {exc}") from None
        except registry.PolicyError as exc:
            raise model.CwsError(model.ErrorKind.INVALID, f"strategy: {exc}") from None
        predictor = self._predictor(reg.memory_predictor)
        floor = self.min_memory_bytes if reg.min_memory is None else reg.min_memory
        cap = reg.max_memory if reg.max_memory is not None else (self.max_memory_bytes or None)
        if cap is not None and (cap <= 0 or cap < floor):
            raise model.CwsError(
                model.ErrorKind.INVALID, f"maxMemory {cap} must be > 0 and >= minMemory {floor}"
            )
        run = workflow.RunId(f"{reg.namespace}/{reg.name}")
        # A fresh DAG: what an earlier execution of the same name left is not this run's.
        self._registry.forget_run(run)
        self._registry.ensure_run(run)
        exe = model.Execution(
            name=reg.name,
            namespace=reg.namespace,
            run=run,
            strategy=spec,
            policies=policies,
            predictor=predictor,
            allocation=allocation.AllocationPolicy(
                floor_bytes=floor,
                cap_bytes=cap,
                floor_bytes_per_cpu=self.min_memory_per_cpu_bytes,
            ),
            options=dict(reg.options),
            registered_at=now,
            registration=reg,
            last_active=now,
        )
        self.executions[reg.name] = exe
        self._by_run[run] = exe
        self._changed(exe)
        self._ended.pop(run, None)
        if run in self._foreign:
            del self._foreign[run]
            self._effects.refresh_held = True  # its pods were held as another CWS's
        log.info(
            "execution registered",
            extra={
                "execution": reg.name,
                "run": run,
                "strategy": str(spec),
                "predictor": predictor.text if predictor else "",
            },
        )
        for warning in predictor.warnings if predictor else ():
            log.warning("execution %s: predictor %s", reg.name, warning)
        return {"execution": reg.name, "run": run, "strategy": str(spec)}

    def _predictor(self, text: str | None) -> registry.PredictorSpec | None:
        """Resolve the registration's predictor; absent or ``default``: the server default."""
        if text is None or not text.strip() or text.strip().lower() == "default":
            text = self.default_predictor
        if not text:
            return None
        try:
            return registry.parse_predictor(text)
        except ValueError as exc:
            raise model.CwsError(model.ErrorKind.INVALID, f"memoryPredictor: {exc}") from None

    def delete(self, name: str) -> dict[str, Any]:
        """Forget an execution and its DAG (route 2); its held pods are re-described."""
        exe = self.execution(name)
        self._drop(exe)
        log.info("execution deleted", extra={"execution": name, "run": exe.run})
        return {"execution": name, "tasks": len(exe.tasks)}

    def _drop(self, exe: model.Execution) -> None:
        """Forget an execution, its DAG and its stored document; remember its run as ended."""
        del self.executions[exe.name]
        del self._by_run[exe.run]
        self._registry.forget_run(exe.run)
        self._dirty.discard(exe.name)
        self._removed.add(exe.name)
        self._ended[exe.run] = None
        while len(self._ended) > _MAX_RUN_MEMORY:
            self._ended.popitem(last=False)
        if exe.batches:
            self._effects.refresh_held = True

    def info(self, name: str) -> dict[str, Any]:
        """A summary of an execution (wfsched's ``GET /v1/scheduler/{e}``)."""
        exe = self.execution(name)
        self._active(exe)
        states: dict[str, int] = {}
        for task in exe.tasks.values():
            states[task.state.value] = states.get(task.state.value, 0) + 1
        dag = self._dag(exe)
        return {
            "execution": exe.name,
            "namespace": exe.namespace,
            "run": exe.run,
            "strategy": str(exe.strategy),
            "memoryPredictor": exe.predictor.text if exe.predictor else None,
            "minMemory": exe.allocation.floor_bytes,
            "maxMemory": exe.allocation.cap_bytes,
            "vertices": len(exe.vertices),
            "edges": sum(1 for e in exe.edges.values() if e is not None),
            "ranks": {step: dag.rank(step) for step in dag.steps()},
            "tasks": states,
            "batches": [
                {
                    "id": b.id,
                    "closed": b.closed_at is not None,
                    "unready": len(b.unready),
                    "ready": len(b.ready),
                }
                for b in exe.batches.values()
            ],
            "observations": dict(exe.observations),
        }

    # --- DAG ------------------------------------------------------------------------------

    def add_vertices(self, name: str, vertices: Sequence[model.Vertex]) -> dict[str, Any]:
        """Add vertices all at once (route 3); see ``dag.add_vertices``."""
        exe = self.execution(name)
        self._active(exe)
        reply = dag_mod.add_vertices(exe, self._dag(exe), vertices)
        self._changed(exe)
        return reply

    def remove_vertices(self, name: str, uids: Sequence[int]) -> dict[str, Any]:
        """Remove vertices with their edges (route 4); unknown uids are ignored."""
        exe = self.execution(name)
        self._active(exe)
        reply = dag_mod.remove_vertices(exe, self._dag(exe), uids)
        self._changed(exe)
        return reply

    def add_edges(self, name: str, edges: Sequence[model.Edge]) -> dict[str, Any]:
        """Add edges all at once (route 5); see ``dag.add_edges``."""
        exe = self.execution(name)
        self._active(exe)
        reply = dag_mod.add_edges(exe, self._dag(exe), edges)
        self._changed(exe)
        return reply

    def remove_edges(self, name: str, uids: Sequence[int]) -> dict[str, Any]:
        """Remove edges by uid (route 6); unknown uids are ignored."""
        exe = self.execution(name)
        self._active(exe)
        reply = dag_mod.remove_edges(exe, self._dag(exe), uids)
        self._changed(exe)
        return reply

    # --- batches --------------------------------------------------------------------------

    def start_batch(self, name: str, *, now: float) -> dict[str, Any]:
        """Open a batch unless one is open (route 7)."""
        self._clock(now)
        exe = self.execution(name)
        self._changed(exe)
        if exe.open_batch is None:
            batch = model.Batch(id=exe.next_batch, opened_at=now)
            exe.next_batch += 1
            exe.batches[batch.id] = batch
            exe.open_batch = batch.id
        return {"batch": exe.open_batch}

    def end_batch(self, name: str, count: int, *, now: float) -> dict[str, Any]:
        """Close the open batch (route 8); without one, a no-op (D21)."""
        self._clock(now)
        exe = self.execution(name)
        self._changed(exe)
        if exe.open_batch is None:
            return {"batch": None}
        batch = exe.batches[exe.open_batch]
        exe.open_batch = None
        batch.closed_at = now
        batch.expected = count
        if not batch.unready:
            self._release(exe, batch)
        return {"batch": batch.id, "waiting_for": len(batch.unready)}

    def _release(self, exe: model.Execution, batch: model.Batch, *, timeout: bool = False) -> None:
        self._dirty.add(exe.name)
        exe.batches.pop(batch.id, None)
        for task_id in (*batch.ready, *batch.unready):
            task = exe.tasks.get(task_id)
            if task is not None and task.batch == batch.id:
                task.batch = None
        self._effects.refresh_held = True
        if timeout:
            self._effects.batch_timeouts += 1
            log.warning(
                "batch released by timeout",
                extra={"execution": exe.name, "batch": batch.id, "missing": len(batch.unready)},
            )

    def tick(self, *, now: float) -> None:
        """Release timed-out batches (D10), expire grace periods (D22) and idle executions."""
        self._clock(now)
        if self.idle_expiry_s > 0:
            for exe in list(self.executions.values()):
                if now - exe.last_active >= self.idle_expiry_s:
                    log.warning(
                        "execution expired: no request and no pod event for %gs (never DELETEd)",
                        self.idle_expiry_s,
                        extra={"execution": exe.name, "run": exe.run, "tasks": len(exe.tasks)},
                    )
                    self._drop(exe)
        for exe in self.executions.values():
            for batch in list(exe.batches.values()):
                closed = batch.closed_at
                if closed is not None and now >= closed + self.batch_timeout_s:
                    self._release(exe, batch, timeout=True)
        for uid, waiting in list(self._waiting.items()):
            if now >= waiting.since + self.registration_grace_s:
                self._expire(uid)
                self._effects.refresh_held = True

    # --- tasks ----------------------------------------------------------------------------

    def register_task(
        self, name: str, task_id: int, spec: model.TaskRegistration, *, now: float
    ) -> dict[str, Any]:
        """Register a task before its pod exists (route 9).

        Returns:
            ``{"memoryInBytes": <planned bytes or None>, "rank": <rank of the process>}``
            (CWS always answers ``{}``; D19).

        Raises:
            model.CwsError: ``DUPLICATE`` if the id is registered for another pod.
        """
        self._clock(now)
        exe = self.execution(name)
        self._changed(exe)
        old = exe.tasks.get(task_id)
        live = old is not None and old.state is not model.TaskState.DELETED
        if old is not None and live and old.spec.pod_name != spec.pod_name:
            raise model.CwsError(
                model.ErrorKind.DUPLICATE,
                f"task {task_id} is already registered for pod {old.spec.pod_name!r}",
            )
        dag = self._dag(exe)
        if spec.process not in exe.process_uid and spec.process not in exe.implicit:
            if spec.process not in set(dag.steps()):
                exe.implicit.add(spec.process)
                if (exe.name, spec.process) not in self._warned:
                    self._warned.add((exe.name, spec.process))
                    log.warning(
                        "task of an unknown process; registered it implicitly",
                        extra={"execution": exe.name, "step": spec.process},
                    )
            dag.add_step(spec.process)
        if old is not None and live:
            old.spec = spec  # the same registration again (an engine's retry): refreshed
            task = old
        else:
            task = model.TaskRecord(id=task_id, spec=spec, registered_at=now)
            exe.tasks[task_id] = task
            if exe.open_batch is not None:
                task.batch = exe.open_batch
                exe.batches[exe.open_batch].unready.add(task_id)
        exe.by_pod[spec.pod_name] = task_id
        key = (exe.run, spec.pod_name)
        if key in self._waiting_by_pod:
            self._effects.refresh_held = True
        elif key in self._released_by_pod:
            self._effects.redescribe.append(self._released_by_pod[key])
        return {
            "memoryInBytes": self._planned(exe, task.spec, task.spec.memory_bytes or 0),
            "rank": dag.rank(spec.process),
        }

    def _planned(
        self, exe: model.Execution, spec: model.TaskRegistration, request: int
    ) -> int | None:
        """The memory planned for a task of ``spec`` with a ``request`` in bytes, if any."""
        if spec.repetition > 0 or request <= 0:
            return None
        predictor = exe.predictor_for(spec.process)
        if predictor is None:
            return None
        prediction = predictor.predict(float(spec.input_size))
        if prediction is None or not math.isfinite(prediction) or prediction <= 0:
            return None
        return exe.allocation.allocate(prediction, request_bytes=request, cpus=spec.cpus)

    def _task(self, name: str, task_id: int) -> tuple[model.Execution, model.TaskRecord]:
        exe = self.execution(name)
        task = exe.tasks.get(task_id)
        if task is None:
            raise model.CwsError(
                model.ErrorKind.UNKNOWN_TASK, f"there is no task {task_id} in execution {name}"
            )
        return exe, task

    def task_state(
        self, name: str, task_id: int, *, pod_state: Callable[[str], cluster.PodState]
    ) -> dict[str, Any]:
        """The CWS state of a task (route 10); ``pod_state`` reads the loop's cache ledger."""
        exe, task = self._task(name, task_id)
        self._active(exe)
        if task.pod_uid and task.state in (model.TaskState.UNSCHEDULED, model.TaskState.SCHEDULED):
            ledger = pod_state(task.pod_uid)
            if ledger is cluster.PodState.ASSUMED:
                task.advance(model.TaskState.SCHEDULED)
            elif ledger is cluster.PodState.ADDED:
                task.advance(model.TaskState.PREPARED)
            self._dirty.add(exe.name)
        return {"state": task.state.value, "error": task.error}

    def delete_task(self, name: str, task_id: int) -> dict[str, Any]:
        """Withdraw a task (route 11): out of its batch and, if pending, out of the queue."""
        exe, task = self._task(name, task_id)
        self._changed(exe)
        if task.state is model.TaskState.DELETED:
            return {"deleted": False}
        batch = exe.batches.get(task.batch) if task.batch is not None else None
        if batch is not None:
            batch.unready.discard(task_id)
            if task_id in batch.ready:
                batch.ready.remove(task_id)
            if batch.closed_at is not None and not batch.unready:
                self._release(exe, batch)
        task.batch = None
        task.state = model.TaskState.DELETED
        if task.pod_uid:
            self._effects.redescribe.append(task.pod_uid)
        return {"deleted": True}

    def task_metrics(self, name: str, task_id: int, metrics: model.TaskMetrics) -> dict[str, Any]:
        """Store a task's metrics and feed its process's predictor (route 12); idempotent."""
        exe, task = self._task(name, task_id)
        self._changed(exe)
        if task.metrics is not None:
            return {"observed": False, "duplicate": True}
        task.metrics = metrics
        if not metrics.valid:
            return {"observed": False}
        assert metrics.peak_rss is not None
        process, size = task.spec.process, task.spec.input_size
        predictor = exe.predictor_for(process)
        if predictor is not None:
            try:
                predictor.observe(float(size), float(metrics.peak_rss))
            except ValueError as exc:
                log.warning("observation refused: %s", exc, extra={"execution": exe.name})
                return {"observed": False}
        exe.observations[process] = exe.observations.get(process, 0) + 1
        self._effects.observations.append(
            model.Observation(
                run=exe.run, step=process, input_bytes=size, peak_bytes=metrics.peak_rss
            )
        )
        return {"observed": True}

    # --- pods (TaskHook) ------------------------------------------------------------------

    def describe(
        self, facts: podfacts.PodFacts, labels: workflows.TaskLabels, *, now: float
    ) -> tuple[workflows.TaskLabels, bool]:
        """Map a pod of a CWS execution to its registered task; return ``(labels, held)``."""
        if labels.engine != "cws":
            return labels, False
        self._clock(now)
        exe = self._by_run.get(labels.run)
        task_id = exe.by_pod.get(facts.ref.name) if exe is not None else None
        task = exe.tasks.get(task_id) if exe is not None and task_id is not None else None
        uid = facts.ref.uid
        if facts.finished:
            return (labels if task is None else _relabel(labels, task)), False
        if exe is None and not self.adopt_unregistered and labels.run not in self._ended:
            return labels, self._foreign_pod(labels.run, facts.ref.name)
        if exe is None or task is None:
            return labels, self._unregistered(uid, labels.run, facts.ref.name, now=now)
        self._changed(exe)
        self._forget_pod(uid)
        task.pod_uid = uid
        if task.state is model.TaskState.DELETED:
            return labels, True  # withdrawn by DELETE task: never scheduled
        task.advance(model.TaskState.UNSCHEDULED)
        held = False
        batch = exe.batches.get(task.batch) if task.batch is not None else None
        if batch is not None:
            held = True  # even when this pod completes the batch: released in arrival order
            if task.id in batch.unready:
                batch.unready.discard(task.id)
                batch.ready.append(task.id)
                if batch.closed_at is not None and not batch.unready:
                    self._release(exe, batch)
        return _relabel(labels, task), held

    def _foreign_pod(self, run: workflow.RunId, pod: str) -> bool:
        """Hold a pod of an execution never registered here: another CWS may own it (True)."""
        if run not in self._foreign:
            log.info(
                "pods of an execution not registered with wfsched are left alone "
                "(adopt_unregistered_executions is off)",
                extra={"run": run, "pod": pod},
            )
        self._foreign[run] = None
        self._foreign.move_to_end(run)
        while len(self._foreign) > _MAX_RUN_MEMORY:
            self._foreign.popitem(last=False)
        return True

    def _unregistered(self, uid: str, run: workflow.RunId, pod: str, *, now: float) -> bool:
        """Hold a pod without registration during the grace period (D22); True while held."""
        if uid in self._released:
            return False
        waiting = self._waiting.get(uid)
        if waiting is None:
            waiting = model.Waiting(run=run, pod=pod, since=now)
            self._waiting[uid] = waiting
            self._waiting_by_pod[(run, pod)] = uid
            log.info(
                "pod waits for its task registration",
                extra={"run": run, "pod": pod, "grace_s": self.registration_grace_s},
            )
        if now >= waiting.since + self.registration_grace_s:
            self._expire(uid)
            return False
        return True

    def _expire(self, uid: str) -> None:
        waiting = self._waiting.pop(uid)
        key = (waiting.run, waiting.pod)
        self._waiting_by_pod.pop(key, None)
        self._released[uid] = key
        self._released_by_pod[key] = uid
        while len(self._released) > _MAX_RELEASED_MEMORY:
            _old, old_key = self._released.popitem(last=False)
            self._released_by_pod.pop(old_key, None)
        log.warning(
            "no task registration arrived; scheduling the pod as a task of its own",
            extra={"run": waiting.run, "pod": waiting.pod},
        )

    def _forget_pod(self, uid: str) -> None:
        waiting = self._waiting.pop(uid, None)
        if waiting is not None:
            self._waiting_by_pod.pop((waiting.run, waiting.pod), None)
        key = self._released.pop(uid, None)
        if key is not None:
            self._released_by_pod.pop(key, None)

    def finished(
        self, facts: podfacts.PodFacts, labels: workflows.TaskLabels, *, now: float | None = None
    ) -> None:
        """Record the end of a pod of ours (TaskHook)."""
        if now is not None:
            self._clock(now)
        self._forget_pod(facts.ref.uid)
        exe = self._by_run.get(labels.run)
        if exe is None and labels.engine == "cws":
            # A restore may claim it (the leader that knew the execution died).
            key = (labels.run, facts.ref.name)
            reason = facts.termination_reason or "Failed"
            self._finished_unknown[key] = (facts.phase == "Succeeded", reason)
            while len(self._finished_unknown) > _MAX_FINISHED_UNKNOWN:
                self._finished_unknown.popitem(last=False)
            return
        task_id = exe.by_pod.get(facts.ref.name) if exe is not None else None
        task = exe.tasks.get(task_id) if exe is not None and task_id is not None else None
        if task is None:
            return
        assert exe is not None
        self._changed(exe)
        if facts.phase == "Succeeded":
            task.advance(model.TaskState.FINISHED)
        else:
            task.advance(model.TaskState.FINISHED_WITH_ERROR)
            task.error = task.error or facts.termination_reason or "Failed"

    # --- planning (behind scheduler.cws_policies) -----------------------------------------

    def plans_memory(self, run: workflow.RunId) -> bool:
        """True when ``run`` is an execution with a memory predictor of its own."""
        exe = self._by_run.get(run)
        return exe is not None and exe.predictor is not None

    def plan(self, task: workflow.Task) -> int | None:
        """Planned memory of a queued task of an execution with a predictor, or ``None``."""
        exe = self._by_run.get(task.run)
        if exe is None:
            return None
        spec = model.TaskRegistration(
            process=task.step, pod_name="", input_size=task.input_size, repetition=task.attempt
        )
        planned = self._planned(exe, spec, task.request.memory_bytes)
        return planned if planned is not None and planned < task.request.memory_bytes else None

    def policies_for(self, run: workflow.RunId) -> interfaces.Policies | None:
        """The execution's own ranking and assignment, if ``run`` is a registered execution."""
        exe = self._by_run.get(run)
        return None if exe is None else exe.policies


def _relabel(labels: workflows.TaskLabels, task: model.TaskRecord) -> workflows.TaskLabels:
    return dataclasses.replace(
        labels,
        step=workflow.StepName(task.spec.process),
        task_id=str(task.id),
        input_size=task.spec.input_size,
        attempt=task.spec.repetition,
    )
