"""Grow-in-place end to end: the daemon raises a running task's memory before the OOM kill.

Real kube-apiserver, KWOK nodes that report container resources (so ``pods/resize`` is
accepted for running pods), metrics-server, and the fake kubelet memory model
(``scheduler.devtools.memsim``) that grows each task's usage and OOM-kills it at its limit.
Two tasks allocated below their peak run at once: one on a node with room is grown (three
times) and succeeds; one on a full node is not grown and is OOM-killed, as without grow-in-place.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from k8s_helpers import DaemonProcess, make_pod, read_pod, wait_for
from kubernetes import client

from scheduler.devtools import devcluster, memsim

pytestmark = pytest.mark.integration

MIB = 1 << 20
RUNTIME_S = 80
PEAK_MIB = 700
LIMIT_MIB = 400


def _task(name: str, node: str) -> dict[str, Any]:
    manifest = make_pod(
        name,
        memory=f"{LIMIT_MIB}Mi",
        limits={"memory": f"{LIMIT_MIB}Mi"},
        runtime=f"{RUNTIME_S}s",
        annotations={
            memsim.PEAK_MEMORY_ANNOTATION: str(PEAK_MIB * MIB),
            memsim.PEAK_AT_ANNOTATION: "1.0",
        },
    )
    manifest["spec"]["nodeSelector"] = {"kubernetes.io/hostname": node}
    return manifest


def _events(core_v1: client.CoreV1Api, namespace: str, pod: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = json.loads(
        core_v1.list_namespaced_event(
            namespace, field_selector=f"involvedObject.name={pod}", _preload_content=False
        ).data
    )["items"]
    return items


def _finished(core_v1: client.CoreV1Api, namespace: str, pod: str) -> dict[str, Any] | None:
    found = read_pod(core_v1, namespace, pod)
    return found if found["status"].get("phase") in ("Succeeded", "Failed") else None


def test_task_below_its_peak_is_grown_and_finishes_unless_the_node_is_full(
    core_v1: client.CoreV1Api,
    namespace: str,
    kwok_nodes: Any,
    tmp_path: Any,
    dev_cluster: devcluster.DevCluster,
) -> None:
    (roomy,) = kwok_nodes(1, memory="4Gi")
    (full,) = kwok_nodes(1, memory="1Gi")
    # Another scheduler's pod takes 600 MiB of the small node: 24 MiB stay free.
    filler = make_pod(
        "filler",
        scheduler_name="default-scheduler",
        memory="600Mi",
        runtime=f"{RUNTIME_S + 60}s",
        node_name=full,
    )
    filler["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "10m"
    core_v1.create_namespaced_pod(namespace, filler)

    # With usage growing linearly to 700 MiB over 80 s, a 400 MiB limit is crossed at about
    # 45 s; the threshold (0.5) is reached at about 21 s, which leaves time for metrics-server
    # (10 s scrapes) and the daemon's poll to see it.
    settings = {
        "namespaces": [namespace],
        "grow_in_place": True,
        "grow_threshold": 0.5,
        "grow_factor": 1.5,
        "grow_max_times": 3,
        "metrics_poll_s": 2,
        "lease": {"enabled": False, "namespace": namespace},
    }
    simulator = dev_cluster.memory_simulator(namespace=namespace, usage_interval_s=1.0)
    simulator.start()
    daemon = DaemonProcess(str(dev_cluster.kubeconfig), tmp_path, **settings).start()
    try:
        core_v1.create_namespaced_pod(namespace, _task("grows", roomy))
        core_v1.create_namespaced_pod(namespace, _task("starved", full))

        starved = wait_for(
            lambda: _finished(core_v1, namespace, "starved"),
            timeout_s=RUNTIME_S + 30,
            interval_s=1,
            what="starved task finished",
        )
        grown = wait_for(
            lambda: _finished(core_v1, namespace, "grows"),
            timeout_s=RUNTIME_S + 30,
            interval_s=1,
            what="grown task finished",
        )

        # The task on the roomy node was grown in place and succeeded.
        assert grown["status"]["phase"] == "Succeeded", grown["status"]
        resources = grown["spec"]["containers"][0]["resources"]
        assert resources["limits"]["memory"] == resources["requests"]["memory"]
        limit_mib = int(resources["limits"]["memory"].removesuffix("Mi"))
        assert limit_mib >= PEAK_MIB
        assert grown["metadata"]["generation"] >= 2
        notes = [
            e["message"]
            for e in _events(core_v1, namespace, "grows")
            if e["reason"] == "MemoryGrown"
        ]
        # With threshold 0.5 a limit L is grown while usage reaches L / 2 before the 700 MiB
        # peak: 400 -> 600 -> 900 -> 1350 MiB, the third grow being the last one allowed.
        assert len(notes) == 3, notes
        assert any("raised in place from 400 MiB to " in note for note in notes), notes

        # The task on the full node was left alone and OOM-killed: the engine's retry.
        assert starved["status"]["phase"] == "Failed"
        terminated = starved["status"]["containerStatuses"][0]["state"]["terminated"]
        assert (terminated["exitCode"], terminated["reason"]) == (137, "OOMKilled")
        assert starved["spec"]["containers"][0]["resources"]["limits"]["memory"] == "400Mi"
        reasons = [e["reason"] for e in _events(core_v1, namespace, "starved")]
        assert "MemoryNotGrown" in reasons and "MemoryGrown" not in reasons

        exposition = daemon.metrics()
        assert (
            devcluster.metric_sample(exposition, 'wfsched_memory_grows_total{result="grown"}') == 3
        )
        assert (
            devcluster.metric_sample(exposition, 'wfsched_memory_grows_total{result="no_room"}')
            >= 1
        )
        assert (
            devcluster.metric_sample(exposition, 'wfsched_memory_grows_total{result="refused"}')
            == 0
        )
        assert simulator.oom_kills == 1
    finally:
        daemon.stop()
        simulator.stop()
