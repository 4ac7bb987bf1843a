"""nf-cws's request sequence against two replicas with leader election, one killed mid-run.

Two ``wfsched run`` processes share a Lease, each as the pod its ``$POD_NAME`` names (placeholder
pods: no kubelet runs them). A Service selects the release's labels plus ``wfsched.io/leader``,
as the chart's REST Service does. There is no kube-proxy on the local control plane, so the test
routes each request itself: to the pod(s) the Service's selector matches at that moment, as
kube-proxy would (a pod whose process is gone refuses the connection; a client retries).

The run (sarek's DAG and tasks, strategy rank_min) goes: register, DAG, a first batch bound in
rank order, metrics, a second batch registered and its pods created, then SIGKILL of the leader
before ``endBatch``. The new leader must take the label, restore the execution, hold the second
batch until ``endBatch``, bind it in rank order, accept the remaining metrics (and recognise the
ones sent before as duplicates), know the finished tasks, and delete the execution at the end.
No request may ever reach a follower (503).
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from k8s_helpers import DaemonProcess, make_pod, wait_for
from test_daemon import BindRecorder
from test_rest_nfcws import (
    Client,
    expected_ranks,
    load_dag,
    metrics_of,
    pick_tasks,
    task_config,
    task_pod,
    wait_succeeded,
)

from scheduler.devtools import devcluster

pytestmark = pytest.mark.integration

EXECUTION = "sarek-failover"
LEASE = "wfsched-rest"
APP = {"app.kubernetes.io/name": "wfsched", "app.kubernetes.io/instance": "failover"}
LEASE_TIMING = {"duration_s": 4, "renew_deadline_s": 3, "retry_period_s": 1}


class ServiceRouter:
    """Routes a request to a pod the Service's selector matches now (kube-proxy's job)."""

    def __init__(self, core_v1: Any, namespace: str, service: str, ports: dict[str, int]) -> None:
        self.core_v1 = core_v1
        self.namespace = namespace
        self.service = service
        self.ports = ports
        self.served: list[tuple[str, str, str, int]] = []

    def endpoints(self) -> list[str]:
        svc = self.core_v1.read_namespaced_service(self.service, self.namespace)
        selector = ",".join(f"{k}={v}" for k, v in sorted(svc.spec.selector.items()))
        pods = self.core_v1.list_namespaced_pod(self.namespace, label_selector=selector)
        return sorted(p.metadata.name for p in pods.items)

    def __call__(
        self, method: str, path: str, body: Any = None, raw: bytes | None = None
    ) -> tuple[int, Any]:
        deadline = time.monotonic() + 60
        while True:
            for pod in self.endpoints():
                try:
                    status, reply = Client(self.ports[pod])(method, path, body, raw)
                except OSError:  # the pod's process is gone: the connection is refused
                    continue
                self.served.append((pod, method, path, status))
                return status, reply
            if time.monotonic() > deadline:
                pytest.fail(f"no endpoint of the Service answered {method} {path} for 60 s")
            time.sleep(0.2)


def stored_task_ids(core_v1: Any, namespace: str) -> set[int]:
    """Task ids in the newest stored document of the execution.

    Writes alternate between two slots (``a`` and ``b``), so the older slot may hold a stale
    document: the newest generation's part 0 counts (small documents fit in that one part).
    """
    found = core_v1.list_namespaced_config_map(
        namespace, label_selector=f"wfsched.io/cws-state={LEASE}"
    )
    newest: tuple[int, set[int]] = (-1, set())
    for cm in found.items:
        notes = cm.metadata.annotations or {}
        if notes.get("wfsched.io/cws-execution") != EXECUTION:
            continue
        index, count, generation = str(notes.get("wfsched.io/cws-part", "")).split("/")
        if (index, count) != ("0", "1") or int(generation) <= newest[0]:
            continue
        raw = base64.b64decode((cm.binary_data or {})["execution.json.gz"])
        tasks = {row[0] for row in json.loads(gzip.decompress(raw))["tasks"]}
        newest = (int(generation), tasks)
    return newest[1]


@contextlib.contextmanager
def two_replicas(
    dev_cluster: Any, core_v1: Any, namespace: str, tmp_path: Any, **settings: Any
) -> Iterator[tuple[dict[str, DaemonProcess], ServiceRouter]]:
    """Two ``wfsched run`` replicas sharing a Lease, as the placeholder pods wfsched-0 and -1
    behind a Service like the chart's REST Service; yields them and a router once one leads.
    Both are stopped on exit."""
    for name in ("wfsched-0", "wfsched-1"):  # the replicas' pods; nothing runs them
        core_v1.create_namespaced_pod(
            namespace, make_pod(name, scheduler_name="not-scheduled", labels=APP)
        )
    core_v1.create_namespaced_service(
        namespace,
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "wfsched"},
            "spec": {
                "selector": {**APP, "wfsched.io/leader": LEASE},
                "ports": [{"name": "http", "port": 8080, "targetPort": 8080}],
            },
        },
    )
    replicas: dict[str, DaemonProcess] = {}
    ports = {name: devcluster.free_port() for name in ("wfsched-0", "wfsched-1")}
    try:
        for name, port in ports.items():
            replica = DaemonProcess(
                str(dev_cluster.kubeconfig),
                tmp_path,
                namespaces=[namespace],
                lease={"enabled": True, "name": LEASE, "namespace": namespace, **LEASE_TIMING},
                rest_port=port,
                **settings,
            )
            replica.env = {
                **devcluster.daemon_environment(),
                "POD_NAME": name,
                "POD_NAMESPACE": namespace,
            }
            replicas[name] = replica.start()
        api = ServiceRouter(core_v1, namespace, "wfsched", ports)
        wait_for(lambda: len(api.endpoints()) == 1, timeout_s=30, what="a labelled leader")
        yield replicas, api
    finally:
        for replica in replicas.values():
            replica.stop()


@pytest.mark.timeout(600)
def test_nf_cws_run_continues_across_a_leader_failover(
    dev_cluster, core_v1, namespace, kwok_nodes, tmp_path
) -> None:
    kwok_nodes(1, cpu="1", memory="64Gi")  # one CPU: one task at a time, order is visible
    vertices, edges = load_dag()
    ranks = expected_ranks(vertices, edges)
    tasks = pick_tasks(ranks)
    first, second = tasks[:6], tasks[6:]

    with two_replicas(
        dev_cluster,
        core_v1,
        namespace,
        tmp_path,
        policy="fifo-roundrobin",
        batch_timeout_s=120,
        registration_grace_s=60,
        cws_state_save_interval_s=0.5,
    ) as (replicas, api):
        leader = api.endpoints()[0]
        e = f"/v1//scheduler/{EXECUTION}"

        config = {"strategy": "rank_min-roundrobin", "namespace": namespace, "dns": "x"}
        config["memoryPredictor"] = "mean-offset=none"
        assert api("POST", e, config)[0] == 200
        assert api("POST", e + "/DAG/vertices", vertices) == (200, {"added": len(vertices)})
        assert api("POST", e + "/DAG/edges", edges)[0] == 200

        def order(rows: list[dict[str, str]]) -> list[str]:
            return [
                r["native_id"]
                for r in sorted(rows, key=lambda r: (-ranks[r["process"]], int(r["rchar"])))
            ]

        def submit(rows: list[dict[str, str]]) -> None:
            """Register each task and create its pod, as nf-cws does within a batch."""
            for row in rows:
                assert api("POST", f"{e}/task/{row['task_id']}", task_config(row))[0] == 200
                core_v1.create_namespaced_pod(namespace, task_pod(row, EXECUTION))

        with BindRecorder(core_v1, namespace) as recorder:
            assert api("PUT", e + "/startBatch")[0] == 200
            submit(first)
            assert api("PUT", e + "/endBatch", raw=b"6")[0] == 200
            wait_for(lambda: len(recorder.order) == 6, timeout_s=120, what="first batch bound")
            assert recorder.order == order(first)
            for row in first[:3]:
                wait_succeeded(core_v1, namespace, row)
                assert api("POST", f"{e}/metrics/task/{row['task_id']}", metrics_of(row)) == (
                    200,
                    {"observed": True},
                )

            assert api("PUT", e + "/startBatch")[0] == 200
            submit(second)
            every_id = {int(r["task_id"]) for r in tasks}
            wait_for(
                lambda: stored_task_ids(core_v1, namespace) == every_id,
                timeout_s=30,  # one save interval normally
                what="the second batch's registrations stored by the leader",
            )
            killed_at = time.monotonic()
            replicas[leader].kill()  # SIGKILL: no chance to remove its label
            wait_for(lambda: len(recorder.order) == 6, timeout_s=1, what="nothing bound meanwhile")

            assert api("PUT", e + "/endBatch", raw=b"6")[0] == 200
            failover_s = time.monotonic() - killed_at
            new_leader = api.served[-1][0]
            assert new_leader != leader
            wait_for(lambda: len(recorder.order) == 12, timeout_s=120, what="second batch bound")
            # Held until endBatch, then bound in the restored strategy's order.
            assert recorder.order[6:] == order(second)
        assert api.endpoints() == [new_leader]  # the killed leader's label was removed

        for row in tasks:
            wait_succeeded(core_v1, namespace, row)
        for row in first[:3]:  # sent to the old leader: the new one knows them
            reply = api("POST", f"{e}/metrics/task/{row['task_id']}", metrics_of(row))
            assert reply == (200, {"observed": False, "duplicate": True})
        for row in first[3:] + second:
            reply = api("POST", f"{e}/metrics/task/{row['task_id']}", metrics_of(row))
            assert reply == (200, {"observed": True})
        wait_for(
            lambda: api("GET", f"{e}/task/{first[0]['task_id']}")[1]["state"] == "FINISHED",
            what="a task finished under the old leader is FINISHED",
        )
        info = api("GET", e)[1]
        assert info["ranks"] == ranks and info["strategy"] == "rank_min-roundrobin"
        assert sum(info["tasks"].values()) == 12
        assert sum(info["observations"].values()) == 12
        assert api("POST", f"/v1/file/{EXECUTION}/publish", {})[0] == 200
        assert api("DELETE", e)[0] == 200
        wait_for(lambda: not stored_task_ids(core_v1, namespace), what="stored state removed")

        statuses = {status for _pod, _m, _p, status in api.served}
        assert statuses == {200}, [s for s in api.served if s[3] != 200]
        served_by = [pod for pod, *_ in api.served]
        switch = served_by.index(new_leader)
        assert set(served_by[:switch]) == {leader} and set(served_by[switch:]) == {new_leader}
        print(f"failover: first request answered by the new leader {failover_s:.1f}s after kill")
        assert failover_s < LEASE_TIMING["duration_s"] + 20, failover_s


@pytest.mark.timeout(300)
def test_a_leader_stopped_gracefully_hands_over_its_last_changes(
    dev_cluster, core_v1, namespace, tmp_path
) -> None:
    """SIGTERM right after a task registration: stored on the way out, not after 30 s."""
    with two_replicas(
        dev_cluster,
        core_v1,
        namespace,
        tmp_path,
        cws_state_save_interval_s=30,  # only the final save on the way out can store it
    ) as (replicas, api):
        leader = api.endpoints()[0]
        e = f"/v1/scheduler/{EXECUTION}"
        assert api("POST", e, {"strategy": "fifo", "namespace": namespace})[0] == 200
        task = {"task": "ALIGN", "runName": "nf-align-1", "inputSize": 7}
        assert api("POST", f"{e}/task/1", task)[0] == 200
        assert replicas[leader].stop() == 0  # SIGTERM: label, lease and state handed over
        assert api("GET", f"{e}/task/1") == (200, {"state": "RECEIVED_CONFIG", "error": None})
        assert api.served[-1][0] != leader
        assert api("DELETE", e)[0] == 200
