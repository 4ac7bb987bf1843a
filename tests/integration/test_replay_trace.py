"""A bare Nextflow trace replayed on the real control plane under wfsched, with nf-core's retry.

Task B's preset (1 GiB) is below its recorded peak (1.5 GiB): its first pod must be OOM-killed
by the fake kubelet memory model (exit 137, reason OOMKilled, phase Failed) part-way through
its runtime, and a second attempt with
twice the request must succeed before C, which needs both A and B, is created. Peaks of finished
tasks reach wfsched's memory model through the ``wfsched.io/peak-memory-bytes`` annotation.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
from pathlib import Path

from k8s_helpers import DaemonProcess, read_pod

from scheduler.devtools import nftrace, replay
from scheduler.kube import keys

GIB = 2**30
SCHED = "workflow-scheduler"
TRACE = """\
task_id;process;name;status;cpus;memory;attempt;submit;start;complete;realtime;peak_rss;rchar
1;WF:A;WF:A (1);COMPLETED;1;1073741824;1;0;0;20000;20000;536870912;1000
2;WF:B;WF:B (1);COMPLETED;1;1073741824;1;21000;21000;61000;40000;1610612736;2000
3;WF:A;WF:A (2);COMPLETED;1;1073741824;1;21000;21000;41000;20000;536870912;1500
4;WF:C;WF:C (1);COMPLETED;1;1073741824;1;62000;62000;82000;20000;268435456;100
"""


def _observations(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    match = re.search(r"^wfsched_memory_observations (\S+)$", text, re.MULTILINE)
    assert match is not None, "the daemon exports no wfsched_memory_observations"
    return float(match.group(1))


def test_bare_trace_replays_with_an_oom_kill_and_a_retry(
    tmp_path: Path, dev_cluster, kube, core_v1, namespace, kwok_nodes
) -> None:
    kwok_nodes(1, cpu="4", memory="8Gi")
    path = tmp_path / "trace.csv"
    path.write_text(TRACE)
    workflow = nftrace.load_trace(path)
    assert workflow.dependency_source == "trace"
    plan = replay.ReplayPlan.from_trace(
        workflow,
        scheduler_name=SCHED,
        # B runs 12 s: memsim's kill (about 4 s in) stays far from KWOK's finish even when a
        # loaded machine delays the kill by seconds.
        time_scale=0.3,
        max_memory_bytes=8 * GIB,
        workflow_name=f"trace-{namespace}",
    )
    with DaemonProcess(
        str(dev_cluster.kubeconfig),
        tmp_path,
        policy="fifo-roundrobin",
        predictor="ponder",
        namespaces=[namespace],
        lease={"enabled": False},
        memory_store_configmap=f"wfsched-memory-{namespace}",
    ) as proc:
        with replay.memory_simulator(kube, namespace):
            progress = replay.Replayer(plan, kube, namespace=namespace).run(timeout_s=120)
        observed = _observations(proc.port)

    assert progress.succeeded == 4 and progress.failed == 1
    by_pod = {a.pod_name: a for a in progress.attempts}
    b = next(t for t in plan.tasks if t.step == "WF:B")
    first = read_pod(core_v1, namespace, plan.pod_name(b, 1))
    terminated = first["status"]["containerStatuses"][0]["state"]["terminated"]
    assert first["status"]["phase"] == "Failed"
    assert (terminated["exitCode"], terminated["reason"]) == (137, "OOMKilled")
    killed = by_pod[plan.pod_name(b, 1)]
    assert killed.outcome == "oom" and killed.finished_s is not None and killed.bound_s is not None
    # memsim: usage reaches the 1.5 GiB peak at half the 12 s runtime and crosses the 1 GiB
    # limit after about 4 s, well before the task would have finished.
    assert killed.finished_s - killed.bound_s < 12.0
    second = read_pod(core_v1, namespace, plan.pod_name(b, 2))
    assert second["status"]["phase"] == "Succeeded"
    assert second["metadata"]["annotations"][keys.ATTEMPT_ANNOTATION] == "2"
    requests = second["spec"]["containers"][0]["resources"]["requests"]
    assert int(requests["memory"]) >= 1610612736  # never planned below the peak it failed at
    c = by_pod[plan.tasks[-1].pod_name]
    assert c.created_s >= by_pod[plan.pod_name(b, 2)].finished_s  # C waited for B's retry
    assert observed >= 3


def test_replay_command_runs_a_trace_and_writes_its_report(
    tmp_path: Path, dev_cluster, core_v1, namespace, kwok_nodes, capsys
) -> None:
    from scheduler import cli

    nodes = kwok_nodes(1, cpu="4", memory="8Gi")
    path = tmp_path / "trace-9.csv"
    path.write_text(TRACE)
    page = tmp_path / "run.html"
    with DaemonProcess(
        str(dev_cluster.kubeconfig),
        tmp_path,
        policy="critical_path-roundrobin",
        namespaces=[namespace],
        lease={"enabled": False},
    ):
        status = cli.main(
            [
                "replay",
                str(path),
                "--namespace",
                namespace,
                "--kubeconfig",
                str(dev_cluster.kubeconfig),
                "--time-scale",
                "0.1",
                "--report",
                str(page),
            ]
        )
    out = capsys.readouterr().out
    assert status == 0, out
    assert "4 tasks" in out and "1 failed attempts" in out
    text = page.read_text()
    assert text.count('class="bar"') == 4 and text.count('class="bar failed"') == 1
    assert nodes[0][-14:] in text


def _store(core_v1, name: str) -> dict[str, str]:
    try:
        return core_v1.read_namespaced_config_map(name, "kube-system").data or {}
    except Exception:  # not written yet
        return {}


def _wait_for_store(core_v1, name: str, done, timeout_s: float = 60.0) -> dict[str, str]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        data = _store(core_v1, name)
        if done(data):
            return data
        time.sleep(0.5)
    raise AssertionError(f"store {name} never got there: {_store(core_v1, name)}")


# The trace's own order: B and the second A were submitted after the first A completed.
# The daemon names steps by their label values.
EDGES = {("wf-a", "wf-b"), ("wf-a", "wf-c"), ("wf-b", "wf-c")}


def test_a_restarted_daemon_keeps_the_earlier_runs_step_edges_and_runtimes(
    tmp_path: Path, dev_cluster, kube, core_v1, namespace, kwok_nodes
) -> None:
    kwok_nodes(1, cpu="4", memory="8Gi")
    path = tmp_path / "trace.csv"
    path.write_text(TRACE)
    trace = nftrace.load_trace(path)
    store = f"wfsched-store-{namespace}"
    name = f"wf-{namespace}"

    def history_of(data: dict[str, str]) -> dict:
        if "history.json" not in data:
            return {}
        return next(
            (w for w in json.loads(data["history.json"])["workflows"] if w["workflow"] == name),
            {},
        )

    def replay_once(**settings: object) -> tuple[DaemonProcess, replay.ReplayProgress]:
        """Replay the trace once under a fresh daemon; wait until the store has step edges."""
        plan = replay.ReplayPlan.from_trace(
            trace, scheduler_name=SCHED, time_scale=0.1, workflow_name=name
        )
        daemon = DaemonProcess(
            str(dev_cluster.kubeconfig),
            tmp_path,
            policy="critical_path-roundrobin",
            namespaces=[namespace],
            lease={"enabled": False},
            memory_store_configmap=store,
            **{"memory_save_interval_s": 1.0, **settings},
        )
        with daemon:
            with replay.memory_simulator(kube, namespace):
                progress = replay.Replayer(plan, kube, namespace=namespace).run(timeout_s=120)
            _wait_for_store(core_v1, store, lambda d: len(history_of(d).get("edges", [])) == 3)
        return daemon, progress

    # A first run with memory prediction: both the observations and the history are kept.
    _, progress = replay_once(predictor="ponder")
    assert progress.succeeded == 4
    data = _wait_for_store(
        core_v1,
        store,
        lambda d: "observations.json" in d and len(history_of(d).get("runtimes", {})) == 3,
    )
    kept = history_of(data)
    assert {tuple(e) for e in kept["edges"]} == EDGES
    # A ran twice; B once successfully (its OOM-killed attempt leaves no runtime); C once.
    assert {step: len(v) for step, v in kept["runtimes"].items()} == {
        "wf-a": 2,
        "wf-b": 1,
        "wf-c": 1,
    }

    # The engine cleans up the finished pods (Nextflow's default), then runs the workflow
    # again under a new daemon without memory prediction: it restores the history and adds
    # the rerun's runtimes; saving its history leaves the memory observations in place. Its
    # periodic save comes once an hour, after the first: only its shutdown can store them.
    core_v1.delete_collection_namespaced_pod(namespace, grace_period_seconds=0)
    deadline = time.monotonic() + 30
    while core_v1.list_namespaced_pod(namespace).items and time.monotonic() < deadline:
        time.sleep(0.5)
    daemon, progress = replay_once(memory_save_interval_s=3600.0)
    assert progress.succeeded == 4
    assert re.search(r"restored [1-9]\d* runtimes and step edges", daemon.log_path.read_text())
    data = _store(core_v1, store)  # the daemon has stopped: what it saved is there
    assert len(history_of(data)["runtimes"]["wf-a"]) == 4
    assert "observations.json" in data
    assert {tuple(e) for e in history_of(data)["edges"]} == EDGES
