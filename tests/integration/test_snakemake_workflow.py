"""Real Snakemake (Kubernetes executor) on the local control plane, with wfsched as scheduler.

The cluster runs kube-controller-manager, so Snakemake's Jobs make pods. The chart's
MutatingAdmissionPolicy (rendered by helm, applied as is) gives those pods wfsched's
scheduler name; wfsched places them on KWOK nodes.

Fake nodes run nothing, so two test-side pieces stand in for what a real container would do,
leaving Snakemake unmodified:

* a second MutatingAdmissionPolicy annotates Snakemake's job pods with
  ``kwok.wfsched.io/runtime``, so KWOK finishes them (Succeeded) after that time;
* a watcher sees a job pod succeed, reads the job's rule and wildcards from its
  ``--target-jobs`` argument and writes that rule's output files into the shared directory that
  Snakemake uses as its storage (``--default-storage-provider fs``), where the Snakemake main
  process then finds them as if the job had uploaded them.

Snakemake and its plugins run from a virtualenv of their own (pins in pyproject's
``[tool.wfsched] snakemake-env``; they cannot share wfsched's environment).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import tomllib
import venv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from k8s_helpers import DaemonProcess, wait_for
from kubernetes import client, watch

from scheduler.devtools import devcluster
from scheduler.kube import translate
from scheduler.runtime import workflows
from tests.chart import chart_helpers
from tests.support import controlplane

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = [f"s{i:02d}" for i in range(9)]
# split (1) -> align (9) -> stats (9) -> merge (1) -> report (1): 21 jobs, fan-out and fan-in.
SNAKEFILE = """
SAMPLES = [f"s{i:02d}" for i in range(9)]

localrules: all

rule all:
    input: "report.txt"

rule split:
    output: expand("chunks/{s}.txt", s=SAMPLES)
    resources: mem_mb=256
    shell: "for f in {output}; do echo chunk > $f; done"

rule align:
    input: "chunks/{s}.txt"
    output: "aligned/{s}.txt"
    resources: mem_mb=512
    shell: "cat {input} > {output}"

rule stats:
    input: "aligned/{s}.txt"
    output: "stats/{s}.txt"
    resources: mem_mb=256
    shell: "wc -l {input} > {output}"

rule merge:
    input: expand("stats/{s}.txt", s=SAMPLES)
    output: "merged.txt"
    resources: mem_mb=256
    shell: "cat {input} > {output}"

rule report:
    input: "merged.txt"
    output: "report.txt"
    resources: mem_mb=256
    shell: "cp {input} {output}"
"""
RULE_OUTPUTS = {
    "split": lambda wc: [f"chunks/{s}.txt" for s in SAMPLES],
    "align": lambda wc: [f"aligned/{wc['s']}.txt"],
    "stats": lambda wc: [f"stats/{wc['s']}.txt"],
    "merge": lambda wc: ["merged.txt"],
    "report": lambda wc: ["report.txt"],
}
RULE_ORDER = [("split", "align"), ("align", "stats"), ("stats", "merge"), ("merge", "report")]
_TARGET = re.compile(r"--target-jobs\s+'([A-Za-z_]\w*):([^']*)'")


# --- Snakemake's own environment ---------------------------------------------------------------


def _snakemake_pins() -> list[str]:
    pins: list[str] = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["wfsched"][
        "snakemake-env"
    ]
    return pins


@pytest.fixture(scope="module")
def snakemake_exe() -> Path:
    """The ``snakemake`` command of a cached virtualenv with the pinned packages."""
    if shutil.which("rsync") is None:
        pytest.skip("the fs storage plugin of Snakemake needs rsync (apt-get install rsync)")
    pins = _snakemake_pins()
    key = hashlib.sha256(("\n".join(pins) + sys.version).encode()).hexdigest()[:12]
    cache = Path(
        os.environ.get("WFSCHED_CACHE_DIR")
        or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "wfsched"
    )
    root = cache / "snakemake" / key
    root.parent.mkdir(parents=True, exist_ok=True)
    exe = root / "bin" / "snakemake"
    with (root.parent / f".{key}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (root / ".complete").is_file():
            shutil.rmtree(root, ignore_errors=True)
            venv.create(root, with_pip=True)
            subprocess.run(
                [str(root / "bin" / "python"), "-m", "pip", "install", "--quiet", *pins],
                check=True,
                timeout=600,
            )
            (root / ".complete").write_text("\n".join(pins) + "\n")
    return exe


# --- the cluster ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[devcluster.DevCluster]:
    with controlplane.running_cluster(
        tmp_path_factory.mktemp("snakemake-cluster"),
        metrics_server=False,
        controller_manager=True,
    ) as cluster:
        cluster.create_nodes(4, cpu="4", memory="16Gi", prefix="sm-node-")
        _apply_policies(cluster)
        yield cluster


def _apply_policies(cluster: devcluster.DevCluster) -> None:
    admin = cluster.admin()
    base = "/apis/admissionregistration.k8s.io/v1"
    docs = chart_helpers.render(
        chart_helpers.helm_binary(), {"snakemake": {"mutatingPolicy": {"enabled": True}}}
    )
    chart_policy = [
        d
        for d in docs
        if d["kind"] in ("MutatingAdmissionPolicy", "MutatingAdmissionPolicyBinding")
    ]
    assert len(chart_policy) == 2, "the chart renders the Snakemake policy and its binding"
    runtime_policy = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingAdmissionPolicy",
        "metadata": {"name": "test-kwok-runtime"},
        "spec": {
            "failurePolicy": "Fail",
            "reinvocationPolicy": "Never",
            "matchConstraints": {
                "resourceRules": [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE"],
                        "resources": ["pods"],
                    }
                ]
            },
            "matchConditions": [
                {
                    "name": "snakemake-job-pod",
                    "expression": "has(object.metadata.labels) && "
                    "'batch.kubernetes.io/job-name' in object.metadata.labels && "
                    "object.metadata.labels['batch.kubernetes.io/job-name']"
                    ".startsWith('snakejob-')",
                }
            ],
            "mutations": [
                {
                    "patchType": "ApplyConfiguration",
                    "applyConfiguration": {
                        "expression": "Object{metadata: Object.metadata{annotations: "
                        '{"kwok.wfsched.io/runtime": "2s"}}}'
                    },
                }
            ],
        },
    }
    runtime_binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingAdmissionPolicyBinding",
        "metadata": {"name": "test-kwok-runtime"},
        "spec": {"policyName": "test-kwok-runtime"},
    }
    for doc in [*chart_policy, runtime_policy, runtime_binding]:
        plural = (
            "mutatingadmissionpolicies"
            if doc["kind"] == "MutatingAdmissionPolicy"
            else "mutatingadmissionpolicybindings"
        )
        admin.apply(f"{base}/{plural}", doc)

    # Policies take effect once the API server has loaded them: probe with a dry-run pod.
    probe = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "probe",
            "labels": {"batch.kubernetes.io/job-name": "snakejob-probe"},
        },
        "spec": {"containers": [{"name": "c", "image": "x"}]},
    }

    def mutated() -> bool:
        status, body = admin.request("POST", "/api/v1/namespaces/default/pods?dryRun=All", probe)
        return (
            status == 201
            and body["spec"].get("schedulerName") == "workflow-scheduler"
            and "kwok.wfsched.io/runtime" in body["metadata"].get("annotations", {})
        )

    wait_for(mutated, timeout_s=30, what="the admission policies to apply")


@pytest.fixture(scope="module")
def sm_core(sm_cluster: devcluster.DevCluster) -> client.CoreV1Api:
    return client.CoreV1Api(controlplane.api_client(sm_cluster))


@pytest.fixture
def sm_namespace(sm_core: client.CoreV1Api) -> Iterator[str]:
    name = f"sm-{os.urandom(4).hex()}"
    sm_core.create_namespace({"metadata": {"name": name}})
    yield name
    sm_core.delete_namespace(name)


# --- the stand-in for the job containers ------------------------------------------------------


class OutputWatcher:
    """Writes a job's outputs into Snakemake's storage when its pod succeeds; keeps the order
    of pod events (first sight, success) as wfsched's informer sees them."""

    def __init__(self, core_v1: client.CoreV1Api, namespace: str, store: Path) -> None:
        self.core_v1, self.namespace, self.store = core_v1, namespace, store
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.written: list[str] = []
        self._seen: set[str] = set()
        self._done: set[str] = set()
        self._stop = threading.Event()
        self._watch = watch.Watch()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        api = self.core_v1.api_client
        while not self._stop.is_set():
            with contextlib.suppress(Exception):
                for event in self._watch.stream(
                    self.core_v1.list_namespaced_pod, self.namespace, timeout_seconds=5
                ):
                    self._handle(api.sanitize_for_serialization(event["object"]))
                    if self._stop.is_set():
                        break

    def _handle(self, pod: dict[str, Any]) -> None:
        uid = pod["metadata"]["uid"]
        if uid not in self._seen:
            self._seen.add(uid)
            self.events.append(("added", pod))
        if pod.get("status", {}).get("phase") == "Succeeded" and uid not in self._done:
            self._done.add(uid)
            self._write_outputs(pod)
            self.events.append(("succeeded", pod))

    def _write_outputs(self, pod: dict[str, Any]) -> None:
        command = " ".join(pod["spec"]["containers"][0].get("args") or [])
        match = _TARGET.search(command)
        assert match, f"no --target-jobs in {pod['metadata']['name']}"
        rule, raw = match.groups()
        wildcards = dict(kv.split("=", 1) for kv in raw.split(",") if kv)
        for rel in RULE_OUTPUTS[rule](wildcards):
            path = self.store / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"{rule} {wildcards}\n")
            self.written.append(rel)

    def __enter__(self) -> OutputWatcher:
        self._thread.start()
        time.sleep(0.5)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._watch.stop()
        self._thread.join(timeout=10)


def _run_snakemake(
    exe: Path, workdir: Path, store: Path, kubeconfig: Path, namespace: str, tag: str
) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": f"{exe.parent}:/usr/bin:/bin",
        "HOME": str(workdir),
        "KUBECONFIG": str(kubeconfig),
        # Passed to the jobs through the executor's per-invocation Secret (see the module doc
        # of scheduler.kube.snakemake: it is how a job names its invocation).
        "SMK_RUN_TAG": tag,
    }
    return subprocess.run(
        [
            str(exe),
            "--executor",
            "kubernetes",
            "--kubernetes-namespace",
            namespace,
            "--kubernetes-omit-job-cleanup",
            "--jobs",
            "8",
            "--default-storage-provider",
            "fs",
            "--default-storage-prefix",
            str(store),
            "--envvars",
            "SMK_RUN_TAG",
            "--latency-wait",
            "30",
            "--seconds-between-status-checks",
            "2",
            "--forceall",
        ],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def _replay(events: list[tuple[str, dict[str, Any]]], registry: workflows.WorkflowRegistry) -> Any:
    """Feed the observed pod events through wfsched's recognition, as the daemon does."""
    seen: list[workflows.TaskLabels] = []
    for kind, pod in events:
        labels = workflows.read_task_labels(translate.pod_facts(translate.slim_pod(pod)))
        if kind == "added":
            assert registry.observe_task(labels) == []
            seen.append(labels)
        else:
            registry.record_finished(labels, success=True, runtime_s=2.0)
    return seen


def test_snakemake_workflow_runs_under_wfsched_and_its_rule_order_is_learned(
    snakemake_exe: Path,
    sm_cluster: devcluster.DevCluster,
    sm_core: client.CoreV1Api,
    sm_namespace: str,
    tmp_path: Path,
) -> None:
    workdir, store = tmp_path / "wf", tmp_path / "store"
    workdir.mkdir()
    store.mkdir()
    (workdir / "Snakefile").write_text(SNAKEFILE)
    daemon = DaemonProcess(
        str(sm_cluster.kubeconfig),
        tmp_path,
        namespaces=[sm_namespace],
        lease={"enabled": False},
    ).start()
    registry = workflows.WorkflowRegistry()
    runs = []
    try:
        with OutputWatcher(sm_core, sm_namespace, store) as watcher:
            for tag in ("first", "second"):
                start = len(watcher.events)
                result = _run_snakemake(
                    snakemake_exe, workdir, store, sm_cluster.kubeconfig, sm_namespace, tag
                )
                assert result.returncode == 0, result.stderr[-4000:]
                assert (store / "report.txt").is_file()
                runs.append(_replay(watcher.events[start:], registry))
        pods = sm_core.list_namespaced_pod(sm_namespace).items
        job_pods = [p for p in pods if p.metadata.name.startswith("snakejob-")]
        # Every job pod was routed to wfsched by the chart's policy and placed by it on a fake
        # node (no other scheduler runs on this cluster).
        assert len(job_pods) == 42
        assert all(
            p.spec.scheduler_name == "workflow-scheduler"
            and p.spec.node_name.startswith("sm-node-")
            for p in job_pods
        )
        metrics = daemon.metrics()
    finally:
        daemon.stop()

    first, second = runs
    assert len(first) == len(second) == 21
    # One run per invocation (the executor's Secret), one step per rule.
    assert len({t.run for t in first}) == 1 and len({t.run for t in second}) == 1
    assert first[0].run != second[0].run
    assert {t.engine for t in first + second} == {"snakemake"}
    steps = {t.step for t in first}
    assert steps == set(RULE_OUTPUTS)
    assert [sum(t.step == rule for t in first) for rule in RULE_OUTPUTS] == [1, 9, 9, 1, 1]
    # The same Snakefile: one workflow name, whose rule order was learned from the first run.
    assert len({t.workflow_name for t in first + second}) == 1
    learned = registry.learned_edges(first[0].workflow_name)
    assert set(RULE_ORDER) <= learned, learned
    dag = registry.dag(second[0].run)
    assert dag is not None
    ranks = [dag.rank(rule) for rule in RULE_OUTPUTS]
    assert ranks == sorted(ranks, reverse=True), ranks
    # The daemon saw two runs, not 42 singleton pods.
    assert devcluster.metric_sample(metrics, "wfsched_workflow_runs") == 2.0
