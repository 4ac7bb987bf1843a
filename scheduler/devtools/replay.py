"""Replay a real workflow on a cluster: create each task's pod once its parents succeeded.

``ReplayPlan`` is the pure part: from a WfFormat instance (``scheduler.devtools.simulate``
parses it) or an nf-core trace (``scheduler.devtools.nftrace``) it derives one pod manifest per
task attempt, with the wfsched workflow labels (run id, workflow name, step, task id, attempt,
depends-on, input size), the task's CPU and memory requests and its runtime (scaled by
``time_scale``, at least ``min_runtime_s``) as a KWOK duration annotation, or a sleeping
container for real nodes. ``Replayer`` drives it against an API server: it creates ready pods,
follows them (a LIST and WATCH of the run's pods when the client can watch, else polling), and
creates children when all parents have succeeded, as workflow engines do.

Engine behaviour for traces (Nextflow with nf-core's ``conf/base.config``):

- a finished task reports its real peak (``wfsched.io/peak-memory-bytes``, as a wrapper
  would; the daemon reads it only from a pod that succeeded, so it is written at creation);
- the task's true peak also goes to the fake kubelet memory model (``memsim``: annotations
  ``sim.wfsched.io/peak-memory-bytes`` and ``sim.wfsched.io/peak-at``), which the caller runs
  beside the replay (:func:`memory_simulator`). An attempt whose memory limit is below the peak
  is OOM-killed by it: exit code 137, reason ``OOMKilled``, the pod fails. The trace records
  only the peak, not when it was reached; memsim's usage grows steadily to the peak at
  ``peak_at`` (default one half) of the runtime, so the kill comes when usage crosses the
  limit, at ``peak_at * limit / peak`` of the runtime or earlier (a limit just below the peak
  wastes half the run);
- nf-core retries exit codes 130-145 (137 among them) with ``memory = preset * task.attempt``
  and ``cpus = preset * task.attempt`` (``check_max`` caps both at the largest node) up to
  ``maxRetries = 1``; ``ReplayPlan.max_retries`` is that limit. A task that fails beyond it
  fails the workflow (``RuntimeError``), as Nextflow's ``terminate`` does.
"""

from __future__ import annotations

import math
import queue
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from scheduler.core import resources
from scheduler.devtools import devcluster, memsim, nftrace, simulate
from scheduler.kube import informer, keys

_DNS_UNSAFE = re.compile(r"[^a-z0-9-]+")
NF_CORE_MAX_RETRIES = 1
"""``maxRetries`` of nf-core's ``conf/base.config``."""


def step_label(step: str) -> str:
    """The ``wfsched.io/step`` label value of a trace's step (the daemon's name for it)."""
    return _dns_name(step, 63)


def _dns_name(text: str, limit: int = 63) -> str:
    cleaned = _DNS_UNSAFE.sub("-", text.lower()).strip("-") or "x"
    if len(cleaned) <= limit:
        return cleaned
    digest = uuid.uuid5(uuid.NAMESPACE_URL, text).hex[:8]
    return f"{cleaned[: limit - 9].rstrip('-')}-{digest}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplayTask:
    """One task to replay: identity, parents, requests, the scaled runtime and the real peak."""

    id: str
    pod_name: str
    step: str
    parents: tuple[str, ...]
    runtime_s: float
    cpu_millis: int
    memory_bytes: int
    input_size: int
    peak_bytes: int | None = None
    image: str = ""
    """The task's container image on fake nodes (with the step's tool it keys wfsched's memory
    priors); ``""``: a plain busybox image."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplayPlan:
    """Pods to create for one run of a workflow.

    Attributes:
        max_retries: Retries of an OOM-killed task (nf-core's ``maxRetries``).
        max_cpu_millis: Cap of a retry's escalated CPU request (nf-core's ``max_cpus``).
        max_memory_bytes: Cap of a retry's escalated memory request (``max_memory``).
        time_scale: The runtime multiplier the plan was built with.
    """

    workflow: str
    run_id: str
    tasks: tuple[ReplayTask, ...]
    scheduler_name: str
    fake_nodes: bool = True
    max_retries: int = NF_CORE_MAX_RETRIES
    max_cpu_millis: int | None = None
    max_memory_bytes: int | None = None
    time_scale: float = 1.0
    peak_at: float = memsim.DEFAULT_PEAK_AT

    @classmethod
    def from_instance(
        cls,
        instance: simulate.Instance,
        *,
        scheduler_name: str,
        time_scale: float = 1.0,
        run_id: str | None = None,
        min_runtime_s: float = 1.0,
        fake_nodes: bool = True,
    ) -> ReplayPlan:
        """Build the plan; ``time_scale`` multiplies every runtime (0.1 = ten times faster).

        Raises:
            ValueError: for a non-positive ``time_scale``.
        """
        _check_scale(time_scale)
        run = run_id or f"{_dns_name(instance.name, 40)}-{uuid.uuid4().hex[:6]}"
        names: dict[str, str] = {}
        for index, task in enumerate(instance.tasks):
            names[task.id] = _dns_name(f"{run}-{index}-{task.step}", 63)
        tasks = tuple(
            ReplayTask(
                id=task.id,
                pod_name=names[task.id],
                step=task.step,
                parents=task.parents,
                runtime_s=max(min_runtime_s, round(task.runtime_s * time_scale, 1)),
                cpu_millis=task.cpu_millis,
                memory_bytes=task.memory_bytes,
                input_size=task.input_size,
            )
            for task in instance.tasks
        )
        return cls(
            workflow=_dns_name(instance.name, 63),
            run_id=run,
            tasks=tasks,
            scheduler_name=scheduler_name,
            fake_nodes=fake_nodes,
            time_scale=time_scale,
        )

    @classmethod
    def from_trace(
        cls,
        trace: nftrace.TraceWorkflow,
        *,
        scheduler_name: str,
        time_scale: float = 1.0,
        min_runtime_s: float = 1.0,
        run_id: str | None = None,
        workflow_name: str | None = None,
        max_cpu_millis: int | None = None,
        max_memory_bytes: int | None = None,
        max_retries: int = NF_CORE_MAX_RETRIES,
        fake_nodes: bool = True,
    ) -> ReplayPlan:
        """Build the plan of an nf-core trace; requests above the caps are clamped to them.

        ``workflow_name`` (default: the trace's workflow, ``rnaseq``) is the
        ``wfsched.io/workflow`` label, under which wfsched learns across runs.

        Raises:
            ValueError: for a non-positive ``time_scale`` or a negative ``max_retries``.
        """
        _check_scale(time_scale)
        if max_retries < 0:
            raise ValueError(f"max retries must be >= 0, got {max_retries}")
        base = trace.name.split("/")[0]
        run = run_id or f"{_dns_name(trace.name, 40)}-{uuid.uuid4().hex[:6]}"
        tasks = tuple(
            ReplayTask(
                id=task.id,
                pod_name=_dns_name(f"{run}-{task.id}-{task.step.rsplit(':', 1)[-1]}", 60),
                step=task.step,
                parents=task.parents,
                runtime_s=max(min_runtime_s, round(task.runtime_s * time_scale, 1)),
                cpu_millis=_capped(task.cpu_millis, max_cpu_millis),
                memory_bytes=_capped(task.memory_bytes, max_memory_bytes),
                input_size=task.input_size,
                peak_bytes=task.peak_bytes,
                image=task.image,
            )
            for task in trace.tasks
        )
        return cls(
            workflow=_dns_name(workflow_name or base, 63),
            run_id=run,
            tasks=tasks,
            scheduler_name=scheduler_name,
            fake_nodes=fake_nodes,
            max_retries=max_retries,
            max_cpu_millis=max_cpu_millis,
            max_memory_bytes=max_memory_bytes,
            time_scale=time_scale,
        )

    def to_instance(self, name: str | None = None) -> simulate.Instance:
        """The plan as a simulator instance: same tasks, parents, scaled runtimes and requests.

        ``wfsched simulate`` runs this, so it predicts the replay of the very same plan (the
        simulator knows no memory prediction, OOM kills or retries). As in the replay, the
        scheduler learns a task and its parents only when the task is released.
        """
        children: dict[str, list[str]] = {}
        for task in self.tasks:
            for parent in task.parents:
                children.setdefault(parent, []).append(task.id)
        return simulate.Instance(
            name=name or self.workflow,
            tasks=tuple(
                simulate.SimTask(
                    id=task.id,
                    step=task.step,
                    parents=task.parents,
                    children=tuple(children.get(task.id, ())),
                    runtime_s=task.runtime_s,
                    cpu_millis=task.cpu_millis,
                    memory_bytes=task.memory_bytes,
                    input_size=task.input_size,
                )
                for task in self.tasks
            ),
            dag_known_upfront=False,
        )

    def pod_name(self, task: ReplayTask, attempt: int = 1) -> str:
        """The pod of ``task``'s ``attempt`` (a retry is a new pod, as Nextflow makes one)."""
        return task.pod_name if attempt == 1 else _dns_name(f"{task.pod_name}-a{attempt}", 63)

    def requests(self, task: ReplayTask, attempt: int = 1) -> tuple[int, int]:
        """(CPU millicores, memory bytes) of an attempt: the preset times the attempt, capped."""
        if attempt == 1:
            return task.cpu_millis, task.memory_bytes
        return (
            _capped(task.cpu_millis * attempt, self.max_cpu_millis),
            _capped(task.memory_bytes * attempt, self.max_memory_bytes),
        )

    def manifest(self, task: ReplayTask, attempt: int = 1) -> dict[str, Any]:
        """Return the pod manifest of ``task``'s ``attempt``."""
        cpu_millis, memory_bytes = self.requests(task, attempt)
        annotations = {
            keys.TASK_ID_ANNOTATION: task.id,
            keys.INPUT_SIZE_ANNOTATION: str(task.input_size),
        }
        if attempt > 1:
            annotations[keys.ATTEMPT_ANNOTATION] = str(attempt)
        if task.parents:
            annotations[keys.DEPENDS_ON_ANNOTATION] = ",".join(task.parents)
        if task.peak_bytes:
            annotations[keys.PEAK_MEMORY_ANNOTATION] = str(task.peak_bytes)
            if self.fake_nodes:
                annotations[memsim.PEAK_MEMORY_ANNOTATION] = str(task.peak_bytes)
                annotations[memsim.PEAK_AT_ANNOTATION] = f"{self.peak_at:g}"
        resources_: dict[str, Any] = {"requests": {"cpu": f"{cpu_millis}m"}}
        if memory_bytes:
            resources_["requests"]["memory"] = str(memory_bytes)
            resources_["limits"] = {"memory": str(memory_bytes)}
        container: dict[str, Any] = {
            "name": "task",
            "image": "busybox:1.36",
            "resources": resources_,
        }
        if ":" in task.step:  # an nf-core process: its tool, which label values cannot carry
            annotations[keys.TOOL_ANNOTATION] = task.step.rsplit(":", 1)[-1]
        if self.fake_nodes:
            annotations[devcluster.RUNTIME_ANNOTATION] = f"{task.runtime_s:g}s"
            container["image"] = task.image or container["image"]  # nothing runs it
        else:
            container["command"] = ["sleep", f"{task.runtime_s:g}"]
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": self.pod_name(task, attempt),
                "labels": {
                    keys.RUN_ID_LABEL: self.run_id,
                    keys.WORKFLOW_LABEL: self.workflow,
                    keys.STEP_LABEL: step_label(task.step),
                },
                "annotations": annotations,
            },
            "spec": {
                "schedulerName": self.scheduler_name,
                "restartPolicy": "Never",
                "terminationGracePeriodSeconds": 0,
                "containers": [container],
            },
        }


def simulation_instance(
    trace: nftrace.TraceWorkflow,
    *,
    time_scale: float,
    min_runtime_s: float,
    cluster: simulate.ClusterSpec,
) -> simulate.Instance:
    """The simulator instance of ``trace`` as a replay on ``cluster`` would run it.

    The same plan as :meth:`ReplayPlan.from_trace` (runtimes scaled and floored, requests
    capped at a node) through :meth:`ReplayPlan.to_instance`, so ``wfsched simulate`` and the
    makespan benchmark's simulator column predict the very replay they are compared with.

    Raises:
        ValueError: the trace cannot be planned (see :meth:`ReplayPlan.from_trace`).
    """
    plan = ReplayPlan.from_trace(
        trace,
        scheduler_name="simulated",
        time_scale=time_scale,
        min_runtime_s=min_runtime_s,
        max_cpu_millis=cluster.node_cpu_millis,
        max_memory_bytes=cluster.node_memory_bytes,
    )
    return plan.to_instance(trace.name)


def _check_scale(time_scale: float) -> None:
    if not time_scale > 0 or not math.isfinite(time_scale):
        raise ValueError(f"time scale must be a positive number, got {time_scale}")


def _capped(value: int, cap: int | None) -> int:
    return value if cap is None else min(value, cap)


class PodApi(Protocol):
    """The calls a replay makes."""

    def create_pod(self, namespace: str, manifest: Mapping[str, Any]) -> object:
        """Create a pod (an existing one with the same name is fine: idempotent restart)."""

    def list_pods(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        """List pods as plain dicts."""


@runtime_checkable
class WatchingPodApi(PodApi, informer.WatchSource, Protocol):
    """A client that can also LIST and WATCH (``scheduler.kube.client.KubeClient``).

    The replay then follows its pods by watching them instead of polling.
    """


class PodFeed:
    """The newest state of the pods matching a selector, kept by an informer (LIST, then WATCH).

    :meth:`changed` blocks until a pod changed (or a timeout) and returns the newest object of
    each pod that changed since the previous call, so a reader sees a pod's end as soon as the
    API server reports it, at the cost of one event per change instead of one LIST of every
    pod of the run per poll. The informer re-lists after a failed watch; a pod it reports again
    unchanged must be a no-op for the reader. Deletions are not reported.
    """

    def __init__(self, api: WatchingPodApi, *, namespace: str, label_selector: str) -> None:
        self._events: queue.Queue[Any] = queue.Queue()
        self._informer = informer.Informer(
            api,
            informer.WatchSpec(
                name="replay-pods", kind="pods", namespace=namespace, label_selector=label_selector
            ),
            self._events,
            watch_timeout_s=60,
        )

    def start(self, timeout_s: float = 30.0) -> PodFeed:
        """Start the informer; return once its first LIST is done (pods created after are seen).

        Raises:
            TimeoutError: the first LIST did not succeed within ``timeout_s``.
        """
        self._informer.start()
        if not self._informer.has_synced.wait(timeout_s):
            self.stop()
            raise TimeoutError(f"listing the replay's pods took over {timeout_s:.0f}s")
        return self

    def stop(self) -> None:
        """Stop the informer (closes an open watch)."""
        self._informer.stop(timeout=10)

    def changed(self, timeout_s: float) -> list[dict[str, Any]]:
        """Pods changed since the last call, waiting up to ``timeout_s`` for the first."""
        items = []
        try:
            items.append(self._events.get(timeout=timeout_s))
            while True:
                items.append(self._events.get_nowait())
        except queue.Empty:
            pass
        newest: dict[str, dict[str, Any]] = {}
        for _name, kind, pod in items:
            if kind != "DELETED":
                newest[str((pod.get("metadata") or {}).get("name") or "")] = pod
        return list(newest.values())


def memory_simulator(
    kube: Any, namespace: str, *, report_usage: bool = True
) -> memsim.MemorySimulator:
    """The fake kubelet memory model for a replay's namespace (start it before the replay).

    ``kube`` is a ``scheduler.kube.client.KubeClient``; without the model running, no attempt
    on fake nodes is ever OOM-killed. ``report_usage=False`` keeps the OOM kills but sends no
    usage annotations: only metrics-server reads them, and on a cluster without it they are
    API writes (and KWOK stage re-evaluations) that change nothing.
    """
    return memsim.MemorySimulator(
        kube, namespace=namespace, usage_interval_s=2.0 if report_usage else math.inf
    )


@dataclass(slots=True, kw_only=True)
class Attempt:
    """One pod of a task, as the replay saw it (times in seconds since the replay's start).

    ``memory_bytes`` and ``memory_limit_bytes`` are read from the bound pod (after any resize
    before binding); ``resized`` lists the changes the replay saw while the pod ran (a shrink
    or grow in place) as (seconds, request, limit); ``outcome`` is ``running``, ``succeeded``,
    ``oom`` (OOM-killed) or ``failed``.
    """

    task_id: str
    step: str
    pod_name: str
    attempt: int
    created_s: float
    cpu_millis: int
    memory_bytes: int
    memory_limit_bytes: int
    peak_bytes: int | None
    bound_s: float | None = None
    finished_s: float | None = None
    node: str | None = None
    outcome: str = "running"
    resized: list[tuple[float, int, int]] = field(default_factory=list)

    @property
    def final_limit_bytes(self) -> int:
        """The memory limit at the end (after every resize seen while it ran)."""
        return self.resized[-1][2] if self.resized else self.memory_limit_bytes

    def memory_steps(self) -> list[tuple[float, float, int]]:
        """(start, end, request bytes) pieces from binding to finish; empty unless both known."""
        if self.bound_s is None or self.finished_s is None:
            return []
        changes = [(self.bound_s, self.memory_bytes)] + [(t, req) for t, req, _ in self.resized]
        ends = [t for t, _ in changes[1:]] + [self.finished_s]
        return [
            (max(start, self.bound_s), min(max(end, start), self.finished_s), request)
            for (start, request), end in zip(changes, ends, strict=True)
        ]


@dataclass(slots=True)
class ReplayProgress:
    """Counts and timestamps of a replay (seconds since its start)."""

    total: int
    created: int = 0
    bound: int = 0
    succeeded: int = 0
    failed: int = 0
    first_bind_s: float | None = None
    makespan_s: float | None = None
    bind_times: dict[str, float] = field(default_factory=dict)
    created_times: dict[str, float] = field(default_factory=dict)
    attempts: list[Attempt] = field(default_factory=list)
    """Every pod created, in creation order (failed attempts included)."""


def _container_memory(pod: Mapping[str, Any]) -> tuple[int, int]:
    """(request, limit) memory bytes of the pod's first container; 0 when unset."""
    containers = pod.get("spec", {}).get("containers") or [{}]
    spec = containers[0].get("resources") or {}
    values = []
    for part in ("requests", "limits"):
        raw = (spec.get(part) or {}).get("memory")
        try:
            values.append(resources.integer_value(str(raw)) if raw is not None else 0)
        except (ValueError, ArithmeticError):
            values.append(0)
    return values[0], values[1]


def _terminated_reason(pod: Mapping[str, Any]) -> str:
    for status in pod.get("status", {}).get("containerStatuses") or ():
        terminated = (status.get("state") or {}).get("terminated") or {}
        if terminated.get("reason"):
            return str(terminated["reason"])
    return ""


class Replayer:
    """Drive a ``ReplayPlan`` against an API server.

    Pods are followed by watching them (a :class:`WatchingPodApi`) or by listing them every
    ``poll_s``. Times are taken when a pod's change is processed; with a watch that is as the
    API server reports it, with polling up to ``poll_s`` later. Progress is reported at most
    every ``poll_s``.
    """

    def __init__(
        self,
        plan: ReplayPlan,
        api: PodApi,
        *,
        namespace: str,
        poll_s: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.plan = plan
        self.api = api
        self.namespace = namespace
        self.poll_s = poll_s
        self.clock = clock
        self._by_id = {t.id: t for t in plan.tasks}
        self._children: dict[str, list[ReplayTask]] = {}
        for task in plan.tasks:
            for parent in task.parents:
                self._children.setdefault(parent, []).append(task)

    def run(
        self,
        *,
        timeout_s: float = 3600,
        on_progress: Callable[[ReplayProgress], None] | None = None,
    ) -> ReplayProgress:
        """Run the workflow to completion (or failure of a task) and return the figures.

        Raises:
            TimeoutError: the workflow did not finish in ``timeout_s``.
            RuntimeError: a task pod failed (and, if OOM-killed, had no retry left).
        """
        start = self.clock()
        progress = ReplayProgress(total=len(self.plan.tasks))
        done: set[str] = set()
        created: set[str] = set()
        live: dict[str, Attempt] = {}
        selector = f"{keys.RUN_ID_LABEL}={self.plan.run_id}"

        def launch(task: ReplayTask, attempt: int) -> None:
            manifest = self.plan.manifest(task, attempt)
            self.api.create_pod(self.namespace, manifest)
            now = self.clock() - start
            cpu, memory = self.plan.requests(task, attempt)
            record = Attempt(
                task_id=task.id,
                step=task.step,
                pod_name=manifest["metadata"]["name"],
                attempt=attempt,
                created_s=now,
                cpu_millis=cpu,
                memory_bytes=memory,
                memory_limit_bytes=memory,
                peak_bytes=task.peak_bytes,
            )
            live[record.pod_name] = record
            progress.attempts.append(record)
            progress.created_times[record.pod_name] = now

        def create(tasks: Iterable[ReplayTask]) -> None:
            for task in tasks:
                if task.id in created or not all(p in done for p in task.parents):
                    continue
                launch(task, 1)
                created.add(task.id)
                progress.created = len(created)

        feed = (
            PodFeed(self.api, namespace=self.namespace, label_selector=selector).start()
            if isinstance(self.api, WatchingPodApi)
            else None
        )
        shown = -math.inf
        try:
            create(t for t in self.plan.tasks if not t.parents)
            while len(done) < len(self.plan.tasks):
                if self.clock() - start > timeout_s:
                    raise TimeoutError(f"workflow not finished after {timeout_s:.0f}s")
                if feed is not None:
                    pods = feed.changed(self.poll_s)
                else:
                    time.sleep(self.poll_s)
                    pods = self.api.list_pods(self.namespace, selector)
                now = self.clock() - start
                for pod in pods:
                    record = live.get(pod["metadata"]["name"])
                    if record is not None:
                        self._observe(pod, record, now, progress, done, live, launch, create)
                progress.bound = len(progress.bind_times)
                progress.succeeded = len(done)
                finished = len(done) == len(self.plan.tasks)
                if on_progress is not None and (finished or now - shown >= self.poll_s):
                    shown = now
                    on_progress(progress)
        finally:
            if feed is not None:
                feed.stop()
        progress.makespan_s = self.clock() - start
        return progress

    def _observe(
        self,
        pod: Mapping[str, Any],
        record: Attempt,
        now: float,
        progress: ReplayProgress,
        done: set[str],
        live: dict[str, Attempt],
        launch: Callable[[ReplayTask, int], None],
        create: Callable[[Iterable[ReplayTask]], None],
    ) -> None:
        name = record.pod_name
        node = pod.get("spec", {}).get("nodeName")
        if node and record.bound_s is None:
            record.bound_s = now
            record.node = node
            progress.bind_times[name] = now
            if progress.first_bind_s is None:
                progress.first_bind_s = now
            record.memory_bytes, record.memory_limit_bytes = _container_memory(pod)
        elif node:
            latest = record.resized[-1][1:] if record.resized else None
            memory = _container_memory(pod)
            if memory != (latest or (record.memory_bytes, record.memory_limit_bytes)):
                record.resized.append((now, *memory))
        phase = pod.get("status", {}).get("phase")
        task = self._by_id[record.task_id]
        if phase == "Failed":
            del live[name]
            record.finished_s = now
            progress.failed += 1
            if _terminated_reason(pod) != "OOMKilled":
                record.outcome = "failed"
                raise RuntimeError(f"task pod {name} failed")
            record.outcome = "oom"
            if record.attempt > self.plan.max_retries:
                raise RuntimeError(
                    f"task {task.id} ({task.step}) OOM-killed on attempt {record.attempt}, "
                    f"no retry left (max retries {self.plan.max_retries})"
                )
            launch(task, record.attempt + 1)
        elif phase == "Succeeded" and task.id not in done:
            del live[name]
            record.finished_s = now
            record.outcome = "succeeded"
            done.add(task.id)
            create(self._children.get(task.id, ()))
