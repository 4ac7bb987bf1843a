"""Starting the local control plane for a tier, and the test-side clients of it.

The integration, chart and reliability tiers each start their own ``DevCluster`` (per session,
package or module); this module is the one way they do it. Missing binaries fail the test, never
skip it, with the command that builds them (``WFSCHED_BUILD_CONTROL_PLANE=1`` builds instead).
The official ``kubernetes`` client is the tests' observer, independent of ``scheduler.kube``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from scheduler.devtools import devcluster


def start_cluster(workdir: Path, **options: Any) -> devcluster.DevCluster:
    """Start a control plane (``ClusterOptions(**options)``) in ``workdir``; the caller stops it."""
    cluster = devcluster.DevCluster(workdir, devcluster.ClusterOptions(**options))
    build = os.environ.get("WFSCHED_BUILD_CONTROL_PLANE") == "1"
    try:
        cluster.start(build_missing=build)
    except devcluster.MissingBinariesError as exc:
        pytest.fail(str(exc), pytrace=False)
    return cluster


@contextlib.contextmanager
def running_cluster(workdir: Path, **options: Any) -> Iterator[devcluster.DevCluster]:
    """:func:`start_cluster`, stopped when the block ends, whatever its outcome."""
    cluster = start_cluster(workdir, **options)
    try:
        yield cluster
    finally:
        cluster.stop()


def cluster_fixture(name: str, *, scope: Any, **options: Any) -> Any:
    """A pytest fixture ``name`` giving a :func:`running_cluster` per ``scope`` (session, ...).

    Assign it in a conftest or test module under the same name:
    ``dev_cluster = controlplane.cluster_fixture("dev_cluster", scope="session")``.
    """

    def fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[devcluster.DevCluster]:
        with running_cluster(tmp_path_factory.mktemp("cluster"), **options) as cluster:
            yield cluster

    return pytest.fixture(scope=scope, name=name)(fixture)


def api_client(cluster: devcluster.DevCluster, *, retries: int | None = None) -> client.ApiClient:
    """The official client, as the cluster's admin (``retries=0``: no urllib3 retries)."""
    configuration = client.Configuration()
    config.load_kube_config(str(cluster.kubeconfig), client_configuration=configuration)
    if retries is not None:
        configuration.retries = retries
    return client.ApiClient(configuration)


def bind_pod(core_v1: client.CoreV1Api, namespace: str, pod: str, node: str) -> int:
    """POST a Binding for ``pod`` (``pods/{name}/binding``, as the daemon does); return the
    HTTP status (raw, no model decoding)."""
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


def etcd_post(cluster: devcluster.DevCluster, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST to etcd's JSON gateway (``/v3/kv/range``, ...) behind the API server's back."""
    status, reply = cluster.etcd().request("POST", path, body)
    assert status == 200, reply
    assert isinstance(reply, dict), reply
    return reply
