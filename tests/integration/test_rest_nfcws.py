"""The nf-cws call sequence replayed over HTTP against the real daemon, API server and KWOK.

The DAG is sarek's (``shared/data/nfcore-traces/sarek/dag.html``: 729 vertices, 833 edges) and
the tasks come from its first trace, so process labels, ranks and input sizes are real. The
sequence is what nf-cws 2.0.1 sends: register the execution, POST all vertices then all edges
(through a base URL ending in ``/``), startBatch, register each task and create its pod with
``schedulerName: workflow-scheduler-<execution>``, endBatch, task metrics after each task,
the publish routes at shutdown, and DELETE.
"""

from __future__ import annotations

import csv
import functools
import json
import re
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from k8s_helpers import make_pod, read_pod, wait_for
from test_daemon import BindRecorder

from scheduler.devtools import devcluster, httpjson

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
SAREK = DATA / "nfcore-traces" / "sarek"
EXECUTION = "sarek-run1"
MIB = 1 << 20


def load_dag() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Vertices and edges of Nextflow's cytoscape DAG, as nf-cws would send them."""
    text = (SAREK / "dag.html").read_text()
    start = text.index("elements:")
    split = text.index("edges:", start)
    node = re.compile(
        r"\{ data: \{ id: 'p(\d+)'(?:, label: '((?:[^'\\]|\\.)*)')?\s*\}, classes: '(\w+)'"
    )
    vertices = [
        {"uid": int(uid), "label": label or None, "type": kind}
        for uid, label, kind in node.findall(text[start:split])
    ]
    edge = re.compile(r"\{ data: \{ source: 'p(\d+)', target: 'p(\d+)'")
    edges = [
        {"uid": i, "label": None, "from": int(a), "to": int(b)}
        for i, (a, b) in enumerate(edge.findall(text[split:]))
    ]
    return vertices, edges


def expected_ranks(vertices: list[dict[str, Any]], edges: list[dict[str, Any]]) -> dict[str, int]:
    """Rank of each process: processes on the longest path below it, operators transparent."""
    kind = {v["uid"]: v["type"] for v in vertices}
    label = {v["uid"]: v["label"] for v in vertices}
    below: dict[int, list[int]] = {}
    for e in edges:
        below.setdefault(e["from"], []).append(e["to"])

    @functools.cache
    def depth(uid: int) -> int:
        down = max((depth(c) for c in below.get(uid, [])), default=0)
        return down + (1 if kind[uid] == "PROCESS" else 0)

    return {
        label[u]: max((depth(c) for c in below.get(u, [])), default=0)
        for u in kind
        if kind[u] == "PROCESS"
    }


def pick_tasks(ranks: dict[str, int]) -> list[dict[str, str]]:
    """Two tasks of each of six processes with different ranks, distinct input sizes."""
    rows = list(csv.DictReader((SAREK / "trace-1.csv").open(), delimiter=";"))
    by_process: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_process.setdefault(row["process"], []).append(row)
    wanted = [p for p, rs in by_process.items() if len(rs) >= 2]
    chosen: list[str] = []
    for process in sorted(wanted, key=lambda p: -ranks[p]):
        if ranks[process] not in {ranks[c] for c in chosen}:
            chosen.append(process)
    tasks = [row for p in chosen[:6] for row in by_process[p][:2]]
    assert len({int(t["rchar"]) for t in tasks}) == len(tasks)
    return tasks[::-1]  # sinks first: the wrong order for a rank strategy


class Client(httpjson.JsonHttp):
    """The daemon's REST API as ``api(method, path, body)``; ``raw`` bytes are sent as they are."""

    def __init__(self, port: int) -> None:
        super().__init__(port)
        # nf-cws's base URL is http://host:port/v1/ and it appends "/scheduler/...".
        self.base = f"http://127.0.0.1:{port}"

    def __call__(
        self, method: str, path: str, body: Any = None, raw: bytes | None = None
    ) -> tuple[int, Any]:
        return self.request(method, path, raw if raw is not None else body)


def task_config(row: dict[str, str]) -> dict[str, Any]:
    """The TaskConfig nf-cws registers for one trace row."""
    return {
        "runName": row["native_id"],
        "inputs": {"booleanInputs": [], "numberInputs": [], "stringInputs": [], "fileInputs": []},
        "schedulerParams": {},
        "name": row["name"],
        "task": row["process"],
        "stageInMode": None,
        "cpus": 1,
        "memoryInBytes": 1 << 30,
        "workDir": row["workdir"],
        "repetition": 0,
        "inputSize": int(row["rchar"]),
    }


def task_pod(row: dict[str, str], execution: str) -> dict[str, Any]:
    """The pod nf-cws's executor creates for one trace row (KWOK runs it for 1 s)."""
    return make_pod(
        row["native_id"],
        scheduler_name=f"workflow-scheduler-{execution}",
        cpu="1",
        memory="1Gi",
        runtime="1s",
    )


def wait_succeeded(core_v1: Any, namespace: str, row: dict[str, str]) -> None:
    """Wait until the pod of ``row`` has succeeded."""
    wait_for(
        lambda: (
            read_pod(core_v1, namespace, row["native_id"])["status"].get("phase") == "Succeeded"
        ),
        timeout_s=60,
        what=f"{row['native_id']} succeeded",
    )


def metrics_of(row: dict[str, str]) -> dict[str, int]:
    """The task metrics nf-cws posts for one trace row."""
    return {
        "ramRequest": int(row["memory"]),
        "peakVmem": int(row["peak_vmem"]),
        "peakRss": int(row["peak_rss"]),
        "realtime": int(row["realtime"]),
    }


@pytest.fixture
def cws_daemon(dev_cluster, namespace, tmp_path):
    from k8s_helpers import DaemonProcess

    port = devcluster.free_port()
    proc = DaemonProcess(
        str(dev_cluster.kubeconfig),
        tmp_path,
        namespaces=[namespace],
        lease={"enabled": False},
        policy="fifo-roundrobin",
        rest_port=port,
        batch_timeout_s=20,
        registration_grace_s=5,
        cws_state_save_interval_s=0,
    ).start()
    yield Client(port), proc
    proc.stop()


def test_nf_cws_sequence_against_the_daemon(core_v1, namespace, kwok_nodes, cws_daemon) -> None:
    api, proc = cws_daemon
    kwok_nodes(1, cpu="1", memory="64Gi")
    vertices, edges = load_dag()
    ranks = expected_ranks(vertices, edges)
    tasks = pick_tasks(ranks)
    e = f"/v1//scheduler/{EXECUTION}"

    assert api("GET", "/health") == (200, {"status": "ok"})
    config = {
        "strategy": "rank_min-roundrobin",  # not the daemon's fifo: per-execution strategy
        "namespace": namespace,
        "dns": f"{api.base}/v1/",
        "memoryPredictor": "mean-offset=none",
        "minMemory": None,
        "maxMemory": None,
        "traceEnabled": False,
        "costFunction": None,
        "additional": {},
    }
    assert api("POST", e, config)[0] == 200
    assert api("POST", e, config)[0] == 409  # D20
    assert api("POST", e + "/DAG/vertices", vertices) == (200, {"added": len(vertices)})
    assert api("POST", e + "/DAG/edges", edges)[0] == 200
    # Strict: an unknown vertex and a cycle are refused and change nothing.
    status, reply = api("POST", e + "/DAG/edges", [{"uid": 10**6, "from": 0, "to": 99999}])
    assert status == 400 and "99999" in reply["error"]
    assert api("POST", e + "/DAG/edges", [{"uid": 10**6, "from": 3, "to": 0}])[0] == 400
    info = api("GET", e)[1]
    assert info["ranks"] == ranks and info["edges"] == len(edges)

    assert api("PUT", e + "/startBatch")[0] == 200
    with BindRecorder(core_v1, namespace) as recorder:
        for row in tasks:
            status, reply = api("POST", f"{e}/task/{row['task_id']}", task_config(row))
            assert status == 200
            assert reply == {"memoryInBytes": None, "rank": ranks[row["process"]]}  # D19
            core_v1.create_namespaced_pod(namespace, task_pod(row, EXECUTION))
        time.sleep(2)
        assert recorder.order == []  # held by the open batch
        task_id = tasks[0]["task_id"]
        assert api("GET", f"{e}/task/{task_id}") == (200, {"state": "UNSCHEDULED", "error": None})
        assert api("PUT", e + "/endBatch", raw=str(len(tasks)).encode())[0] == 200
        wait_for(lambda: len(recorder.order) == len(tasks), timeout_s=120, what="all bound")
    expected = [
        row["native_id"]
        for row in sorted(tasks, key=lambda r: (-ranks[r["process"]], int(r["rchar"])))
    ]
    assert recorder.order == expected

    for row in tasks:
        wait_succeeded(core_v1, namespace, row)
        metrics = metrics_of(row)
        assert api("POST", f"{e}/metrics/task/{row['task_id']}", metrics) == (
            200,
            {"observed": True},
        )
        assert api("POST", f"{e}/metrics/task/{row['task_id']}", metrics)[0] == 200  # D21
    wait_for(
        lambda: api("GET", f"{e}/task/{tasks[-1]['task_id']}")[1]["state"] == "FINISHED",
        what="finished state",
    )
    # The metrics reached the execution's predictor: the next task of that process is planned.
    process = tasks[0]["process"]
    peaks = [int(r["peak_rss"]) for r in tasks if r["process"] == process]
    mean = sum(peaks) / len(peaks)
    planned = min(1 << 30, -(-max(128 * MIB, mean) // MIB) * MIB)
    config = {"task": process, "runName": "nf-next", "inputSize": 5, "memoryInBytes": 1 << 30}
    status, reply = api("POST", f"{e}/task/999999", config)
    assert status == 200 and reply["memoryInBytes"] == planned
    assert api("GET", e)[1]["observations"][process] == 2

    # nf-cws 2.0.1 shutdown: publish, then DELETE.
    assert api("POST", f"/v1/file/{EXECUTION}/publish", {})[0] == 200
    assert api("GET", f"/v1/file/{EXECUTION}/publish") == (200, "0")
    assert api("DELETE", e)[0] == 200
    assert api("GET", e) == (400, {"error": f"There is no scheduler for {EXECUTION}"})
    assert api("DELETE", e)[0] == 400
    assert api("POST", e, {"strategy": "fifo", "namespace": namespace})[0] == 200
    fresh = api("GET", e)[1]
    assert fresh["vertices"] == 0 and fresh["ranks"] == {} and fresh["tasks"] == {}
    assert "wfsched_batch_timeouts_total 0.0" in proc.metrics()


def test_pods_of_another_cws_are_left_alone_unless_adopted(
    dev_cluster, core_v1, namespace, kwok_nodes, cws_daemon, tmp_path
):
    """A pod of an execution never registered here may be another CWS instance's: not ours.

    The default daemon (``cws_daemon``, grace 5 s) never binds it; a daemon started with
    ``adopt_unregistered_executions`` binds it after the grace period.
    """
    from k8s_helpers import DaemonProcess

    kwok_nodes(1, cpu="2", memory="4Gi")
    pod = make_pod("theirs", scheduler_name="workflow-scheduler-other-cws-run", runtime="1s")
    core_v1.create_namespaced_pod(namespace, pod)
    time.sleep(12)  # more than twice the grace period, and a safety cycle
    assert not read_pod(core_v1, namespace, "theirs")["spec"].get("nodeName")
    cws_daemon[1].stop()
    adopting = DaemonProcess(
        str(dev_cluster.kubeconfig),
        tmp_path,
        namespaces=[namespace],
        lease={"enabled": False},
        cws_state_save_interval_s=0,
        rest_port=devcluster.free_port(),
        registration_grace_s=2,
        adopt_unregistered_executions=True,
    ).start()
    try:
        wait_for(
            lambda: read_pod(core_v1, namespace, "theirs")["spec"].get("nodeName"),
            timeout_s=30,
            what="the pod bound once adopted",
        )
    finally:
        adopting.stop()


def file_input(i: int) -> dict[str, Any]:
    """One entry of nf-cws's ``inputs.fileInputs`` (about 240 bytes, as nf-cws sends them)."""
    path = f"/workspace/work/{i % 256:02x}/{i:030x}/sample_{i:05d}_R1.fastq.gz"
    return {
        "name": "reads",
        "value": {
            "storePath": path,
            "sourceObj": f"/data/input/sample_{i:05d}_R1.fastq.gz",
            "stageName": f"sample_{i:05d}_R1.fastq.gz",
        },
    }


def vm_hwm_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def test_a_20000_file_task_registration_is_accepted_with_bounded_memory(
    namespace, cws_daemon
) -> None:
    api, proc = cws_daemon
    e = f"/v1/scheduler/{EXECUTION}"
    assert api("POST", e, {"strategy": "fifo", "namespace": namespace})[0] == 200
    assert (
        api("POST", e + "/DAG/vertices", [{"uid": 1, "label": "MULTIQC", "type": "PROCESS"}])[0]
        == 200
    )
    config = {
        "runName": "nf-multiqc-1",
        "task": "MULTIQC",
        "name": "MULTIQC",
        "cpus": 1,
        "memoryInBytes": 1 << 30,
        "repetition": 0,
        "inputSize": 123_456_789,
        "inputs": {
            "booleanInputs": [],
            "numberInputs": [],
            "stringInputs": [{"name": "x", "value": "y"}],
            "fileInputs": [file_input(i) for i in range(20_000)],
        },
        "schedulerParams": {},
        "workDir": "/workspace/work/aa/bb",
    }
    raw = json.dumps(config).encode()
    assert len(raw) > 4 << 20  # the 1 MiB limit of before refused it with 413
    peak_before = vm_hwm_bytes(proc.proc.pid)
    started = time.monotonic()
    status, reply = api("POST", f"{e}/task/1", raw=raw)
    seconds = time.monotonic() - started
    assert (status, reply) == (200, {"memoryInBytes": None, "rank": 0}), reply
    # Parsed as a stream and stored as a count: the daemon's peak memory barely moves.
    growth = vm_hwm_bytes(proc.proc.pid) - peak_before
    print(
        f"20,000-file registration: {len(raw)} bytes, {seconds:.2f}s, peak RSS +{growth >> 20} MiB"
    )
    assert growth < 32 << 20, growth
    assert api("GET", f"{e}/task/1") == (200, {"state": "RECEIVED_CONFIG", "error": None})
    # Over the bounded maximum: a clear 413 before the body is read, and the daemon goes on.
    with socket.create_connection(("127.0.0.1", api.port), 10) as sock:
        sock.sendall(
            f"POST {e}/task/2 HTTP/1.1\r\nHost: x\r\nContent-Length: {33 << 20}\r\n\r\n".encode()
        )
        head = sock.recv(4096)
    assert head.startswith(b"HTTP/1.1 413"), head
    assert api("GET", "/health") == (200, {"status": "ok"})


MALFORMED = [
    ("POST", "/v1/scheduler/x", b"{"),
    ("POST", "/v1/scheduler/x", b'{"strategy": 5}'),
    ("POST", "/v1/scheduler/x", b'{"strategy": "nope"}'),
    ("POST", "/v1/scheduler/x/DAG/vertices", b"[]"),
    ("POST", "/v1/scheduler/x/task/1", b"null"),
    ("PUT", "/v1/scheduler/x/endBatch", b"1.5"),
    ("DELETE", "/v1/scheduler/x/DAG/edges", b'["a"]'),
    ("GET", "/v1/scheduler/x/task/notanumber", None),
    ("TRACE", "/v1/scheduler/x", None),
    ("POST", "/v1/scheduler/" + "a" * 300, b"{}"),
    ("POST", "/v1/scheduler/x/metrics/task/1", b'{"peakRss": -1}'),
    ("POST", "/v1/scheduler/x/DAG/vertices", b"[" + b"{}," * 20000 + b"{}]"),
]


def test_malformed_requests_against_the_live_daemon(namespace, cws_daemon) -> None:
    api, _proc = cws_daemon
    for method, path, raw in MALFORMED:
        status, reply = api(method, path, raw=raw)
        assert 400 <= status < 500, (method, path, status, reply)
        assert reply["error"]
    assert api("GET", "/v1/scheduler/x")[0] == 400  # nothing was registered
    assert api("GET", "/health")[0] == 200
    status, doc = api("GET", "/openapi.json")
    assert status == 200 and "/v1/scheduler/{execution}/task/{id}" in doc["paths"]
