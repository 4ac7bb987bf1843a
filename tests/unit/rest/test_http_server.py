"""The HTTP servers with real sockets: slow clients, limits, and the REST path during a re-list."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from rest_helpers import Harness, pod

from scheduler.rest import server as server_mod
from scheduler.runtime import httpserver, metrics
from scheduler.runtime import loop as loop_mod
from scheduler.runtime.daemon import HealthServer

TIMEOUT_S = 2.0
LIMITS = httpserver.HttpLimits(
    threads=2, connection_limit=20, request_timeout_s=TIMEOUT_S, idle_timeout_s=TIMEOUT_S
)


@pytest.fixture
def rest() -> Iterator[tuple[Harness, int]]:
    h = Harness().start()
    server = server_mod.RestServer(h.api, address="127.0.0.1", port=0, limits=LIMITS)
    server.start()
    yield h, server.port
    server.stop()
    h.stop()


@pytest.fixture
def health() -> Iterator[int]:
    server = HealthServer(
        address="127.0.0.1",
        port=0,
        metrics=metrics.Metrics(),
        healthy=lambda: True,
        ready=lambda: True,
        limits=LIMITS,
    )
    server.start()
    yield server.port
    server.stop()


def get(port: int, path: str) -> tuple[int, bytes, float]:
    started = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read(), time.monotonic() - started
    finally:
        conn.close()


def closed_by_server(sock: socket.socket, deadline_s: float) -> float | None:
    """Seconds until the server closed ``sock`` (EOF or reset), or None if it never did."""
    started = time.monotonic()
    sock.settimeout(0.2)
    while time.monotonic() - started < deadline_s:
        try:
            if sock.recv(4096) == b"":
                return time.monotonic() - started
        except TimeoutError:
            continue
        except OSError:
            return time.monotonic() - started
    return None


class Trickler(threading.Thread):
    """Sends a request's headers, then its body one byte per second."""

    def __init__(self, port: int, path: str) -> None:
        super().__init__(daemon=True)
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n".encode()
        )
        self.sent = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(1.0):
            try:
                self.sock.sendall(b" ")
                self.sent += 1
            except OSError:
                return


def slow_clients(port: int, path: str) -> tuple[list[socket.socket], list[Trickler]]:
    silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(8)]
    partial = socket.create_connection(("127.0.0.1", port))
    partial.sendall(b"GET /he")  # half a request line, then nothing
    silent.append(partial)
    tricklers = [Trickler(port, path) for _ in range(4)]
    for t in tricklers:
        t.start()
    return silent, tricklers


def check_slow_clients(port: int, path: str, fast_path: str) -> dict[str, Any]:
    silent, tricklers = slow_clients(port, path)
    try:
        latencies = []
        for _ in range(5):  # while they hold their connections, others are served at once
            status, _body, seconds = get(port, fast_path)
            assert status == 200
            latencies.append(seconds)
            time.sleep(0.1)
        assert max(latencies) < 1.0, latencies
        closed = [closed_by_server(s, TIMEOUT_S + 4) for s in silent]
        cut = [closed_by_server(t.sock, TIMEOUT_S + 4) for t in tricklers]
        assert all(c is not None for c in closed), closed
        assert all(c is not None for c in cut), cut  # although they kept sending
        assert all(t.sent >= 1 for t in tricklers)
        return {"latency_max_s": max(latencies), "silent_closed": closed, "trickle_cut": cut}
    finally:
        for t in tricklers:
            t.stopped.set()
            t.sock.close()
        for s in silent:
            s.close()


def test_rest_server_cuts_slow_clients_and_serves_others_meanwhile(rest) -> None:
    _h, port = rest
    check_slow_clients(port, "/v1/scheduler/run1/task/1", "/health")


def test_health_server_cuts_slow_clients_and_serves_others_meanwhile(health) -> None:
    check_slow_clients(health, "/healthz", "/healthz")


def test_more_silent_clients_than_the_connection_limit_only_delay_others(rest) -> None:
    _h, port = rest
    hogs = [socket.create_connection(("127.0.0.1", port)) for _ in range(LIMITS.connection_limit)]
    try:
        time.sleep(0.3)
        status, _body, seconds = get(port, "/health")
        assert status == 200
        assert seconds < TIMEOUT_S + 3  # served once the hogs were cut off
    finally:
        for s in hogs:
            s.close()


def test_a_body_over_the_limit_gets_a_json_413_without_being_read(rest) -> None:
    h, port = rest
    sock = socket.create_connection(("127.0.0.1", port))
    try:
        huge = h.api.max_task_body_bytes + 1
        sock.sendall(
            f"POST /v1/scheduler/x/task/1 HTTP/1.1\r\nHost: x\r\nContent-Length: {huge}\r\n"
            "\r\n".encode()
        )
        sock.settimeout(5)
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
    finally:
        sock.close()
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413")
    assert b"application/json" in head
    assert "exceeds" in json.loads(body)["error"]


def test_rest_answers_ahead_of_a_re_list_of_many_watch_events() -> None:
    h = Harness().start()
    try:
        events = 30_000
        other = pod("x", execution=None)
        other["spec"]["schedulerName"] = "default-scheduler"
        items = []
        for i in range(events):
            item = json.loads(json.dumps(other))
            item["metadata"]["name"] = f"x{i}"
            item["metadata"]["uid"] = f"uid-x{i}"
            items.append((loop_mod.POD_EVENTS, "ADDED", item))
        for item in items:  # a re-list: all at once
            h.loop.events.put(item)
        started = time.monotonic()
        status, _ = h.call("GET", "/v1/scheduler/run1")  # goes through the loop thread
        seconds = time.monotonic() - started
        still_queued = h.loop.events.qsize()
    finally:
        h.stop()
    print(f"answered in {seconds * 1000:.1f} ms with {still_queued} of {events} events queued")
    assert status == 400  # no such execution: the loop thread answered
    assert seconds < 2.0, seconds
    assert still_queued > events // 3, still_queued  # it did not wait its turn behind them


def raw_request(port: int, head: str) -> bytes:
    """Send request headers only and return what the server answers before any body."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(head.encode())
        reply = b""
        while not reply.rstrip().endswith(b"}"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
    return reply


def test_each_route_body_limit_is_applied_before_the_body_is_read(rest) -> None:
    h, port = rest
    small = h.api.max_body_bytes + 1  # fine for a task registration, too much for a DAG
    task = raw_request(
        port, f"POST /v1//scheduler/x/task/1 HTTP/1.1\r\nHost: x\r\nContent-Length: {small}\r\n\r\n"
    )
    assert task == b""  # no 413: it waited for the body, until the request deadline cut it off
    dag = raw_request(
        port,
        f"POST /v1/scheduler/x/DAG/edges HTTP/1.1\r\nHost: x\r\nContent-Length: {small}\r\n\r\n",
    )
    head, _, body = dag.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), dag
    assert str(h.api.max_body_bytes) in json.loads(body)["error"]
    chunked = raw_request(
        port,
        "POST /v1/scheduler/x/DAG/edges HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        + f"{small:x}\r\n"
        + "a" * small
        + "\r\n",
    )
    assert chunked.startswith(b"HTTP/1.1 413"), chunked[:200]
