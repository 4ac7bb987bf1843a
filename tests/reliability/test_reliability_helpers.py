"""The suite's own API reads ride out the faults the scenarios inject (no cluster needed).

A restart of kube-apiserver can cut a response short after its headers: the body then ends
early (``IncompleteRead``) when the test reads it. ``PatientPodApi.list_pods`` (the replay's
reads during the fault scenarios) must retry that like a refused connection. A small local
HTTP server stands in for the API server, cutting its first answer mid-body.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator

import pytest
from kubernetes import client
from reliability_helpers import PatientPodApi, list_pods, patiently

POD_LIST = json.dumps(
    {
        "apiVersion": "v1",
        "kind": "PodList",
        "metadata": {"resourceVersion": "7"},
        "items": [{"metadata": {"name": "a", "namespace": "ns"}, "spec": {}, "status": {}}],
    }
).encode()


class CutFirstAnswer:
    """Answers every request with ``POD_LIST``, but the first ``cuts`` answers stop mid-body."""

    def __init__(self, cuts: int) -> None:
        self.cuts = cuts
        self.requests = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with conn:
                request = b""
                while b"\r\n\r\n" not in request:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    request += chunk
                self.requests += 1
                head = (
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(POD_LIST)}\r\nConnection: close\r\n\r\n"
                ).encode()
                body = POD_LIST[: len(POD_LIST) // 2] if self.requests <= self.cuts else POD_LIST
                conn.sendall(head + body)

    def close(self) -> None:
        self._listener.close()


@pytest.fixture
def cut_server() -> Iterator[CutFirstAnswer]:
    server = CutFirstAnswer(cuts=1)
    yield server
    server.close()


def _core_v1(port: int) -> client.CoreV1Api:
    configuration = client.Configuration()
    configuration.host = f"http://127.0.0.1:{port}"
    configuration.retries = 0
    return client.CoreV1Api(client.ApiClient(configuration))


def test_a_pod_list_cut_short_mid_body_is_retried(cut_server: CutFirstAnswer) -> None:
    api = PatientPodApi(_core_v1(cut_server.port), patience_s=20)
    pods = api.list_pods("ns")
    assert [p["metadata"]["name"] for p in pods] == ["a"]
    assert api.retries == 1
    assert cut_server.requests == 2


def test_patiently_retries_a_whole_list_that_was_cut_short(cut_server: CutFirstAnswer) -> None:
    core_v1 = _core_v1(cut_server.port)
    errors: list[None] = []
    pods = patiently(lambda: list_pods(core_v1, "ns"), on_error=lambda: errors.append(None))
    assert [p["metadata"]["name"] for p in pods] == ["a"]
    assert len(errors) == 1
