"""Fixtures for tests against the real local control plane.

One control plane (etcd, kube-apiserver, KWOK, metrics-server) per test session, started from
the cached binaries that ``wfsched dev-cluster build`` produces; a fresh namespace per test;
helpers that create KWOK fake nodes and delete them again. Missing binaries fail the session
with the command that builds them (set ``WFSCHED_BUILD_CONTROL_PLANE=1`` to build instead).
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client

from scheduler.devtools import devcluster
from scheduler.kube import client as kube_client
from tests.support import controlplane

pytestmark = pytest.mark.integration

_node_batches = itertools.count()


dev_cluster = controlplane.cluster_fixture(
    "dev_cluster", scope="session", metrics_server=True, kube_scheduler=False
)


@pytest.fixture(scope="session")
def api_client(dev_cluster: devcluster.DevCluster) -> client.ApiClient:
    return controlplane.api_client(dev_cluster)


@pytest.fixture(scope="session")
def core_v1(api_client: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api_client)


@pytest.fixture(scope="module")
def kube(dev_cluster: devcluster.DevCluster) -> Iterator[kube_client.KubeClient]:
    """wfsched's own client (``scheduler.kube``), the code under test of the kube suites.

    Modules that need other limits or an identity define their own ``kube``.
    """
    kc = kube_client.KubeClient.connect(
        str(dev_cluster.kubeconfig), qps=500, burst=500, pool_size=4
    )
    yield kc
    kc.close()


@pytest.fixture
def namespace(core_v1: client.CoreV1Api) -> Iterator[str]:
    """A fresh, empty namespace for one test (its pods are deleted afterwards)."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    core_v1.create_namespace({"metadata": {"name": name}})
    yield name
    core_v1.delete_collection_namespaced_pod(name, grace_period_seconds=0)
    core_v1.delete_namespace(name)


NodeFactory = Callable[..., list[str]]


@pytest.fixture
def kwok_nodes(dev_cluster: devcluster.DevCluster) -> Iterator[NodeFactory]:
    """Create KWOK fake nodes for one test; they are deleted when the test ends.

    Call as ``kwok_nodes(count, cpu="4", memory="8Gi", labels=..., taints=...)``; node names
    are unique across the session and returned in order.
    """
    created: list[str] = []

    def make(count: int, **kwargs: Any) -> list[str]:
        prefix = kwargs.pop("prefix", f"n{next(_node_batches)}-{uuid.uuid4().hex[:4]}-")
        names = dev_cluster.create_nodes(count, prefix=prefix, **kwargs)
        created.extend(names)
        return names

    yield make
    admin = dev_cluster.admin()
    for name in created:
        admin.request("DELETE", f"/api/v1/nodes/{name}")
