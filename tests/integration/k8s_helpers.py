"""Helpers for integration tests: pod manifests, raw bindings, polling."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest
from kubernetes import client

from scheduler.devtools import devcluster
from tests.support import controlplane


def make_pod(
    name: str,
    *,
    scheduler_name: str = "workflow-scheduler",
    cpu: str = "100m",
    memory: str = "64Mi",
    limits: Mapping[str, str] | None = None,
    runtime: str | None = None,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    gates: Sequence[str] = (),
    node_name: str | None = None,
) -> dict[str, Any]:
    """Return a one-container pod manifest for tests (``runtime`` is a Go duration)."""
    notes = dict(annotations or {})
    if runtime is not None:
        notes[devcluster.RUNTIME_ANNOTATION] = runtime
    resources: dict[str, Any] = {"requests": {"cpu": cpu, "memory": memory}}
    if limits:
        resources["limits"] = dict(limits)
    spec: dict[str, Any] = {
        "schedulerName": scheduler_name,
        "restartPolicy": "Never",
        "containers": [{"name": "main", "image": "busybox", "resources": resources}],
    }
    if gates:
        spec["schedulingGates"] = [{"name": g} for g in gates]
    if node_name:
        spec["nodeName"] = node_name
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": dict(labels or {}), "annotations": notes},
        "spec": spec,
    }


bind_pod = controlplane.bind_pod
"""POST a Binding and return the HTTP status (shared with the reliability tier)."""


def read_pod(core_v1: client.CoreV1Api, namespace: str, name: str) -> dict[str, Any]:
    """Return a pod as a plain dict."""
    resp = core_v1.read_namespaced_pod(name, namespace, _preload_content=False)
    pod: dict[str, Any] = json.loads(resp.data)
    return pod


def wait_for(
    predicate: Callable[[], Any], *, timeout_s: float = 30, interval_s: float = 0.2, what: str = ""
) -> Any:
    """Poll ``predicate`` until it returns a truthy value; fail the test on timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s}s waiting for {what or predicate}")
        time.sleep(interval_s)


class PodApiAdapter:
    """``scheduler.devtools.replay.PodApi`` over the official client (test-side only)."""

    def __init__(self, core_v1: client.CoreV1Api) -> None:
        self.core_v1 = core_v1

    def create_pod(self, namespace: str, manifest: Mapping[str, Any]) -> None:
        try:
            self.core_v1.create_namespaced_pod(namespace, dict(manifest), _preload_content=False)
        except client.ApiException as exc:
            if exc.status != 409:
                raise

    def list_pods(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        resp = self.core_v1.list_namespaced_pod(
            namespace, label_selector=label_selector, _preload_content=False
        )
        items: list[dict[str, Any]] = json.loads(resp.data)["items"]
        return items


def _quantity(value: str) -> float:
    from scheduler.core import resources

    return float(resources.parse_quantity(value))


class CapacityChecker:
    """Polls pods and nodes from the API server and records every node over its allocatable.

    Counts every non-terminal bound pod, whatever scheduler bound it.
    """

    def __init__(self, core_v1: client.CoreV1Api, nodes: Sequence[str], interval_s: float = 0.2):
        import threading

        self.core_v1 = core_v1
        self.nodes = set(nodes)
        self.interval_s = interval_s
        self.violations: list[str] = []
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> CapacityChecker:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def check_once(self) -> None:
        nodes = json.loads(self.core_v1.list_node(_preload_content=False).data)["items"]
        alloc = {
            n["metadata"]["name"]: n["status"]["allocatable"]
            for n in nodes
            if n["metadata"]["name"] in self.nodes
        }
        pods = json.loads(self.core_v1.list_pod_for_all_namespaces(_preload_content=False).data)
        used: dict[str, dict[str, float]] = {}
        for pod in pods["items"]:
            node = pod["spec"].get("nodeName")
            if node not in alloc or pod["status"].get("phase") in ("Succeeded", "Failed"):
                continue
            slot = used.setdefault(node, {"cpu": 0.0, "memory": 0.0, "pods": 0.0})
            slot["pods"] += 1
            for c in pod["spec"]["containers"]:
                req = (c.get("resources") or {}).get("requests") or {}
                for res in ("cpu", "memory"):
                    if res in req:
                        slot[res] += _quantity(req[res])
        for node, slot in used.items():
            for res, amount in slot.items():
                if amount > _quantity(alloc[node][res]) + 1e-9:
                    self.violations.append(f"{node}: {res} {amount} > {alloc[node][res]}")
        self.samples += 1

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.check_once()
            except Exception as exc:  # keep sampling; a transient API error is not a finding
                print(f"capacity check failed: {exc}")
            self._stop.wait(self.interval_s)


class DaemonProcess(devcluster.LocalDaemon):
    """``wfsched run`` for a test: ``start`` returns self and fails the test on errors."""

    def __init__(self, kubeconfig: str, workdir: Any, **settings: Any) -> None:
        super().__init__(kubeconfig, workdir, **settings)

    def start(self, *, wait_ready_s: float = 30) -> DaemonProcess:  # type: ignore[override]
        try:
            super().start(wait_ready_s=wait_ready_s)
        except devcluster.DevClusterError as exc:
            pytest.fail(str(exc), pytrace=False)
        return self

    def __enter__(self) -> DaemonProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
