"""Informer logic without a server: the pure diff, event normalisation, and the thread's
reaction to 410, errors and malformed events (driven by a scripted fake source)."""

from __future__ import annotations

import queue
import random
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from scheduler.kube import errors, informer, watchcache


def pod(name: str, rv: str, uid: str | None = None, ns: str = "ns", **spec: Any) -> dict:
    return {
        "metadata": {
            "name": name,
            "namespace": ns,
            "uid": uid or f"uid-{name}",
            "resourceVersion": rv,
        },
        "spec": dict(spec),
    }


def names(events: list[tuple[str, dict]]) -> list[tuple[str, str]]:
    return [(t, o["metadata"]["name"]) for t, o in events]


# --- diff_relist -----------------------------------------------------------------------------


def test_diff_emits_deletes_first_then_adds_and_modifications() -> None:
    cache = {"ns/a": pod("a", "1"), "ns/b": pod("b", "2"), "ns/c": pod("c", "3")}
    fresh = [pod("a", "1"), pod("c", "7"), pod("d", "8")]
    new_cache, events = watchcache.diff_relist(cache, fresh)
    assert names(events) == [("DELETED", "b"), ("MODIFIED", "c"), ("ADDED", "d")]
    assert set(new_cache) == {"ns/a", "ns/c", "ns/d"}
    # The synthetic DELETED carries the last known state.
    assert events[0][1] is cache["ns/b"]


def test_diff_uid_change_is_delete_then_add() -> None:
    old = pod("a", "1", uid="u1")
    new = pod("a", "5", uid="u2")
    _, events = watchcache.diff_relist({"ns/a": old}, [new])
    assert events == [("DELETED", old), ("ADDED", new)]


def test_diff_of_identical_state_is_silent() -> None:
    cache = {
        "ns/a": pod("a", "1"),
        "b": {"metadata": {"name": "b", "uid": "n", "resourceVersion": "2"}},
    }
    _, events = watchcache.diff_relist(cache, list(cache.values()))
    assert events == []


def test_diff_respects_keep_and_skips_nameless_items() -> None:
    cache = {"ns/a": pod("a", "1", schedulerName="ours")}
    fresh = [
        pod("a", "2", schedulerName="theirs"),
        {"metadata": {}},
        pod("b", "3", schedulerName="ours"),
    ]
    new_cache, events = watchcache.diff_relist(
        cache, fresh, keep=lambda o: o["spec"].get("schedulerName") == "ours"
    )
    assert names(events) == [("DELETED", "a"), ("ADDED", "b")]
    assert set(new_cache) == {"ns/b"}


def test_first_list_is_all_added() -> None:
    _, events = watchcache.diff_relist({}, [pod("a", "1"), pod("b", "2")])
    assert names(events) == [("ADDED", "a"), ("ADDED", "b")]


# --- apply_watch_event ---------------------------------------------------------------------


def test_watch_types_are_normalised_against_the_cache() -> None:
    cache: dict[str, dict] = {}
    assert names(watchcache.apply_watch_event(cache, "MODIFIED", pod("a", "1"))) == [("ADDED", "a")]
    assert names(watchcache.apply_watch_event(cache, "ADDED", pod("a", "2"))) == [("MODIFIED", "a")]
    assert names(watchcache.apply_watch_event(cache, "DELETED", pod("a", "3"))) == [
        ("DELETED", "a")
    ]
    assert cache == {}


def test_watch_recreate_with_new_uid_yields_delete_then_add() -> None:
    cache = {"ns/a": pod("a", "1", uid="u1")}
    events = watchcache.apply_watch_event(cache, "ADDED", pod("a", "9", uid="u2"))
    assert [(t, o["metadata"]["uid"]) for t, o in events] == [("DELETED", "u1"), ("ADDED", "u2")]
    assert cache["ns/a"]["metadata"]["uid"] == "u2"


def test_watch_object_leaving_the_filter_is_deleted() -> None:
    keep = lambda o: not o["spec"].get("nodeName")  # noqa: E731
    cache: dict[str, dict] = {}
    watchcache.apply_watch_event(cache, "ADDED", pod("a", "1"), keep=keep)
    events = watchcache.apply_watch_event(
        cache, "MODIFIED", pod("a", "2", nodeName="n1"), keep=keep
    )
    assert names(events) == [("DELETED", "a")]
    assert (
        watchcache.apply_watch_event(cache, "MODIFIED", pod("b", "3", nodeName="n"), keep=keep)
        == []
    )
    assert (
        watchcache.apply_watch_event(cache, "DELETED", pod("b", "4", nodeName="n"), keep=keep) == []
    )


def test_watch_event_without_name_raises_value_error() -> None:
    with pytest.raises(ValueError):
        watchcache.apply_watch_event({}, "ADDED", {"metadata": {}})


def test_full_jitter_backoff_is_bounded() -> None:
    rng = random.Random(7)
    for failures in range(1, 40):
        delay = watchcache.full_jitter_backoff(failures, base_s=0.5, cap_s=30.0, rng=rng)
        assert 0.0 <= delay <= min(30.0, 0.5 * 2 ** (failures - 1))
    assert watchcache.full_jitter_backoff(0, base_s=0.5, cap_s=30.0, rng=rng) == 0.0


# --- the thread, with a scripted source ------------------------------------------------------


class FakeStream:
    def __init__(self, events: list[Any], then: BaseException | None, hold: bool) -> None:
        self._events = events
        self._then = then
        self._hold = hold
        self._closed = threading.Event()

    def __iter__(self) -> Iterator[dict]:
        yield from self._events
        if self._then is not None:
            raise self._then
        if self._hold:
            self._closed.wait(10)

    def close(self) -> None:
        self._closed.set()


class ScriptedSource:
    """Each list/watch call pops the next scripted step."""

    def __init__(self, lists: list[Any], watches: list[Any]) -> None:
        self.lists = lists
        self.watches = watches
        self.watch_versions: list[str] = []
        self.exhausted = threading.Event()

    current: dict[str, dict] = {}

    def get_object(self, kind: str, name: str, *, namespace: str | None = None) -> dict | None:
        return self.current.get(name)

    def list_objects(self, kind: str, **kwargs: Any) -> tuple[list[dict], str]:
        step = self.lists.pop(0)
        if isinstance(step, BaseException):
            raise step
        return step

    def open_watch(self, kind: str, *, resource_version: str, **kwargs: Any) -> FakeStream:
        self.watch_versions.append(resource_version)
        if not self.watches:
            self.exhausted.set()
            return FakeStream([], None, hold=True)
        step = self.watches.pop(0)
        if isinstance(step, BaseException):
            raise step
        events, then = step
        return FakeStream(events, then, hold=False)


def drain(q: queue.Queue) -> list[tuple[str, str, str]]:
    out = []
    while True:
        try:
            name, event_type, obj = q.get_nowait()
        except queue.Empty:
            return out
        out.append((name, event_type, obj["metadata"]["name"]))


def run_informer(source: ScriptedSource, **kwargs: Any) -> tuple[informer.Informer, list]:
    q: queue.Queue = queue.Queue()
    inf = informer.Informer(
        source,
        informer.WatchSpec(name="pods", kind="pods"),
        q,
        backoff_base_s=0.01,
        backoff_cap_s=0.02,
        rng=random.Random(1),
        **kwargs,
    )
    inf.start()
    try:
        assert source.exhausted.wait(5), "script not consumed"
        assert inf.has_synced.is_set()
    finally:
        inf.stop()
    assert not inf.alive
    return inf, drain(q)


def test_gone_relists_and_emits_synthetic_delete() -> None:
    source = ScriptedSource(
        lists=[([pod("a", "1"), pod("b", "2")], "10"), ([pod("a", "11"), pod("c", "12")], "12")],
        watches=[
            (
                [{"type": "MODIFIED", "object": pod("a", "11")}],
                errors.GoneError("expired", http_status=410),
            ),
        ],
    )
    inf, events = run_informer(source)
    assert events == [
        ("pods", "ADDED", "a"),
        ("pods", "ADDED", "b"),
        ("pods", "MODIFIED", "a"),
        ("pods", "DELETED", "b"),  # vanished during the gap: synthetic
        ("pods", "ADDED", "c"),  # appeared during the gap; "a" is unchanged (same rv)
    ]
    assert (inf.list_count, inf.relist_count, inf.resync_count) == (2, 1, 1)
    assert source.watch_versions == ["10", "12"]


def test_bookmarks_and_clean_ends_rewatch_from_the_latest_version() -> None:
    bookmark = {
        "type": "BOOKMARK",
        "object": {"kind": "Pod", "metadata": {"resourceVersion": "50"}},
    }
    source = ScriptedSource(
        lists=[([pod("a", "1")], "10")],
        watches=[([{"type": "ADDED", "object": pod("b", "20")}, bookmark], None)],
    )
    inf, events = run_informer(source)
    assert events == [("pods", "ADDED", "a"), ("pods", "ADDED", "b")]
    assert source.watch_versions == ["10", "50"]
    assert inf.relist_count == 0


def test_malformed_events_are_skipped_and_the_thread_survives() -> None:
    source = ScriptedSource(
        lists=[([], "1")],
        watches=[
            (
                [
                    "not a dict",
                    {"type": "ADDED"},
                    {"type": "WHAT", "object": pod("x", "2")},
                    {"type": "ADDED", "object": {"metadata": {"namespace": "ns"}}},
                    {"type": "ADDED", "object": pod("ok", "3")},
                ],
                None,
            )
        ],
    )
    inf, events = run_informer(source)
    assert events == [("pods", "ADDED", "ok")]
    assert inf.malformed_count == 4
    assert inf.resource_version == "3"


def test_errors_back_off_and_retry_list_and_watch() -> None:
    refused = errors.ApiConnectionError("refused")
    source = ScriptedSource(
        lists=[refused, errors.ServerError("boom", http_status=500), ([pod("a", "1")], "5")],
        watches=[refused, ([{"type": "ADDED", "object": pod("b", "6")}], None)],
    )
    inf, events = run_informer(source)
    assert events == [("pods", "ADDED", "a"), ("pods", "ADDED", "b")]
    assert inf.error_count == 3
    assert inf.relist_count == 0  # errors after the LIST re-watch; they do not re-list
    assert source.watch_versions == ["5", "5", "6"]


def test_every_watch_restart_is_reported_with_its_reason() -> None:
    refused = errors.ApiConnectionError("refused")
    source = ScriptedSource(
        lists=[refused, ([pod("a", "1")], "5"), ([pod("a", "1")], "7")],
        watches=[
            ([{"type": "ADDED", "object": pod("b", "6")}], errors.GoneError("x", http_status=410)),
            ([{"type": "ADDED", "object": pod("c", "8")}], None),
            refused,
        ],
    )
    reasons: list[str] = []
    inf, _ = run_informer(source, on_restart=reasons.append)
    # a stop while the last watch is open is not a restart
    assert reasons == ["error", "expired", "timeout", "error"]
    assert (inf.error_count, inf.resync_count) == (2, 1)


def test_a_failing_restart_callback_does_not_stop_the_informer() -> None:
    source = ScriptedSource(
        lists=[([pod("a", "1")], "5")],
        watches=[([{"type": "ADDED", "object": pod("b", "6")}], None)],
    )

    def broken(reason: str) -> None:
        raise RuntimeError(reason)

    _, events = run_informer(source, on_restart=broken)
    assert events == [("pods", "ADDED", "a"), ("pods", "ADDED", "b")]


def test_watch_error_event_with_other_code_backs_off_without_relisting() -> None:
    source = ScriptedSource(
        lists=[([pod("a", "1")], "5")],
        watches=[([], errors.ServerError("internal", http_status=500)), ([], None)],
    )
    inf, _ = run_informer(source)
    assert inf.error_count == 1
    assert inf.list_count == 1


def test_stop_unblocks_a_full_queue() -> None:
    source = ScriptedSource(lists=[([pod(f"p{i}", str(i)) for i in range(5)], "9")], watches=[])
    q: queue.Queue = queue.Queue(maxsize=1)
    inf = informer.Informer(source, informer.WatchSpec(name="pods", kind="pods"), q)
    inf.start()
    time.sleep(0.2)
    inf.stop(timeout=3)
    assert not inf.alive


# --- metrics poller --------------------------------------------------------------------------


class FlakyMetrics:
    def __init__(self, results: list[Any]) -> None:
        self.results = results

    def node_metrics(self) -> list[dict] | None:
        return self.results.pop(0) if self.results else None

    def pod_metrics(self, namespace: str | None = None, *, label_selector: str | None = None):
        return [{"metadata": {"name": "p"}}]


def test_metrics_poller_degrades_and_recovers() -> None:
    q: queue.Queue = queue.Queue()
    items = [{"metadata": {"name": "n1"}, "usage": {"cpu": "1m", "memory": "1Ki"}}]
    poller = informer.MetricsPoller(
        FlakyMetrics([None, None, items, None, None]), q, pods=True, stale_after_failures=2
    )
    results = [poller.poll_once() for _ in range(5)]
    assert results == [False, False, True, False, False]
    pushed = []
    while not q.empty():
        pushed.append(q.get_nowait())
    assert pushed == [
        ("node-metrics", "SNAPSHOT", []),  # two failures in a row: usage unknown
        ("node-metrics", "SNAPSHOT", items),
        ("pod-metrics", "SNAPSHOT", [{"metadata": {"name": "p"}}]),
        ("node-metrics", "SNAPSHOT", []),
    ]
    assert poller.failures == 4


def test_refetch_on_leave_reports_the_current_state() -> None:
    finished = pod("done", "30", phase="Succeeded")
    source = ScriptedSource(
        lists=[([pod("done", "1"), pod("gone", "2"), pod("reborn", "3", uid="old")], "10")],
        watches=[
            (
                [
                    {"type": "DELETED", "object": pod("done", "20")},  # left the selection
                    {"type": "DELETED", "object": pod("gone", "21")},  # really deleted
                    {"type": "DELETED", "object": pod("reborn", "22", uid="old")},
                ],
                None,
            )
        ],
    )
    source.current = {"done": finished, "reborn": pod("reborn", "40", uid="new")}
    q: queue.Queue = queue.Queue()
    inf = informer.Informer(
        source, informer.WatchSpec(name="pods", kind="pods"), q, refetch_on_leave=True
    )
    inf.start()
    try:
        assert source.exhausted.wait(5)
    finally:
        inf.stop()
    deleted = [obj for _, t, obj in (q.get_nowait() for _ in range(q.qsize())) if t == "DELETED"]
    assert deleted[0] is finished  # the terminal phase is visible
    assert deleted[1]["metadata"]["resourceVersion"] == "21"  # 404: the watch object
    assert deleted[2]["metadata"]["uid"] == "old"  # a new incarnation is not "current"
    assert inf.refetches == 3


def test_scheduler_name_filter() -> None:
    keep = informer.scheduler_name_filter(["wfsched"], prefixes=["wfsched-"])
    assert keep({"spec": {"schedulerName": "wfsched"}})
    assert keep({"spec": {"schedulerName": "wfsched-exec42"}})
    assert not keep({"spec": {"schedulerName": "default-scheduler"}})
    assert not keep({"spec": {}})
    assert not informer.scheduler_name_filter(["a"])({"spec": {"schedulerName": "ab"}})


def test_daemon_informers_wiring() -> None:
    source = ScriptedSource(lists=[], watches=[])
    q: queue.Queue = queue.Queue()
    built = informer.daemon_informers(source, q, scheduler_names=["wfsched"])
    assert [i.name for i in built] == ["pods", "nodes", "pending-pods"]
    assert built[0].spec.field_selector == "status.phase!=Succeeded,status.phase!=Failed"
    assert built[2].spec.field_selector == "spec.nodeName="
    assert not any(i.alive for i in built)


def test_an_arrival_clock_stamps_watch_events_and_leaves_list_events_unstamped() -> None:
    source = ScriptedSource(
        lists=[([pod("a", "1")], "10")],
        watches=[([{"type": "ADDED", "object": pod("b", "20")}], None)],
    )
    ticks = iter(range(100, 200))
    q: queue.Queue = queue.Queue()
    inf = informer.Informer(
        source,
        informer.WatchSpec(name="pods", kind="pods"),
        q,
        rng=random.Random(1),
        arrival_clock=lambda: float(next(ticks)),
    )
    inf.start()
    try:
        assert source.exhausted.wait(5), "script not consumed"
    finally:
        inf.stop()
    items = [q.get_nowait() for _ in range(q.qsize())]
    assert [(i[0], i[1], i[2]["metadata"]["name"]) for i in items] == [
        ("pods", "ADDED", "a"),
        ("pods", "ADDED", "b"),
    ]
    assert all(len(i) == 4 for i in items)
    assert items[0][3] != items[0][3]  # NaN: listed, not delivered by the watch
    assert items[1][3] == 100.0  # the clock read as the watch event came off the stream
