"""Fixtures for the chart tier: the Go-built helm, and a control plane for applying manifests.

Rendering tests need only helm. Tests marked ``integration`` get their own small control plane
(etcd, kube-apiserver with RBAC, KWOK; no metrics-server), started on first use and stopped when
the last chart test is done, a fresh release namespace per test, and a tracker that deletes the
cluster-scoped objects a test applied. ``service_monitor_crd`` installs the Prometheus Operator's
ServiceMonitor CRD (from the operator's Go module, fetched by build.sh) into that control plane.
Missing binaries fail (never skip) with the build command.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from scheduler.devtools import devcluster
from tests.support import controlplane

from .chart_helpers import Applier, Kube, helm_binary


@pytest.fixture(scope="session")
def helm() -> Path:
    try:
        return helm_binary()
    except devcluster.MissingBinariesError as exc:
        pytest.fail(str(exc), pytrace=False)


chart_cluster = controlplane.cluster_fixture(
    "chart_cluster", scope="package", metrics_server=False, kube_scheduler=False
)


@pytest.fixture(scope="package")
def kube(chart_cluster: devcluster.DevCluster) -> Kube:
    return Kube(chart_cluster)


SERVICE_MONITOR_CRD = "crds/monitoring.coreos.com_servicemonitors.yaml"


@pytest.fixture(scope="package")
def service_monitor_crd(kube: Kube) -> Iterator[dict[str, Any]]:
    """The upstream ServiceMonitor CRD, applied and served (``monitoring.coreos.com/v1``)."""
    try:
        found = devcluster.locate_binaries(["prometheus-operator-crds"], build_missing=False)
    except devcluster.MissingBinariesError as exc:
        pytest.fail(str(exc), pytrace=False)
    crd: dict[str, Any] = yaml.safe_load(
        (found["prometheus-operator-crds:root"] / SERVICE_MONITOR_CRD).read_text()
    )
    status, body = kube.apply(crd)
    assert status in (200, 201), f"applying the ServiceMonitor CRD: HTTP {status}: {body}"
    path = kube.object_path(crd)
    deadline = time.monotonic() + 60
    while True:  # Established first, then discovery serves the kind
        kube.forget_discovery("monitoring.coreos.com/v1")
        _, stored = kube.request("GET", path)
        reported = (stored.get("status") or {}).get("conditions") or []
        conditions = {c["type"]: c["status"] for c in reported}
        served = kube.resource("monitoring.coreos.com/v1", "ServiceMonitor") is not None
        if conditions.get("Established") == "True" and served:
            break
        assert time.monotonic() < deadline, f"the CRD was never served: {conditions}"
        time.sleep(0.2)
    try:
        yield crd
    finally:
        kube.delete(crd)
        kube.forget_discovery("monitoring.coreos.com/v1")


@pytest.fixture
def release_namespace(kube: Kube) -> Iterator[str]:
    """A fresh namespace to install the chart into; deleted afterwards."""
    name = kube.create_namespace("chart")
    yield name
    kube.request("DELETE", f"/api/v1/namespaces/{name}")


@pytest.fixture
def apply(kube: Kube) -> Iterator[Applier]:
    """Server-side apply manifests; cluster-scoped ones are deleted when the test ends."""
    created: list[Mapping[str, Any]] = []

    def do(manifest: Mapping[str, Any], *, dry_run: bool = False) -> tuple[int, Any]:
        status, body = kube.apply(manifest, dry_run=dry_run)
        res = kube.resource(manifest["apiVersion"], manifest["kind"])
        if not dry_run and status < 300 and res is not None and not res.namespaced:
            created.append(manifest)
        return status, body

    yield do
    for manifest in reversed(created):
        kube.delete(manifest)
