"""Replay a real workflow on a cluster: create each task's pod once its parents succeeded.

``ReplayPlan`` is the pure part: from a WfFormat instance (``scheduler.devtools.simulate``
parses it) it derives one pod manifest per task, with the wfsched workflow labels (run id,
workflow name, step, task id, depends-on, input size), the task's CPU and memory requests and
its runtime
(scaled by ``time_scale``) as a KWOK duration annotation, or a sleeping container for real
nodes. ``Replayer`` drives it against an API server: it creates ready pods, watches them, and
creates children when all parents have succeeded, as workflow engines do.
"""

from __future__ import annotations

import math
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from scheduler.devtools import devcluster, simulate
from scheduler.kube import keys

_DNS_UNSAFE = re.compile(r"[^a-z0-9-]+")


def _dns_name(text: str, limit: int = 63) -> str:
    cleaned = _DNS_UNSAFE.sub("-", text.lower()).strip("-") or "x"
    if len(cleaned) <= limit:
        return cleaned
    digest = uuid.uuid5(uuid.NAMESPACE_URL, text).hex[:8]
    return f"{cleaned[: limit - 9].rstrip('-')}-{digest}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplayTask:
    """One task to replay: identity, parents, requests and the scaled runtime."""

    id: str
    pod_name: str
    step: str
    parents: tuple[str, ...]
    runtime_s: float
    cpu_millis: int
    memory_bytes: int
    input_size: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplayPlan:
    """Pods to create for one run of a workflow."""

    workflow: str
    run_id: str
    tasks: tuple[ReplayTask, ...]
    scheduler_name: str
    fake_nodes: bool = True

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
        if not time_scale > 0 or not math.isfinite(time_scale):
            raise ValueError(f"time scale must be a positive number, got {time_scale}")
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
        )

    def manifest(self, task: ReplayTask) -> dict[str, Any]:
        """Return the pod manifest of ``task``."""
        annotations = {
            keys.TASK_ID_ANNOTATION: task.id,
            keys.INPUT_SIZE_ANNOTATION: str(task.input_size),
        }
        if task.parents:
            annotations[keys.DEPENDS_ON_ANNOTATION] = ",".join(task.parents)
        container: dict[str, Any] = {
            "name": "task",
            "image": "busybox:1.36",
            "resources": {
                "requests": {"cpu": f"{task.cpu_millis}m", "memory": str(task.memory_bytes)},
                "limits": {"memory": str(task.memory_bytes)},
            },
        }
        if self.fake_nodes:
            annotations[devcluster.RUNTIME_ANNOTATION] = f"{task.runtime_s:g}s"
        else:
            container["command"] = ["sleep", f"{task.runtime_s:g}"]
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": task.pod_name,
                "labels": {
                    keys.RUN_ID_LABEL: self.run_id,
                    keys.WORKFLOW_LABEL: self.workflow,
                    keys.STEP_LABEL: _dns_name(task.step, 63),
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


class PodApi(Protocol):
    """The calls a replay makes."""

    def create_pod(self, namespace: str, manifest: Mapping[str, Any]) -> object:
        """Create a pod (an existing one with the same name is fine: idempotent restart)."""

    def list_pods(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        """List pods as plain dicts."""


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


class Replayer:
    """Drive a ``ReplayPlan`` against an API server by polling pod state."""

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
        self._by_name = {t.pod_name: t for t in plan.tasks}
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
            RuntimeError: a task pod failed.
        """
        start = self.clock()
        progress = ReplayProgress(total=len(self.plan.tasks))
        done: set[str] = set()
        created: set[str] = set()
        selector = f"{keys.RUN_ID_LABEL}={self.plan.run_id}"

        def create(tasks: Iterable[ReplayTask]) -> None:
            for task in tasks:
                if task.id in created or not all(p in done for p in task.parents):
                    continue
                self.api.create_pod(self.namespace, self.plan.manifest(task))
                created.add(task.id)
                progress.created = len(created)
                progress.created_times[task.pod_name] = self.clock() - start

        create(t for t in self.plan.tasks if not t.parents)
        while len(done) < len(self.plan.tasks):
            if self.clock() - start > timeout_s:
                raise TimeoutError(f"workflow not finished after {timeout_s:.0f}s")
            time.sleep(self.poll_s)
            now = self.clock() - start
            for pod in self.api.list_pods(self.namespace, selector):
                name = pod["metadata"]["name"]
                task = self._by_name.get(name)
                if task is None:
                    continue
                if pod.get("spec", {}).get("nodeName") and name not in progress.bind_times:
                    progress.bind_times[name] = now
                    if progress.first_bind_s is None:
                        progress.first_bind_s = now
                phase = pod.get("status", {}).get("phase")
                if phase == "Failed":
                    progress.failed += 1
                    raise RuntimeError(f"task pod {name} failed")
                if phase == "Succeeded" and task.id not in done:
                    done.add(task.id)
                    create(self._children.get(task.id, ()))
            progress.bound = len(progress.bind_times)
            progress.succeeded = len(done)
            if on_progress is not None:
                on_progress(progress)
        progress.makespan_s = self.clock() - start
        return progress
