"""The REST API through Api.handle, with a real SchedulerLoop (fake Kubernetes API) behind it."""

from __future__ import annotations

import json
import time

import pytest
from rest_helpers import node, pod

E = "/v1/scheduler/run1"


def register(h, **body):
    body.setdefault("strategy", "rank_min-roundrobin")
    body.setdefault("namespace", "ns")
    return h.call("POST", E, body)


def test_nf_cws_sequence_binds_in_rank_order(harness) -> None:
    h = harness()
    assert register(h)[0] == 200
    vertices = [
        {"uid": 1, "label": "A", "type": "PROCESS"},
        {"uid": 2, "label": None, "type": "OPERATOR"},
        {"uid": 3, "label": "B", "type": "PROCESS"},
        {"uid": 4, "label": "C", "type": "PROCESS"},
    ]
    # nf-cws's base URL ends with a slash: paths arrive with "//".
    assert h.call("POST", "/v1//scheduler/run1/DAG/vertices", vertices)[0] == 200
    edges = [
        {"uid": 1, "label": None, "from": 1, "to": 2},
        {"uid": 2, "label": None, "from": 2, "to": 3},
        {"uid": 3, "label": "x", "from": 3, "to": 4},
    ]
    assert h.call("POST", E + "/DAG/edges", edges)[0] == 200
    assert h.call("PUT", E + "/startBatch") == (200, {"batch": 1})
    tasks = [("C", 1), ("B", 3), ("A", 9), ("A", 2), ("B", 1)]
    for i, (process, size) in enumerate(tasks):
        status, reply = h.call(
            "POST", f"{E}/task/{i}", {"task": process, "runName": f"p{i}", "inputSize": size}
        )
        assert status == 200
        assert reply == {"memoryInBytes": None, "rank": {"A": 2, "B": 1, "C": 0}[process]}
    h.loop.events.put(("nodes", "ADDED", node("n1", cpu="1")))
    for i in range(len(tasks)):
        h.pod_event("ADDED", pod(f"p{i}"))
    h.sync()
    assert h.kube.binds == [] and len(h.loop.queue) == 0
    assert h.call("GET", E + "/task/0") == (200, {"state": "UNSCHEDULED", "error": None})
    assert h.call("PUT", E + "/endBatch", raw=b"5")[0] == 200
    h.wait(lambda: h.kube.binds)
    # One CPU: one bind per cycle; the rest stays queued in rank_min order.
    h.sync()
    order = [h.kube.binds[0][0]] + [t.pod.name for t in h.loop.queue.tasks()]
    assert order == ["p3", "p2", "p4", "p1", "p0"]
    assert h.call("GET", E + "/task/3")[1]["state"] in ("SCHEDULED", "PREPARED")
    h.pod_event("MODIFIED", pod("p3", node_name="n1", phase="Running"))
    h.sync()
    assert h.call("GET", E + "/task/3") == (200, {"state": "PREPARED", "error": None})
    h.pod_event("MODIFIED", pod("p3", node_name="n1", phase="Succeeded"))
    h.sync()
    assert h.call("GET", E + "/task/3") == (200, {"state": "FINISHED", "error": None})
    assert h.loop.registry.dag("ns/run1").finished("A") == 1
    assert h.call("POST", "/v1/file/run1/publish", {})[0] == 200
    assert h.call("GET", "/v1/file/run1/publish") == (200, "0")
    assert h.call("PUT", "/v1/file/run1/publish", {"source": "a"})[0] == 200
    assert h.call("DELETE", E)[0] == 200
    assert h.loop.registry.dag("ns/run1") is None
    assert h.call("GET", E) == (400, {"error": "There is no scheduler for run1"})


def test_status_codes(harness) -> None:
    h = harness()
    assert h.call("PUT", E + "/startBatch") == (400, {"error": "There is no scheduler for run1"})
    assert register(h)[0] == 200
    assert register(h)[0] == 409
    assert h.call("POST", "/v1/scheduler/other", {"strategy": "bogus", "namespace": "ns"})[0] == 404
    assert h.call("PUT", E + "/endBatch", raw=b"0") == (200, {"batch": None})
    assert h.call("GET", E + "/task/7")[0] == 404
    assert h.call("DELETE", E + "/task/7")[0] == 404
    assert h.call("POST", E + "/metrics/task/7", {"peakRss": 1})[0] == 404
    assert h.call("GET", E + "/task/abc")[0] == 400
    assert h.call("GET", E + "/task/99999999999")[0] == 400
    assert h.call("GET", "/v1/scheduler/bad%2Fname")[0] == 400
    assert h.call("GET", "/nothing")[0] == 404
    status, reply = h.call("PATCH", E)
    assert status == 405 and "PATCH" in reply["error"]
    assert h.call("POST", E + "/DAG/edges", [{"uid": 1, "from": 1, "to": 2}]) == (
        400,
        {"error": "edges[0] (uid 1): unknown vertex 1"},
    )
    assert h.call("GET", "/health") == (200, {"status": "ok"})


@pytest.mark.parametrize(
    ("path", "body", "needle"),
    [
        (E + "/DAG/vertices", b"[{", "malformed JSON"),
        (E + "/DAG/vertices", b"", "JSON body is required"),
        (E + "/DAG/vertices", b'{"uid": 1}', "expected array"),
        (E + "/DAG/vertices", b'[{"uid": "1", "type": "PROCESS"}]', "body[0].uid"),
        (E + "/DAG/vertices", b'[{"uid": 1, "type": "BOX"}]', "not one of"),
        (E + "/DAG/vertices", b'[{"uid": 1}]', "missing required field 'type'"),
        (E + "/DAG/vertices", b'[{"uid": NaN, "type": "NODE"}]', "NaN"),
        (E + "/task/1", b'{"task": "A"}', "runName"),
        (E + "/task/1", b'{"task": "A", "runName": "p", "inputSize": -1}', "minimum"),
        (E + "/task/1", b'{"task": "A", "runName": "Bad_Name"}', "does not match"),
        (E + "/task/1", b'{"task": "", "runName": "p"}', "empty"),
        (E + "/task/1", b'{"task": "A", "runName": "p", "cpus": true}', "body.cpus"),
        (E + "/metrics/task/1", b'{"peakRss": -5}', "minimum"),
        (E + "/metrics/task/1", b'{"realtime": 1.5}', "expected integer"),
        (E + "/endBatch", b'"3"', "expected integer"),
        (E + "/endBatch", b"-1", "minimum"),
        (E + "/DAG/edges", b"\xff\xfe", "UTF-8"),
    ],
)
def test_malformed_bodies_are_400_and_change_nothing(harness, path, body, needle) -> None:
    h = harness()
    register(h)
    h.call("POST", E + "/task/1", {"task": "A", "runName": "p"})
    before = h.call("GET", E)[1]
    method = "PUT" if path.endswith("Batch") else "POST"
    status, reply = h.call(method, path, raw=body)
    assert status == 400, reply
    assert needle in reply["error"]
    assert h.call("GET", E)[1] == before


def test_limits(harness) -> None:
    h = harness(rest_max_body_bytes=1000, rest_max_task_body_bytes=2000, rest_max_items=3)
    register(h)
    vertices = [{"uid": i, "type": "NODE"} for i in range(4)]
    assert h.call("POST", E + "/DAG/vertices", vertices)[0] == 413
    assert h.call("DELETE", E + "/DAG/edges", [1, 2, 3, 4])[0] == 413
    assert h.call("POST", E + "/DAG/vertices", raw=b" " * 1001)[0] == 413
    task = {"task": "A", "runName": "p1", "name": "x" * 1500}
    assert h.call("POST", E + "/task/1", task)[0] == 200  # the task limit is larger
    assert h.call("POST", E + "/task/2", raw=b" " * 2001)[0] == 413
    declared = h.api.handle("POST", E + "/task/2", {"Content-Length": "5000"}, b"{}")
    assert declared.status == 413  # refused on the declared length, before reading
    assert h.call("GET", E)[1]["vertices"] == 0
    assert h.call("GET", E)[1]["tasks"] == {"RECEIVED_CONFIG": 1}


def test_bearer_token(harness) -> None:
    h = harness(token="s3cret")
    assert h.call("GET", "/health")[0] == 200
    assert h.call("GET", "/openapi.json")[0] == 401
    status, _ = h.call("POST", E, {"strategy": "fifo"}, headers={"Authorization": "Bearer nope"})
    assert status == 401
    status, _ = h.call(
        "POST",
        E,
        {"strategy": "fifo", "namespace": "ns"},
        headers={"authorization": "Bearer s3cret"},
    )
    assert status == 200
    reply = h.api.handle("GET", "/docs", {})
    assert reply.status == 401 and ("WWW-Authenticate", "Bearer") in reply.headers


def test_followers_refuse_writes_but_answer_reads(harness) -> None:
    h = harness()
    register(h)
    h.leading = False
    assert h.call("PUT", E + "/startBatch") == (
        503,
        {"error": "not the leader", "leader": "other-replica"},
    )
    assert h.call("GET", E)[0] == 200
    assert h.call("POST", "/v1/file/run1/publish")[0] == 200


def test_a_loop_that_does_not_answer_gives_503_and_no_change(harness) -> None:
    h = harness()
    h.stop()  # nobody drains the events queue any more
    h.bridge.timeout_s = 0.2
    assert h.call("POST", E, {"strategy": "fifo", "namespace": "ns"})[0] == 503
    # The cancelled command is skipped when a loop finally runs it.
    while not h.loop.events.empty():
        item = h.loop.events.get()
        if hasattr(item, "apply"):
            item.apply(h.loop)
    assert h.state.executions == {}


def test_openapi_documents_every_route_and_docs_render_it(harness) -> None:
    h = harness()
    status, doc = h.call("GET", "/openapi.json")
    assert status == 200 and doc["openapi"] == "3.1.0"
    from scheduler.rest import api

    for route in api.ROUTES:
        operation = doc["paths"][route.path][route.method.lower()]
        assert "200" in operation["responses"]
    assert len([r for r in api.ROUTES if r.path.startswith("/v1/scheduler/")]) == 13
    status, page = h.call("GET", "/docs")
    assert status == 200 and "<html>" in page and "/DAG/edges" in page
    assert "http" not in page.replace("/openapi.json", "").split("<body>")[0].lower()


def test_deleted_task_leaves_the_queue(harness) -> None:
    h = harness()
    register(h)
    h.call("POST", E + "/task/1", {"task": "A", "runName": "p1"})
    h.pod_event("ADDED", pod("p1"))
    h.sync()
    assert len(h.loop.queue) == 1
    assert h.call("DELETE", E + "/task/1") == (200, {"deleted": True})
    assert len(h.loop.queue) == 0
    assert h.call("GET", E + "/task/1") == (200, {"state": "DELETED", "error": None})


def test_unregistered_pod_is_scheduled_after_the_grace_period_when_adopted(harness) -> None:
    h = harness(registration_grace_s=0.3, adopt_unregistered_executions=True)
    h.loop.events.put(("nodes", "ADDED", node("n1")))
    h.pod_event("ADDED", pod("orphan", execution="nobody"))
    h.sync()
    assert h.kube.binds == []
    h.wait(lambda: h.kube.binds == [("orphan", "n1")])


def test_pods_of_an_execution_never_registered_are_left_alone_by_default(harness) -> None:
    h = harness(registration_grace_s=0.2)
    h.loop.events.put(("nodes", "ADDED", node("n1")))
    h.pod_event("ADDED", pod("theirs", execution="other-cws-run"))
    time.sleep(1.0)  # five grace periods, ten ticks
    h.sync()
    assert h.kube.binds == []
    # A task registered later for an execution of ours still gets its held pod scheduled.
    assert (
        h.call("POST", "/v1/scheduler/other-cws-run", {"strategy": "fifo", "namespace": "ns"})[0]
        == 200
    )
    h.call("POST", "/v1/scheduler/other-cws-run/task/1", {"task": "A", "runName": "theirs"})
    h.wait(lambda: h.kube.binds == [("theirs", "n1")])


def test_batch_timeout_releases_and_counts(harness) -> None:
    h = harness(batch_timeout_s=0.3)
    register(h)
    h.loop.events.put(("nodes", "ADDED", node("n1")))
    h.call("PUT", E + "/startBatch")
    h.call("POST", E + "/task/1", {"task": "A", "runName": "p1"})
    h.call("POST", E + "/task/2", {"task": "A", "runName": "never"})
    h.pod_event("ADDED", pod("p1"))
    h.call("PUT", E + "/endBatch", raw=b"2")
    h.sync()
    assert h.kube.binds == []
    h.wait(lambda: h.kube.binds == [("p1", "n1")])
    assert h.loop.metrics.batch_timeouts._value.get() == 1


def test_json_reply_bodies_are_json(harness) -> None:
    h = harness()
    reply = h.api.handle("GET", "/v1/scheduler/x", {})
    assert reply.content_type == "application/json"
    assert json.loads(reply.body)["error"]


def test_paths_are_normalised_like_nf_cws_builds_them(harness) -> None:
    h = harness()
    assert (
        h.call("POST", "//v1//scheduler//run1//?x=1", {"strategy": "fifo", "namespace": "ns"})[0]
        == 200
    )
    assert h.call("GET", "/v1/scheduler/run1/")[0] == 200
