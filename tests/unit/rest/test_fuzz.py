"""Fuzzing the REST API: malformed requests never give a 5xx, never change state on a 4xx.

Two layers: hypothesis drives ``Api.handle`` directly with arbitrary methods, paths and bodies
(the bulk), and schemathesis generates positive and negative requests from ``/openapi.json``
against the real HTTP server, checking that responses conform to the document.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_helpers import Harness
from schemathesis import GenerationMode

from scheduler.rest import server as server_mod

# Hundreds of generated requests each: seconds alone, more than the unit tier's 20 s on a
# busy machine.
pytestmark = pytest.mark.timeout(120)

E = "/v1/scheduler/run1"


def snapshot(h: Harness) -> str:
    def read(loop: Any) -> str:
        out = {}
        for name, exe in h.state.executions.items():
            out[name] = {
                "info": h.state.info(name),
                "tasks": {
                    i: (t.state.value, t.spec.pod_name, t.batch, t.metrics is not None)
                    for i, t in exe.tasks.items()
                },
                "vertices": sorted(exe.vertices.items()),
                "edges": sorted(exe.edges.items()),
            }
        return json.dumps(out, sort_keys=True, default=str)

    return h.bridge.call(read)


@pytest.fixture(scope="module")
def live() -> Any:
    h = Harness().start()
    for name in ("run1", "other"):
        h.call("POST", f"/v1/scheduler/{name}", {"strategy": "rank_min", "namespace": "ns"})
    h.call(
        "POST",
        E + "/DAG/vertices",
        [{"uid": 1, "label": "A", "type": "PROCESS"}, {"uid": 2, "label": "B", "type": "PROCESS"}],
    )
    h.call("POST", E + "/DAG/edges", [{"uid": 1, "from": 1, "to": 2}])
    h.call("POST", E + "/task/1", {"task": "A", "runName": "p1"})
    yield h
    h.stop()


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)
field_names = st.sampled_from(
    [
        "uid",
        "label",
        "type",
        "from",
        "to",
        "task",
        "runName",
        "inputSize",
        "strategy",
        "namespace",
        "memoryPredictor",
        "peakRss",
        "realtime",
        "repetition",
        "cpus",
        "maxMemory",
    ]
)
objects = st.dictionaries(field_names, json_values, max_size=6)
bodies = (
    st.binary(max_size=64)
    | json_values.map(lambda v: json.dumps(v).encode())
    | objects.map(lambda v: json.dumps(v).encode())
    | st.lists(objects, max_size=4).map(lambda v: json.dumps(v).encode())
)
segments = st.sampled_from(["run1", "other", "ghost", "", "bad name", "%ff", "..", "1"])
ids = st.sampled_from(["1", "2", "-1", "x", "99999999999", "0"])
paths = st.one_of(
    st.builds(lambda e: f"/v1/scheduler/{e}", segments),
    st.builds(
        lambda e, s: f"/v1/scheduler/{e}/{s}",
        segments,
        st.sampled_from(["DAG/vertices", "DAG/edges", "startBatch", "endBatch", "DAG", "x"]),
    ),
    st.builds(lambda e, i: f"/v1/scheduler/{e}/task/{i}", segments, ids),
    st.builds(lambda e, i: f"/v1/scheduler/{e}/metrics/task/{i}", segments, ids),
    st.builds(lambda e: f"/v1/file/{e}/publish", segments),
    st.sampled_from(["/health", "/openapi.json", "/docs", "/", "//v1//scheduler//run1//"]),
    st.text(max_size=30).map(lambda t: "/" + t),
)
methods = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"])


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(method=methods, path=paths, body=bodies)
def test_arbitrary_requests_never_fail_and_4xx_changes_nothing(live, method, path, body) -> None:
    before = snapshot(live)
    reply = live.api.handle(method, path, {}, body)
    assert reply.status < 500 or reply.status == 503, (method, path, body, reply)
    if reply.status >= 400:
        assert snapshot(live) == before, (method, path, body, reply)
        assert json.loads(reply.body)["error"]
    else:
        assert reply.status == 200


@pytest.fixture(scope="module")
def http_server(live: Harness) -> Any:
    server = server_mod.RestServer(live.api, address="127.0.0.1", port=0)
    server.start()
    yield f"http://127.0.0.1:{server.port}"
    server.stop()


schema = schemathesis.openapi.from_dict(
    server_mod.api_mod.Api(bridge=Harness().bridge).document  # the document is static
)
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], max_examples=15
)


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_schemathesis_against_the_http_server(case, http_server, live) -> None:
    before = snapshot(live)
    response = case.call(base_url=http_server, timeout=10)
    assert response.status_code < 500, (case, response.text)
    if response.status_code >= 400:
        assert snapshot(live) == before
    # Schema-valid requests may still be refused for semantic reasons (unknown execution,
    # namespace not watched, cycle): positive_data_acceptance does not apply; the stateful
    # resource checks assume CRUD semantics CWS does not have.
    # A body over the size or item limit is refused with a documented 413.
    checks = schemathesis.checks
    excluded = [
        checks.not_a_server_error,
        checks.positive_data_acceptance,
        checks.use_after_free,
        checks.ensure_resource_availability,
    ]
    if response.status_code == 413:
        excluded.append(checks.negative_data_rejection)
    case.validate_response(response, excluded_checks=excluded)
