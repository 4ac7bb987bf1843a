"""Builders for the REST unit tests: pods, a real SchedulerLoop with a fake API, an Api."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from scheduler import registry
from scheduler.core import podfacts
from scheduler.cws import policies as cws_policies
from scheduler.cws import state as state_mod
from scheduler.kube import translate
from scheduler.rest import api as api_mod
from scheduler.rest import bridge as bridge_mod
from scheduler.runtime import loop as loop_mod
from scheduler.runtime import metrics, workflows
from scheduler.runtime.settings import Settings

NS = "ns"


def pod(
    name: str,
    *,
    execution: str | None = "run1",
    cpu: str = "1",
    memory: str = "1Gi",
    phase: str = "Pending",
    node_name: str | None = None,
    ns: str = NS,
) -> dict[str, Any]:
    scheduler = "workflow-scheduler" if execution is None else f"workflow-scheduler-{execution}"
    spec: dict[str, Any] = {
        "schedulerName": scheduler,
        "containers": [{"name": "c", "resources": {"requests": {"cpu": cpu, "memory": memory}}}],
    }
    if node_name:
        spec["nodeName"] = node_name
    return {
        "metadata": {
            "name": name,
            "namespace": ns,
            "uid": f"uid-{name}",
            "labels": {},
            "annotations": {},
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "spec": spec,
        "status": {"phase": phase},
    }


def node(name: str, cpu: str = "4", memory: str = "8Gi") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {}},
        "spec": {},
        "status": {
            "allocatable": {"cpu": cpu, "memory": memory, "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def facts(name: str, **kwargs: Any) -> podfacts.PodFacts:
    return translate.pod_facts(pod(name, **kwargs))


def labels_of(f: podfacts.PodFacts) -> workflows.TaskLabels:
    return workflows.read_task_labels(f, execution_prefix="workflow-scheduler-")


def make_state(**kwargs: Any) -> state_mod.CwsState:
    kwargs.setdefault("workflows_registry", workflows.WorkflowRegistry())
    return state_mod.CwsState(**kwargs)


class FakeKube:
    def __init__(self) -> None:
        self.binds: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def bind(self, namespace: str, name: str, uid: str, node: str) -> None:
        with self.lock:
            self.binds.append((name, node))

    def set_pod_condition(self, namespace: str, name: str, condition: dict[str, Any]) -> None:
        pass

    def create_event(self, **kwargs: Any) -> None:
        pass

    def get_configmap(self, namespace: str, name: str) -> dict[str, Any] | None:
        return None

    def resize_pod(self, namespace: str, name: str, containers: list[dict[str, Any]]) -> Any:
        return None

    def patch_pod_metadata(self, namespace: str, name: str, **kwargs: Any) -> None:
        pass

    def put_configmap(self, *args: Any, **kwargs: Any) -> None:
        pass


class Harness:
    """A running SchedulerLoop (own thread) with the CWS hook, policies and an Api."""

    def __init__(self, *, token: str | None = None, **settings: Any) -> None:
        settings.setdefault("bind_workers", 2)
        settings.setdefault("namespaces", (NS,))
        settings.setdefault("cycle_interval_s", 0.2)
        self.settings = Settings(**settings)
        self.kube = FakeKube()
        self.loop = loop_mod.SchedulerLoop(
            settings=self.settings,
            kube=self.kube,
            policies=registry.parse_strategy(self.settings.policy).build(),
            metrics=metrics.Metrics(),
        )
        self.state = state_mod.CwsState(
            workflows_registry=self.loop.registry,
            default_predictor=self.settings.predictor,
            batch_timeout_s=self.settings.batch_timeout_s,
            registration_grace_s=self.settings.registration_grace_s,
            namespaces=self.settings.namespaces,
            adopt_unregistered=self.settings.adopt_unregistered_executions,
            idle_expiry_s=self.settings.cws_execution_idle_s,
        )
        self.bridge = bridge_mod.CwsBridge(
            self.state,
            submit=self.loop.submit_command,
            clock=self.loop.clock,
            timeout_s=5.0,
            tick_s=0.1,
        )
        self.loop.task_hooks.append(self.bridge)
        self.loop.policies = cws_policies.wrap(self.loop.policies, self.state, plan_memory=False)
        self.leading = True
        self.api = api_mod.Api(
            bridge=self.bridge,
            max_body_bytes=self.settings.rest_max_body_bytes,
            max_task_body_bytes=self.settings.rest_max_task_body_bytes,
            max_items=self.settings.rest_max_items,
            token=token,
            may_write=lambda: self.leading,
            leader=lambda: "other-replica",
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self.loop.run, args=(self._stop,), daemon=True)

    def start(self) -> Harness:
        self._thread.start()
        self.bridge.start()
        return self

    def stop(self) -> None:
        self.bridge.stop()
        self._stop.set()
        self._thread.join(timeout=10)

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        reply = self.api.handle(method, path, headers or {}, data)
        if reply.content_type.startswith("application/json"):
            return reply.status, json.loads(reply.body)
        return reply.status, reply.body.decode()

    def pod_event(self, event: str, obj: dict[str, Any]) -> None:
        self.loop.events.put((loop_mod.POD_EVENTS, event, obj))

    def wait(self, predicate: Any, timeout: float = 5.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.02)
        raise AssertionError("condition not reached")

    def sync(self) -> None:
        """Wait until the loop processed everything queued so far."""
        self.bridge.call(lambda loop: None)
