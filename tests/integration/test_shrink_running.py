"""Shrink-in-place end to end: a step's running siblings are lowered once one task finished.

Real kube-apiserver, KWOK nodes that report container resources (so ``pods/resize`` is accepted
for running pods and "actuated" by the ``wfsched-pod-resources`` stage), and the fake kubelet
memory model (``scheduler.devtools.memsim``) that OOM-kills a task whose limit falls below its
usage. Three tasks of one step fill an 8 GiB node at their requests; a fourth task, of another
step, waits for room. When the short one finishes and reports its peak, the daemon lowers the
two still running to the step's plan, the node reports the smaller allocation, and the waiting
task is bound long before they finish. Nothing is OOM-killed.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from k8s_helpers import DaemonProcess, make_pod, read_pod, wait_for
from kubernetes import client

from scheduler.devtools import devcluster, memsim
from scheduler.kube import keys

pytestmark = pytest.mark.integration

MIB = 1 << 20
LONG_S = 45


def _task(name: str, step: str, memory: str, runtime_s: int, peak_mib: int) -> dict[str, Any]:
    return make_pod(
        name,
        cpu="100m",
        memory=memory,
        limits={"memory": memory},
        runtime=f"{runtime_s}s",
        labels={"wfsched.io/run-id": "r1", "wfsched.io/step": step},
        annotations={
            # the engine's report on success (as a wrapper would) ...
            keys.PEAK_MEMORY_ANNOTATION: str(peak_mib * MIB),
            # ... and what memsim makes the task use while it runs
            memsim.PEAK_MEMORY_ANNOTATION: str(peak_mib * MIB),
        },
    )


def _phase(core_v1: client.CoreV1Api, namespace: str, name: str) -> str:
    return str(read_pod(core_v1, namespace, name)["status"].get("phase"))


def test_running_siblings_shrink_and_free_the_node_for_a_waiting_task(
    core_v1: client.CoreV1Api,
    namespace: str,
    kwok_nodes: Any,
    tmp_path: Any,
    dev_cluster: devcluster.DevCluster,
) -> None:
    kwok_nodes(1, cpu="8", memory="8Gi")
    settings = {
        "namespaces": [namespace],
        "predictor": "mean-offset=none",
        "shrink_running": True,
        "lease": {"enabled": False, "namespace": namespace},
    }
    simulator = dev_cluster.memory_simulator(namespace=namespace, usage_interval_s=1.0)
    simulator.start()
    daemon = DaemonProcess(str(dev_cluster.kubeconfig), tmp_path, **settings).start()
    try:
        # 2 + 3 + 3 GiB: the node is full. The short task peaks at 300 MiB, the long ones at
        # 250 MiB, so the step's plan (the mean of what finished: 300 MiB) fits them.
        core_v1.create_namespaced_pod(namespace, _task("short", "align", "2Gi", 3, 300))
        for name in ("long-a", "long-b"):
            core_v1.create_namespaced_pod(namespace, _task(name, "align", "3Gi", LONG_S, 250))
        wait_for(
            lambda: all(_phase(core_v1, namespace, n) == "Running" for n in ("long-a", "long-b")),
            what="long tasks running",
        )
        created = time.monotonic()
        core_v1.create_namespaced_pod(namespace, _task("waiting", "sort", "3Gi", 2, 100))

        wait_for(
            lambda: read_pod(core_v1, namespace, "waiting")["spec"].get("nodeName"),
            timeout_s=LONG_S - 15,
            interval_s=0.5,
            what="the waiting task bound before the long ones finish",
        )
        assert time.monotonic() - created < LONG_S - 15
        for name in ("long-a", "long-b"):
            pod = read_pod(core_v1, namespace, name)
            resources = pod["spec"]["containers"][0]["resources"]
            assert resources["requests"]["memory"] == "300Mi", resources
            assert resources["limits"]["memory"] == "300Mi", resources
            assert pod["metadata"]["annotations"][keys.ORIGINAL_MEMORY_ANNOTATION] == str(3 << 30)
            assert pod["metadata"]["labels"][keys.CWS_MEMORY_SCALED_LABEL] == "true"
            events = json.loads(
                core_v1.list_namespaced_event(
                    namespace, field_selector=f"involvedObject.name={name}", _preload_content=False
                ).data
            )["items"]
            notes = [e["message"] for e in events if e["reason"] == "MemoryShrunk"]
            assert notes == [
                "memory lowered in place from 3072 MiB to 300 MiB: the plan for "
                "step align now that a task of it has finished"
            ], notes

        for name in ("long-a", "long-b", "waiting"):
            wait_for(
                lambda n=name: _phase(core_v1, namespace, n) in ("Succeeded", "Failed"),
                timeout_s=LONG_S + 30,
                interval_s=1,
                what=f"{name} finished",
            )
            assert _phase(core_v1, namespace, name) == "Succeeded"  # no OOM kill
        exposition = daemon.metrics()
        assert (
            devcluster.metric_sample(exposition, 'wfsched_memory_shrinks_total{result="shrunk"}')
            == 2
        )
        assert (
            devcluster.metric_sample(exposition, 'wfsched_memory_shrinks_total{result="refused"}')
            == 0
        )
    finally:
        daemon.stop()
        simulator.stop()
