"""The fake kubelet memory model (``scheduler.devtools.memsim``) on the real control plane.

A pod whose memory limit is below its simulated peak is OOM-killed when its usage crosses the
limit (phase Failed, exit code 137, OOMKilled), and KWOK's finish stage does not overwrite it; a
pod whose limit covers the peak runs its whole runtime and succeeds, its usage reported through
metrics.k8s.io on the way.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from typing import Any

import pytest
from k8s_helpers import make_pod, read_pod, wait_for
from kubernetes import client, watch

from scheduler.core import resources as core_resources
from scheduler.devtools import devcluster, memsim
from scheduler.kube import client as kube_client

pytestmark = pytest.mark.integration

MiB = 2**20


@pytest.fixture
def simulator(kube: kube_client.KubeClient, namespace: str) -> Iterator[memsim.MemorySimulator]:
    sim = memsim.MemorySimulator(kube, namespace=namespace, usage_interval_s=1.0)
    sim.start()
    yield sim
    sim.stop()


def _sim_pod(name: str, node: str, *, limit: str, peak: int, runtime: str) -> dict[str, Any]:
    return make_pod(
        name,
        memory=limit,
        limits={"memory": limit},
        runtime=runtime,
        node_name=node,
        annotations={
            memsim.PEAK_MEMORY_ANNOTATION: str(peak),
            memsim.PEAK_AT_ANNOTATION: "0.5",
        },
    )


def _running_since(pod: dict[str, Any]) -> dict[str, Any] | None:
    """The pod once it runs with its start to the millisecond, else ``None``."""
    stamped = any(
        c.get("type") == memsim.STARTED_AT_CONDITION for c in pod["status"].get("conditions") or []
    )
    return pod if pod["status"].get("phase") == "Running" and stamped else None


def _started_at(pod: dict[str, Any]) -> float:
    started = memsim.container_started_at(pod)
    assert started is not None
    return started


def _stamp(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_pod_above_its_limit_is_oom_killed_when_usage_crosses_it(
    core_v1: client.CoreV1Api,
    namespace: str,
    kwok_nodes: Any,
    simulator: memsim.MemorySimulator,
) -> None:
    (node,) = kwok_nodes(1)
    peak = 512 * MiB
    core_v1.create_namespaced_pod(
        namespace, _sim_pod("hungry", node, limit="256Mi", peak=peak, runtime="20s")
    )
    running = wait_for(
        lambda: _running_since(read_pod(core_v1, namespace, "hungry")),
        timeout_s=20,
        what="Running, start stamped",
    )
    start = _started_at(running)
    profile = memsim.MemoryProfile(peak_bytes=peak, runtime_s=20.0, peak_at=0.5)
    crossing = profile.crossing_s(256 * MiB)
    assert crossing is not None and 4.0 < crossing < 6.0

    failed = wait_for(
        lambda: (
            (p := read_pod(core_v1, namespace, "hungry"))["status"].get("phase") == "Failed" and p
        ),
        timeout_s=25,
        interval_s=0.1,
        what="Failed",
    )
    seen_after = time.time() - start
    # The start is stamped to the millisecond; the kill follows the crossing within a poll.
    assert crossing - 0.2 <= seen_after <= crossing + 1.5, (seen_after, crossing)
    (status,) = failed["status"]["containerStatuses"]
    terminated = status["state"]["terminated"]
    assert terminated["exitCode"] == 137
    assert terminated["reason"] == "OOMKilled"
    assert abs(_stamp(terminated["finishedAt"]) - (start + crossing)) <= 2.0
    assert simulator.oom_kills == 1

    # KWOK does not overwrite it: long after the runtime would have ended, still OOMKilled.
    time.sleep(max(0.0, start + 21.5 - time.time()))
    later = read_pod(core_v1, namespace, "hungry")
    assert later["status"]["phase"] == "Failed"
    assert later["status"]["containerStatuses"][0]["state"]["terminated"]["reason"] == "OOMKilled"


def test_pod_whose_limit_covers_its_peak_succeeds_with_usage_reported(
    core_v1: client.CoreV1Api,
    namespace: str,
    kwok_nodes: Any,
    kube: kube_client.KubeClient,
    simulator: memsim.MemorySimulator,
) -> None:
    (node,) = kwok_nodes(1)
    peak = 300 * MiB
    core_v1.create_namespaced_pod(
        namespace, _sim_pod("fits", node, limit="300Mi", peak=peak, runtime="60s")
    )
    running = wait_for(
        lambda: _running_since(read_pod(core_v1, namespace, "fits")),
        timeout_s=20,
        what="Running, start stamped",
    )
    start = _started_at(running)

    def reported_usage() -> int:
        for item in kube.pod_metrics(namespace) or []:
            if item["metadata"]["name"] == "fits":
                return sum(
                    core_resources.integer_value(c["usage"]["memory"]) for c in item["containers"]
                )
        return 0

    # metrics-server scrapes every 10 s and shows a new pod after two scrapes, later on a loaded
    # machine; the 60 s runtime leaves it room (a finished pod has no metrics). Usage passes
    # 100 MiB about 9 s in and grows towards the peak.
    wait_for(lambda: reported_usage() > 100 * MiB, timeout_s=50, interval_s=1, what="usage")
    done = wait_for(
        lambda: (
            (p := read_pod(core_v1, namespace, "fits"))["status"].get("phase")
            in ("Succeeded", "Failed")
            and p
        ),
        timeout_s=70,
        interval_s=0.2,
        what="finished",
    )
    assert done["status"]["phase"] == "Succeeded"
    terminated = done["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 0
    # The runtime counts from the container start, although memsim patched the pod meanwhile.
    assert abs(_stamp(terminated["finishedAt"]) - (start + 60.0)) <= 1.5
    assert int(done["metadata"]["annotations"][memsim.USAGE_MEMORY_ANNOTATION]) == peak
    assert simulator.oom_kills == 0
    assert simulator.usage_patches >= 3


def test_fake_node_reports_container_resources(
    core_v1: client.CoreV1Api, namespace: str, kwok_nodes: Any
) -> None:
    """A resizable pod becomes Running with its container resources reported, as a kubelet
    does, and its start to the millisecond, all in that one write (``wfsched-pod-ready-
    resizable``): no version of the pod is Running without them."""
    (node,) = kwok_nodes(1)
    created_at = time.time()
    core_v1.create_namespaced_pod(
        namespace,
        make_pod(
            "r",
            memory="128Mi",
            limits={"memory": "256Mi"},
            runtime="5s",
            node_name=node,
            annotations={devcluster.RESIZABLE_ANNOTATION: "true"},
        ),
    )
    running: list[dict[str, Any]] = []
    stream = watch.Watch()
    for event in stream.stream(
        core_v1.list_namespaced_pod,
        namespace,
        field_selector="metadata.name=r",
        timeout_seconds=20,
    ):
        pod = event["raw_object"]
        if pod["status"].get("phase") == "Running":
            running.append(pod)
        if pod["status"].get("phase") in ("Succeeded", "Failed"):
            stream.stop()
    assert running, "the pod never ran"
    for pod in running:
        (status,) = pod["status"]["containerStatuses"]
        assert status["resources"] == {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"memory": "256Mi"},
        }
        assert status["allocatedResources"] == {"cpu": "100m", "memory": "128Mi"}
        started = memsim.container_started_at(pod)
        assert started is not None and created_at - 1 < started < time.time()
        assert any(
            c["type"] == memsim.STARTED_AT_CONDITION and int(c["message"]) == round(started * 1000)
            for c in pod["status"]["conditions"]
        )
    assert read_pod(core_v1, namespace, "r")["status"]["phase"] == "Succeeded"
