"""Fixtures for the chart tier: the Go-built helm, and a control plane for applying manifests.

Rendering tests need only helm. Tests marked ``integration`` get their own small control plane
(etcd, kube-apiserver with RBAC, KWOK; no metrics-server), started on first use and stopped when
the last chart test is done, a fresh release namespace per test, and a tracker that deletes the
cluster-scoped objects a test applied. Missing binaries fail (never skip) with the build command.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from scheduler import devcluster

from .chart_helpers import Applier, Kube, helm_binary


@pytest.fixture(scope="session")
def helm() -> Path:
    try:
        return helm_binary()
    except devcluster.MissingBinariesError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="package")
def chart_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[devcluster.DevCluster]:
    cluster = devcluster.DevCluster(
        tmp_path_factory.mktemp("chart-cluster"),
        devcluster.ClusterOptions(metrics_server=False, kube_scheduler=False),
    )
    try:
        cluster.start(build_missing=False)
    except devcluster.MissingBinariesError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="package")
def kube(chart_cluster: devcluster.DevCluster) -> Kube:
    return Kube(chart_cluster)


@pytest.fixture
def release_namespace(kube: Kube) -> Iterator[str]:
    """A fresh namespace to install the chart into; deleted afterwards."""
    name = f"chart-{uuid.uuid4().hex[:8]}"
    status, body = kube.request(
        "POST",
        "/api/v1/namespaces",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
    )
    assert status == 201, body
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
