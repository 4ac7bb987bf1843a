"""Memory scaling end to end: observations in, resize before bind, refusals, restarts."""

from __future__ import annotations

import json
import time

import pytest
from k8s_helpers import DaemonProcess, make_pod, read_pod, wait_for
from kubernetes import client

pytestmark = pytest.mark.integration

GIB = 1 << 30
MIB = 1 << 20


def _task(name: str, *, peak_mib: int | None = None, **extra_labels: str) -> dict:
    annotations = {"wfsched.io/input-size": "1000"}
    if peak_mib is not None:
        annotations["wfsched.io/peak-memory-bytes"] = str(peak_mib * MIB)
    attempt = extra_labels.pop("attempt", None)
    if attempt:
        annotations["wfsched.io/attempt"] = attempt
    return make_pod(
        name,
        cpu="100m",
        memory="1Gi",
        limits={"memory": "1Gi"},
        runtime="1s",
        labels={"wfsched.io/run-id": "r1", "wfsched.io/step": "align", **extra_labels},
        annotations=annotations,
    )


def _succeeded(core_v1: client.CoreV1Api, namespace: str, name: str) -> bool:
    return read_pod(core_v1, namespace, name)["status"]["phase"] == "Succeeded"


def _deny_resize_policy(api_client: client.ApiClient, name: str) -> None:
    admission = client.AdmissionregistrationV1Api(api_client)
    admission.create_validating_admission_policy(
        {
            "metadata": {"name": name},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {
                    "resourceRules": [
                        {
                            "apiGroups": [""],
                            "apiVersions": ["v1"],
                            "operations": ["UPDATE"],
                            "resources": ["pods/resize"],
                        }
                    ]
                },
                "validations": [
                    {
                        "expression": "!(has(object.metadata.labels) && "
                        "'deny-resize' in object.metadata.labels)",
                        "message": "resizing is not allowed for this pod",
                    }
                ],
            },
        }
    )
    admission.create_validating_admission_policy_binding(
        {"metadata": {"name": name}, "spec": {"policyName": name, "validationActions": ["Deny"]}}
    )


def test_next_task_of_a_step_is_resized_before_binding(
    api_client, core_v1, namespace, kwok_nodes, tmp_path, dev_cluster
) -> None:
    kwok_nodes(1, cpu="4", memory="16Gi")
    policy = f"deny-resize-{namespace}"
    _deny_resize_policy(api_client, policy)
    settings = {
        "namespaces": [namespace],
        "predictor": "mean-offset=none",
        "memory_save_interval_s": 1,
        "lease": {"enabled": False, "namespace": namespace},
    }
    daemon = DaemonProcess(str(dev_cluster.kubeconfig), tmp_path, **settings).start()
    try:
        # Cold start: the first tasks keep the user's request.
        for name, peak in (("t1", 200), ("t2", 300)):
            core_v1.create_namespaced_pod(namespace, _task(name, peak_mib=peak))
        for name in ("t1", "t2"):
            wait_for(lambda n=name: _succeeded(core_v1, namespace, n), what=f"{name} done")
            spec = read_pod(core_v1, namespace, name)["spec"]["containers"][0]["resources"]
            assert spec["limits"]["memory"] == "1Gi"
        time.sleep(0.5)
        # The mean of 200 and 300 MiB is 250 MiB: request and limit both, before binding.
        core_v1.create_namespaced_pod(namespace, _task("t3"))
        wait_for(lambda: _succeeded(core_v1, namespace, "t3"), what="t3 done")
        pod = read_pod(core_v1, namespace, "t3")
        resources = pod["spec"]["containers"][0]["resources"]
        assert resources["requests"]["memory"] == "250Mi"
        assert resources["limits"]["memory"] == "250Mi"
        assert pod["metadata"]["labels"]["commonworkflowscheduler/memoryscaled"] == "true"
        assert pod["metadata"]["annotations"]["wfsched.io/original-memory"] == str(GIB)

        # A retry is never shrunk.
        core_v1.create_namespaced_pod(namespace, _task("t3-retry", attempt="2"))
        wait_for(lambda: _succeeded(core_v1, namespace, "t3-retry"), what="retry done")
        retry = read_pod(core_v1, namespace, "t3-retry")
        assert retry["spec"]["containers"][0]["resources"]["limits"]["memory"] == "1Gi"
        assert "commonworkflowscheduler/memoryscaled" not in retry["metadata"]["labels"]

        # A resize the API server refuses: the pod is bound with its original request.
        core_v1.create_namespaced_pod(namespace, _task("t4", **{"deny-resize": "true"}))
        wait_for(lambda: _succeeded(core_v1, namespace, "t4"), what="t4 done")
        refused = read_pod(core_v1, namespace, "t4")
        assert refused["spec"]["containers"][0]["resources"]["limits"]["memory"] == "1Gi"
        assert "commonworkflowscheduler/memoryscaled" not in refused["metadata"]["labels"]
        metrics = daemon.metrics()
        assert 'wfsched_resize_requests_total{result="refused"} 1.0' in metrics
        assert 'wfsched_resize_requests_total{result="applied"} 1.0' in metrics
        events = json.loads(
            core_v1.list_namespaced_event(
                namespace, field_selector="involvedObject.name=t4", _preload_content=False
            ).data
        )["items"]
        assert any(e["reason"] == "ResizeRefused" for e in events)

        # Observations survive a restart: they are kept in a ConfigMap.
        def stored() -> bool:
            try:
                cm = core_v1.read_namespaced_config_map("wfsched-memory", namespace)
            except client.ApiException:
                return False
            return "observations.json" in (cm.data or {})

        wait_for(stored, timeout_s=15, what="observations stored")
    finally:
        daemon.stop()
        admission = client.AdmissionregistrationV1Api(api_client)
        admission.delete_validating_admission_policy_binding(policy)
        admission.delete_validating_admission_policy(policy)

    restarted = DaemonProcess(str(dev_cluster.kubeconfig), tmp_path, **settings).start()
    try:
        core_v1.create_namespaced_pod(namespace, _task("t5"))
        wait_for(lambda: _succeeded(core_v1, namespace, "t5"), what="t5 done")
        resources = read_pod(core_v1, namespace, "t5")["spec"]["containers"][0]["resources"]
        # t1..t4 were observed (t3 and t4 without a peak annotation contribute nothing).
        assert resources["limits"]["memory"] == "250Mi"
    finally:
        restarted.stop()


def _tool_task(name: str, workflow: str, step: str, image: str, *, peak_mib: int | None) -> dict:
    annotations = {"wfsched.io/input-size": "1000", "wfsched.io/tool": "SAMTOOLS_SORT"}
    if peak_mib is not None:
        annotations["wfsched.io/peak-memory-bytes"] = str(peak_mib * MIB)
    pod = make_pod(
        name,
        cpu="100m",
        memory="4Gi",
        limits={"memory": "4Gi"},
        runtime="1s",
        labels={
            "wfsched.io/run-id": f"{workflow}-1",
            "wfsched.io/workflow": workflow,
            "wfsched.io/step": step,
        },
        annotations=annotations,
    )
    pod["spec"]["containers"][0]["image"] = image
    return pod


def test_a_new_workflow_plans_its_first_task_from_the_same_tool_elsewhere(
    core_v1, namespace, kwok_nodes, tmp_path, dev_cluster
) -> None:
    from scheduler import registry
    from scheduler.runtime import memory

    kwok_nodes(1, cpu="4", memory="16Gi")
    settings = {
        "namespaces": [namespace],
        "predictor": "steady",
        "memory_save_interval_s": 1,
        "lease": {"enabled": False, "namespace": namespace},
    }
    samtools = "quay.io/biocontainers/samtools"
    daemon = DaemonProcess(str(dev_cluster.kubeconfig), tmp_path, **settings).start()
    try:
        for name, peak in (("sarek-a", 200), ("sarek-b", 220)):
            pod = _tool_task(name, "sarek", "sarek-sort", f"{samtools}:1.17", peak_mib=peak)
            core_v1.create_namespaced_pod(namespace, pod)
            wait_for(lambda n=name: _succeeded(core_v1, namespace, n), what=f"{name} done")
        time.sleep(0.5)
        # Another pipeline, same tool (name and image, other tag): planned on its first task.
        first = _tool_task("rnaseq-a", "rnaseq", "rnaseq-sort", f"{samtools}:1.18", peak_mib=None)
        core_v1.create_namespaced_pod(namespace, first)
        # Same pipeline shape, other image: no prior, the request stays.
        other = _tool_task("other-a", "other", "other-sort", "quay.io/x/bwa:1", peak_mib=None)
        core_v1.create_namespaced_pod(namespace, other)
        for name in ("rnaseq-a", "other-a"):
            wait_for(lambda n=name: _succeeded(core_v1, namespace, n), what=f"{name} done")
        planned = read_pod(core_v1, namespace, "rnaseq-a")
        limits = planned["spec"]["containers"][0]["resources"]["limits"]
        kept = read_pod(core_v1, namespace, "other-a")["spec"]["containers"][0]["resources"]

        # The plan a model holding the same two peaks computes offline.
        expected = memory.MemoryModel(registry.parse_predictor("steady"))
        sarek = ("sarek", "sarek-sort")
        expected.set_image(sarek, f"{samtools}:1.17", "SAMTOOLS_SORT")
        for peak in (200, 220):
            expected.observe(sarek, 1000, peak * MIB)
        expected.set_image(("rnaseq", "rnaseq-sort"), f"{samtools}:1.18", "SAMTOOLS_SORT")
        prediction = expected.predict(("rnaseq", "rnaseq-sort"), 1000)
        assert prediction is not None
        want = expected.policy.allocate(prediction, request_bytes=4 * GIB)
        assert want < 4 * GIB
        assert limits["memory"] == f"{want // MIB}Mi"
        assert planned["metadata"]["labels"]["commonworkflowscheduler/memoryscaled"] == "true"
        assert kept["limits"]["memory"] == "4Gi"

        # The store carries the tool key and the seed a new leader needs, and beside them the
        # workflow history keeps the step runtimes.
        def stored(key: str) -> dict:
            try:
                cm = core_v1.read_namespaced_config_map("wfsched-memory", namespace)
            except client.ApiException:
                return {}
            return json.loads((cm.data or {}).get(key, "{}"))

        def stored_steps() -> dict:
            doc = stored("observations.json")
            return {(s["workflow"], s["step"]): s for s in doc.get("steps", [])}

        def history() -> dict:
            return {w["workflow"]: w for w in stored("history.json").get("workflows", [])}

        wait_for(
            lambda: ("rnaseq", "rnaseq-sort") in stored_steps() and "sarek" in history(),
            timeout_s=15,
            what="stored",
        )
        steps = stored_steps()
        assert steps[("rnaseq", "rnaseq-sort")]["tool"] == ["SAMTOOLS_SORT", samtools]
        assert steps[("rnaseq", "rnaseq-sort")]["priors"][0]["source"] == "tool"
        assert "runtimes" not in steps[sarek]
        assert len(history()["sarek"]["runtimes"]["sarek-sort"]) == 2
    finally:
        daemon.stop()
