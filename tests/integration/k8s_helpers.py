"""Helpers for integration tests: pod manifests, raw bindings, polling."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest
from kubernetes import client

from scheduler import devcluster


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


def bind_pod(core_v1: client.CoreV1Api, namespace: str, pod: str, node: str) -> int:
    """POST a Binding for ``pod`` and return the HTTP status (raw, no model decoding)."""
    body = {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": pod},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    }
    try:
        resp = core_v1.create_namespaced_pod_binding(pod, namespace, body, _preload_content=False)
    except client.ApiException as exc:
        return int(exc.status)
    return int(resp.status)


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
