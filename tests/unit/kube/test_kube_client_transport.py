"""KubeClient transport rules without a server: retries, no-retry for writes, watch parsing.

A fake stands in for ``kubernetes.client.ApiClient`` at what KubeClient uses (``param_serialize``
and ``call_api``; for pre-serialised bodies ``update_params_for_auth`` and the urllib3 pool
manager), returning canned urllib3-like responses.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from scheduler.kube import client as kube_client
from scheduler.kube import errors, resources, watchstream
from scheduler.kube.ratelimit import TokenBucket


class FakeResponse:
    def __init__(
        self,
        status: int,
        body: Any = b"",
        headers: dict | None = None,
        chunks: list[bytes] | None = None,
        fail_after: BaseException | None = None,
    ) -> None:
        self.status = status
        self.headers = headers or {}
        self._body = body if isinstance(body, bytes) else json.dumps(body).encode()
        self._chunks = chunks
        self._fail_after = fail_after
        self.released = False
        self.closed = False

    @property
    def data(self) -> bytes:
        return self._body

    def stream(self, amt: int, decode_content: bool = True) -> Iterator[bytes]:
        yield from self._chunks or []
        if self._fail_after is not None:
            raise self._fail_after

    def release_conn(self) -> None:
        self.released = True

    def drain_conn(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


class _Rest:
    def __init__(self, response: FakeResponse) -> None:
        self.response = response

    def _response(self) -> FakeResponse:
        return self.response


class _Configuration:
    host = "https://h"


class _PoolManager:
    def __init__(self, api: FakeApi) -> None:
        self.api = api

    def request(self, method: str, url: str, *, body: bytes, headers: dict, **_: Any) -> Any:
        self.api.headers.append(headers)
        return self.api.call_api(method, url, headers, json.loads(body), [])._response()


class _RestClient:
    def __init__(self, api: FakeApi) -> None:
        self.pool_manager = _PoolManager(api)


class FakeApi:
    def __init__(self, responses: list[FakeResponse | BaseException]) -> None:
        self.responses = responses
        self.requests: list[tuple[str, str, Any]] = []
        self.headers: list[dict] = []
        self.configuration = _Configuration()
        self.default_headers = {"User-Agent": "test"}
        self.rest_client = _RestClient(self)

    def update_params_for_auth(
        self, headers: dict, queries: Any, auth: list, path: str, method: str, body: Any
    ) -> None:
        headers["authorization"] = "Bearer t"

    def param_serialize(
        self,
        *,
        method: str,
        resource_path: str,
        header_params: dict,
        body: Any,
        auth_settings: list,
    ) -> tuple:
        return method, "https://h" + resource_path, header_params, body, []

    def call_api(
        self,
        method: str,
        url: str,
        headers: dict,
        body: Any,
        post: Any,
        _request_timeout: Any = None,
    ) -> _Rest:
        self.requests.append((method, url, body))
        step = self.responses.pop(0)
        if isinstance(step, BaseException):
            raise step
        return _Rest(step)


def make_client(responses: list, **kwargs: Any) -> tuple[kube_client.KubeClient, FakeApi, list]:
    api = FakeApi(responses)
    sleeps: list[float] = []
    client = kube_client.KubeClient(api, qps=0, burst=1, sleep=sleeps.append, **kwargs)  # type: ignore[arg-type]
    return client, api, sleeps


THROTTLED = {
    "kind": "Status",
    "code": 429,
    "reason": "TooManyRequests",
    "details": {"retryAfterSeconds": 1},
}


def test_reads_honour_retry_after_with_bounded_retries() -> None:
    ok = {"kind": "ConfigMap", "metadata": {"name": "dag"}, "data": {"dag.json": "{}"}}
    client, _, sleeps = make_client(
        [
            FakeResponse(429, THROTTLED, {"Retry-After": "3"}),
            FakeResponse(429, THROTTLED),
            FakeResponse(200, ok),
        ]
    )
    assert client.get_configmap("ns", "dag") == ok
    assert sleeps == [3.0, 1.0]
    assert client.read_retries == 2


def test_reads_give_up_after_max_retries_and_cap_the_sleep() -> None:
    client, _, sleeps = make_client(
        [FakeResponse(429, THROTTLED, {"Retry-After": "100"})] * 3,
        max_read_retries=2,
        max_retry_after_s=5,
    )
    with pytest.raises(errors.TooManyRequestsError):
        client.server_version()
    assert sleeps == [5.0, 5.0]


def test_bind_is_never_retried() -> None:
    client, api, sleeps = make_client([FakeResponse(429, THROTTLED)])
    with pytest.raises(errors.TooManyRequestsError):
        client.bind("ns", "p", "uid-1", "node-1")
    assert len(api.requests) == 1 and sleeps == []


def test_bind_sends_uid_precondition_and_accepts_201_status() -> None:
    created = {"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 201}
    client, api, _ = make_client([FakeResponse(201, created)])
    client.bind("ns", "p", "uid-1", "node-1")
    method, url, body = api.requests[0]
    assert (method, url) == ("POST", "https://h/api/v1/namespaces/ns/pods/p/binding")
    assert body["metadata"] == {"name": "p", "namespace": "ns", "uid": "uid-1"}
    assert body["target"] == {"apiVersion": "v1", "kind": "Node", "name": "node-1"}
    assert body["apiVersion"] == "v1" and body["kind"] == "Binding"
    assert api.headers[0]["authorization"] == "Bearer t"
    assert api.headers[0]["Content-Type"] == "application/json"


def test_binding_body_escapes_names_and_leaves_out_an_empty_uid() -> None:
    body = json.loads(kube_client.binding_body('n"s', "p\\1", "", "nöde"))
    assert body == {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": "p\\1", "namespace": 'n"s'},
        "target": {"apiVersion": "v1", "kind": "Node", "name": "nöde"},
    }


def test_a_refused_bind_is_classified_and_its_connection_released() -> None:
    refused = FakeResponse(409, {"kind": "Status", "code": 409, "reason": "Conflict"})
    client, _, _ = make_client([refused])
    with pytest.raises(errors.ConflictError):
        client.bind("ns", "p", "uid-1", "node-1")
    assert refused.released


def test_a_bind_refused_by_the_write_guard_is_not_sent() -> None:
    client, api, _ = make_client([])
    client.write_guard = lambda: False
    with pytest.raises(errors.NotSentError):
        client.bind("ns", "p", "uid-1", "node-1")
    assert api.requests == []


def test_transport_errors_are_classified() -> None:
    import urllib3.exceptions

    refused = urllib3.exceptions.MaxRetryError(
        None, "/", urllib3.exceptions.NewConnectionError(None, "refused")
    )
    client, _, _ = make_client([refused])
    with pytest.raises(errors.ApiConnectionError) as info:
        client.bind("ns", "p", "u", "n")
    assert info.value.kind is errors.ApiErrorKind.CONNECTION


def test_list_pages_and_returns_the_list_version() -> None:
    page1 = {
        "metadata": {"continue": "tok", "resourceVersion": "7"},
        "items": [{"metadata": {"name": "a"}}],
    }
    page2 = {"metadata": {"resourceVersion": "7"}, "items": [{"metadata": {"name": "b"}}]}
    client, api, _ = make_client([FakeResponse(200, page1), FakeResponse(200, page2)])
    items, rv = client.list_objects(
        "pods", namespace="ns", field_selector="spec.nodeName=", page_size=1
    )
    assert [i["metadata"]["name"] for i in items] == ["a", "b"]
    assert rv == "7"
    assert items[0]["kind"] == "Pod" and items[0]["apiVersion"] == "v1"
    assert "continue=tok" in api.requests[1][1]
    assert "fieldSelector=spec.nodeName%3D" in api.requests[0][1]


def test_list_restarts_when_the_continue_token_expires() -> None:
    gone = {"kind": "Status", "code": 410, "reason": "Expired"}
    page1 = {
        "metadata": {"continue": "tok", "resourceVersion": "7"},
        "items": [{"metadata": {"name": "a"}}],
    }
    full = {
        "metadata": {"resourceVersion": "9"},
        "items": [{"metadata": {"name": "a"}}, {"metadata": {"name": "b"}}],
    }
    client, _, _ = make_client(
        [FakeResponse(200, page1), FakeResponse(410, gone), FakeResponse(200, full)]
    )
    items, rv = client.list_objects("pods")
    assert len(items) == 2 and rv == "9"


def test_metrics_unavailable_is_none_never_an_exception() -> None:
    client, _, _ = make_client(
        [
            FakeResponse(404, b"404 page not found"),
            FakeResponse(503, b"service unavailable"),
            ConnectionRefusedError(),
            FakeResponse(403, {"kind": "Status", "code": 403, "reason": "Forbidden"}),
        ],
        max_read_retries=0,
    )
    assert client.node_metrics() is None
    assert client.node_metrics() is None
    assert client.pod_metrics("ns") is None
    assert client.pod_metrics() is None


def test_create_event_never_raises_and_counts() -> None:
    client, api, _ = make_client(
        [
            FakeResponse(201, {"kind": "Event"}),
            FakeResponse(403, {"kind": "Status", "code": 403, "reason": "Forbidden"}),
            ConnectionResetError(),
        ]
    )
    for _ in range(3):
        client.create_event(
            namespace="ns", pod_name="p", pod_uid="u", reason="Scheduled", note="x" * 5000
        )
    assert (client.events_sent, client.events_failed) == (1, 2)
    body = api.requests[0][2]
    assert body["reportingController"] == "wfsched"
    assert body["eventTime"].endswith("Z") and "." in body["eventTime"]
    assert len(body["note"]) == 1024
    assert body["regarding"]["uid"] == "u"


def test_create_event_is_dropped_rather_than_queued_behind_the_limiter() -> None:
    api = FakeApi([])
    bucket = TokenBucket(0.001, 1)
    bucket.acquire()
    client = kube_client.KubeClient(api, event_limiter=bucket, event_max_wait_s=0.01)  # type: ignore[arg-type]
    outcome = client.create_event(namespace="ns", pod_name="p", pod_uid="u", reason="R", note="n")
    assert outcome == "dropped"
    assert client.events_dropped == 1 and api.requests == []


def test_events_do_not_spend_the_tokens_of_binds() -> None:
    api = FakeApi([FakeResponse(201, {"kind": "Event"})])
    bucket = TokenBucket(0.001, 1)
    bucket.acquire()  # the shared bucket is empty: binds would wait, Events must not
    client = kube_client.KubeClient(api, limiter=bucket, event_max_wait_s=0.01)  # type: ignore[arg-type]
    outcome = client.create_event(
        namespace="ns",
        pod_name="dag",
        pod_uid="",
        reason="InvalidWorkflowDAG",
        note="n",
        regarding_kind="ConfigMap",
    )
    assert outcome == "sent" and client.events_sent == 1
    regarding = api.requests[0][2]["regarding"]
    assert regarding == {"apiVersion": "v1", "kind": "ConfigMap", "namespace": "ns", "name": "dag"}


# --- watch stream parsing --------------------------------------------------------------------


def lines(*events: dict) -> bytes:
    return b"".join(json.dumps(e).encode() + b"\n" for e in events)


def test_watch_stream_splits_lines_across_chunks() -> None:
    e1 = {"type": "ADDED", "object": {"metadata": {"name": "a", "resourceVersion": "1"}}}
    e2 = {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "2"}}}
    raw = lines(e1, e2)
    chunks = [raw[:5], raw[5:40], raw[40:41], raw[41:]]
    response = FakeResponse(200, chunks=chunks)
    stream = watchstream.WatchStream(response, what="test")  # type: ignore[arg-type]
    assert list(stream) == [e1, e2]
    assert response.released and not response.closed


def test_watch_stream_skips_non_json_lines() -> None:
    e1 = {"type": "ADDED", "object": {"metadata": {"name": "a"}}}
    response = FakeResponse(200, chunks=[b"garbage\n", b"[1,2]\n\n", lines(e1)])
    stream = watchstream.WatchStream(response, what="test")  # type: ignore[arg-type]
    assert list(stream) == [e1]
    assert stream.malformed == 2


def test_watch_stream_raises_gone_on_error_event() -> None:
    expired = {
        "type": "ERROR",
        "object": {
            "kind": "Status",
            "code": 410,
            "reason": "Expired",
            "message": "too old resource version: 1 (5)",
        },
    }
    response = FakeResponse(200, chunks=[lines(expired)])
    with pytest.raises(errors.GoneError):
        list(watchstream.WatchStream(response, what="test"))  # type: ignore[arg-type]
    assert response.closed


def test_watch_stream_classifies_transport_failures_unless_closed() -> None:
    import urllib3.exceptions

    e1 = {"type": "ADDED", "object": {"metadata": {"name": "a"}}}
    response = FakeResponse(
        200, chunks=[lines(e1)], fail_after=urllib3.exceptions.ProtocolError("reset")
    )
    stream = watchstream.WatchStream(response, what="test")  # type: ignore[arg-type]
    seen = []
    with pytest.raises(errors.ApiConnectionError):
        for event in stream:
            seen.append(event)
    assert seen == [e1]

    response = FakeResponse(200, chunks=[lines(e1)], fail_after=OSError("shut down"))
    stream = watchstream.WatchStream(response, what="test")  # type: ignore[arg-type]
    for _ in stream:
        stream.close()
    assert stream.closed


def test_resource_paths() -> None:
    pods = resources.RESOURCES["pods"]
    assert (
        pods.path(namespace="ns", name="p", subresource="resize")
        == "/api/v1/namespaces/ns/pods/p/resize"
    )
    assert pods.path() == "/api/v1/pods"
    leases = resources.RESOURCES["leases"]
    assert leases.path(namespace="kube-system", name="wfsched") == (
        "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/wfsched"
    )
    assert resources.RESOURCES["nodes"].path(namespace="ignored") == "/api/v1/nodes"
    with pytest.raises(ValueError):
        resources.resource_for("widgets")
