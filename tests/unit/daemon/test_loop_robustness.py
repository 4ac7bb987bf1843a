"""The loop's day-one defects, pinned: an idle standby, growing bind backoff, leadership checked
before every bind, and a cycle that raises without ending the loop.

Fake API only (the real API server runs in tests/integration/test_daemon_leadership.py).
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time

from test_loop import FakeKube, node, pod

from scheduler import registry
from scheduler.core import interfaces, workflow
from scheduler.runtime import loop as loop_mod
from scheduler.runtime import metrics
from scheduler.runtime.settings import Settings


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_loop(kube, *, policies=None, may_bind=lambda: True, clock=None, **settings):
    settings.setdefault("bind_workers", 2)
    return loop_mod.SchedulerLoop(
        settings=Settings(**settings),
        kube=kube,
        policies=policies or registry.parse_strategy("fifo-roundrobin").build(),
        metrics=metrics.Metrics(),
        may_bind=may_bind,
        clock=clock or time.monotonic,
    )


def drain_until(loop, predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        loop._drain()
        time.sleep(0.005)


def thread_cpu_seconds(native_id: int) -> float:
    """User + system CPU time of one thread of this process (Linux /proc)."""
    with open(f"/proc/self/task/{native_id}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_in_thread(loop):
    stop = threading.Event()
    thread = threading.Thread(target=loop.run, args=(stop,), daemon=True)
    thread.start()
    while thread.native_id is None:
        time.sleep(0.001)
    return stop, thread


# --- 1. a standby replica idles ---------------------------------------------------------------


def test_a_standby_loop_blocks_instead_of_spinning():
    kube = FakeKube()
    loop = make_loop(kube, may_bind=lambda: False)
    loop._handle(("nodes", "ADDED", node("n1")))
    loop._handle(("pods", "ADDED", pod("a")))  # work it may not do: it must still idle
    stop, thread = run_in_thread(loop)
    try:
        time.sleep(0.3)
        cpu_before, turns_before = thread_cpu_seconds(thread.native_id), loop.stats.turns
        time.sleep(2.0)
        cpu = thread_cpu_seconds(thread.native_id) - cpu_before
        turns = loop.stats.turns - turns_before
    finally:
        stop.set()
        thread.join(timeout=10)
    assert cpu < 0.2, f"standby loop used {cpu:.2f}s of CPU in 2s"
    assert turns <= 10, f"{turns} loop turns in 2s (about 2 expected: one per idle wait)"
    assert kube.binds == [] and loop.stats.cycles == 0


def test_a_standby_that_becomes_leader_schedules_at_once():
    kube = FakeKube()
    leading = threading.Event()
    loop = make_loop(kube, may_bind=leading.is_set, cycle_interval_s=60)
    loop._handle(("nodes", "ADDED", node("n1")))
    loop._handle(("pods", "ADDED", pod("a")))
    stop, thread = run_in_thread(loop)
    try:
        time.sleep(0.2)
        assert kube.binds == []
        leading.set()
        started = time.monotonic()
        loop.wake()
        while not kube.binds:
            assert time.monotonic() - started < 2, "no bind after leadership was gained"
            time.sleep(0.005)
        elapsed = time.monotonic() - started
    finally:
        stop.set()
        thread.join(timeout=10)
    assert elapsed < 0.3, f"first bind {elapsed:.2f}s after leadership (idle wait is 0.5s)"


# --- 3. bind backoff grows, keeps the place, honours the setting -------------------------------


def test_bind_backoff_grows_to_the_configured_cap_and_the_task_keeps_its_place():
    clock = ManualClock()
    kube = FakeKube()
    loop = make_loop(kube, clock=clock, unschedulable_backoff_s=5.0)
    loop._handle(("nodes", "ADDED", node("n1", cpu="1")))
    loop._handle(("pods", "ADDED", pod("a")))
    loop._handle(("pods", "ADDED", pod("b")))
    key_a = loop.queue.tasks()[0].key
    delays = []
    for failures in range(1, 6):
        kube.fail["a"] = 500
        loop.run_one_cycle()
        drain_until(loop, lambda n=failures: loop.stats.binds_failed >= n)
        assert [t.key.task for t in loop.queue.tasks()] == ["a", "b"]  # its place is kept
        start = clock.now
        while loop.queue.backing_off(key_a, clock.now):
            clock.now += 0.25
        delays.append(clock.now - start)
    loop.shutdown()
    assert delays == [1.0, 2.0, 4.0, 5.0, 5.0]
    # b (1 CPU) was placed behind a's failed attempts only while a was not holding the node.
    assert ("a", "n1") not in kube.binds


def test_the_backoff_setting_is_read():
    loop = make_loop(FakeKube(), unschedulable_backoff_s=0.5)
    loop._handle(("pods", "ADDED", pod("a")))
    key_a = loop.queue.tasks()[0].key
    assert [loop.queue.backoff(key_a, now=0.0) for _ in range(3)] == [0.5, 0.5, 0.5]


# --- 4. leadership is checked before every bind; the bind backlog is bounded --------------------


class SlowKube(FakeKube):
    """Each Binding takes a little while, so thousands of binds queue up."""

    def __init__(self, *, delay_s: float) -> None:
        super().__init__()
        self.delay_s = delay_s
        self.sent_at: list[float] = []

    def bind(self, namespace, name, uid, node):
        with self.lock:
            self.sent_at.append(time.monotonic())
        time.sleep(self.delay_s)
        super().bind(namespace, name, uid, node)


def test_no_binding_is_sent_after_leadership_is_lost_and_the_backlog_returns_to_the_queue():
    kube = SlowKube(delay_s=0.002)
    leading = threading.Event()
    leading.set()
    loop = make_loop(kube, may_bind=leading.is_set, bind_workers=4)
    loop._handle(("nodes", "ADDED", node("n1", cpu="10000", memory="10000Gi")))
    for i in range(3000):
        loop._handle(("pods", "ADDED", pod(f"p{i}", cpu="1")))
    loop.run_one_cycle()
    # The cycle hands at most max_in_flight_binds binds to the workers.
    assert loop.queue.binding_count == loop.max_in_flight_binds == 64
    assert len(loop.queue) == 3000 - 64
    while len(kube.sent_at) < 10:
        time.sleep(0.001)
    leading.clear()
    lost_at = time.monotonic()
    drain_until(loop, lambda: loop.queue.binding_count == 0)
    loop.shutdown()
    late = [t for t in kube.sent_at if t > lost_at + 0.001]
    assert late == [], f"{len(late)} Bindings sent after leadership was lost"
    assert loop.stats.binds_abandoned > 0
    assert loop.stats.binds_ok + loop.stats.binds_abandoned == 64
    # Every task not bound is back in the queue, schedulable at once, nothing assumed.
    assert len(loop.queue) == 3000 - loop.stats.binds_ok
    assert not any(loop.queue.backing_off(t.key, loop.clock()) for t in loop.queue.tasks())
    assumed_cpu = loop.cache.snapshot().requested_on("n1").cpu_millis
    assert assumed_cpu == 1000 * loop.stats.binds_ok
    assert loop.run_one_cycle() is None  # a follower's cycle places nothing...
    assert not loop.state.cycle_due(now=loop.clock(), leading=False)  # ...nor would run()


def test_cycles_refill_the_bind_slots_as_outcomes_arrive():
    kube = SlowKube(delay_s=0.0005)
    loop = make_loop(kube, bind_workers=2)
    for n in range(2):  # 110 pods fit on one fake node
        loop._handle(("nodes", "ADDED", node(f"n{n}", cpu="1000", memory="1000Gi")))
    for i in range(200):
        loop._handle(("pods", "ADDED", pod(f"p{i}", cpu="1")))
    stop, thread = run_in_thread(loop)
    try:
        deadline = time.monotonic() + 10
        while loop.stats.binds_ok < 200:
            assert time.monotonic() < deadline, f"only {loop.stats.binds_ok} bound"
            assert loop.queue.binding_count <= loop.max_in_flight_binds
            time.sleep(0.002)
    finally:
        stop.set()
        thread.join(timeout=10)
    assert len(kube.binds) == 200


# --- 6. a cycle that raises does not end the loop ----------------------------------------------


@dataclasses.dataclass
class PoisonedRanking:
    """FIFO, except that it raises when a task named ``poison`` is in the queue."""

    inner: interfaces.RankingPolicy
    poison: str = "poison"
    name: str = "poisoned"

    def rank(self, tasks, view, ctx):
        if any(t.key.task == self.poison for t in tasks):
            raise ZeroDivisionError("the policy cannot rank this task")
        return self.inner.rank(tasks, view, ctx)


def poisoned_policies():
    base = registry.parse_strategy("fifo-roundrobin").build()
    return dataclasses.replace(base, ranking=PoisonedRanking(base.ranking))


def test_the_task_that_breaks_a_cycle_is_set_aside_with_an_event_and_the_rest_is_scheduled():
    clock = ManualClock()
    kube = FakeKube()
    loop = make_loop(kube, policies=poisoned_policies(), clock=clock)
    loop._handle(("nodes", "ADDED", node("n1", cpu="16")))
    for name in ("a", "b", "poison", "c", "d"):
        loop._handle(("pods", "ADDED", pod(name)))
    assert loop.run_one_cycle() is None  # raised inside, handled
    assert loop.stats.cycle_failures == 1
    assert loop.metrics.cycle_errors.labels(action="task_set_aside")._value.get() == 1
    assert [t.key.task for t in loop.queue.tasks()] == ["a", "b", "c", "d"]
    loop.run_one_cycle()
    drain_until(loop, lambda: loop.stats.binds_ok == 4)
    time.sleep(0.05)
    warned = [e for e in kube.events if e["reason"] == "FailedScheduling"]
    assert [e["pod_name"] for e in warned] == ["poison"]
    assert "ZeroDivisionError" in warned[0]["note"] and "set aside for 1s" in warned[0]["note"]
    # After its delay it is tried again, fails again, and waits twice as long.
    clock.now += 1.0
    loop.state.tick(now=clock.now, leading=True)
    assert [t.key.task for t in loop.queue.tasks()] == ["poison"]
    loop.run_one_cycle()
    assert loop.queue.tasks() == ()
    drain_until(loop, lambda: any("set aside for 2s" in e["note"] for e in kube.events))
    # Deleting the pod forgets it.
    loop._handle(("pods", "DELETED", pod("poison")))
    assert loop.state.pods == {}
    loop.shutdown()


class AlwaysFails:
    name = "always-fails"

    def rank(self, tasks, view, ctx):
        raise RuntimeError("broken policy")


def test_a_policy_that_always_raises_leaves_the_loop_alive_and_backs_off():
    base = registry.parse_strategy("fifo-roundrobin").build()
    loop = make_loop(FakeKube(), policies=dataclasses.replace(base, ranking=AlwaysFails()))
    loop._handle(("nodes", "ADDED", node("n1")))
    loop._handle(("pods", "ADDED", pod("a")))
    loop._handle(("pods", "ADDED", pod("b")))
    stop, thread = run_in_thread(loop)
    try:
        time.sleep(2.5)
        assert thread.is_alive()
    finally:
        stop.set()
        thread.join(timeout=10)
    retried = loop.metrics.cycle_errors.labels(action="retried")._value.get()
    # Retries back off (1 s, 2 s, ...): a handful of cycles in 2.5 s, not one per turn.
    assert 1 <= retried <= 3
    assert loop.metrics.cycle_errors.labels(action="task_set_aside")._value.get() == 0
    assert len(loop.queue) == 2  # nothing was set aside: no single task is to blame


def test_isolation_trials_do_not_bind_anything():
    kube = FakeKube()
    loop = make_loop(kube, policies=poisoned_policies())
    loop._handle(("nodes", "ADDED", node("n1", cpu="16")))
    for name in ("poison", "a"):
        loop._handle(("pods", "ADDED", pod(name)))
    loop.run_one_cycle()
    time.sleep(0.05)
    loop._drain()
    assert kube.binds == [] and loop.queue.binding_count == 0
    assert [t.key for t in loop.queue.tasks()] == [workflow.TaskKey("ns/", "a")] or [
        t.key.task for t in loop.queue.tasks()
    ] == ["a"]


def test_a_defect_escaping_the_state_machine_does_not_end_the_loop():
    kube = FakeKube()
    loop = make_loop(kube)
    loop._handle(("nodes", "ADDED", node("n1")))
    loop._handle(("pods", "ADDED", pod("a")))
    calls = []

    def broken_cycle(*, now, leading):
        calls.append(now)
        raise RuntimeError("a defect in carrying out decisions")

    loop.state.cycle = broken_cycle
    stop, thread = run_in_thread(loop)
    try:
        deadline = time.monotonic() + 5
        while not calls:
            assert time.monotonic() < deadline, "no cycle ran"
            time.sleep(0.01)
        time.sleep(0.1)
        assert thread.is_alive()
    finally:
        stop.set()
        thread.join(timeout=10)
    assert loop.stats.handler_errors >= 1


def test_pending_gauges_are_refreshed_once_per_interval_and_after_a_change():
    """The gauges cost a pass over the queue: not on every cycle, yet never left stale."""
    clock = ManualClock()
    loop = make_loop(FakeKube(), clock=clock)
    refreshed: list[float] = []
    loop.state.update_queue_metrics = lambda *, now, wall_now: refreshed.append(now)
    loop._handle(("pods", "ADDED", pod("p0", cpu="1")))  # no node: stays pending
    loop.run_one_cycle()
    for _ in range(5):  # more cycles within the interval: no pass over the queue
        clock.now += 0.1
        loop._handle(("pods", "ADDED", pod(f"p{len(refreshed)}-{clock.now}", cpu="1")))
        loop.run_one_cycle()
    assert refreshed == [1000.0]
    clock.now = 1000.0 + loop_mod.QUEUE_METRICS_INTERVAL_S
    loop._refresh_queue_metrics()  # what every turn of run() does
    assert refreshed == [1000.0, clock.now]
    clock.now += 5 * loop_mod.QUEUE_METRICS_INTERVAL_S
    loop._refresh_queue_metrics()  # nothing changed since: no refresh
    assert len(refreshed) == 2
    del loop.state.update_queue_metrics  # the real one again
    loop._handle(("pods", "ADDED", pod("p-last", cpu="1")))
    loop._refresh_queue_metrics()
    queued = {"active", "backoff", "unschedulable", "gated"}
    samples = loop.metrics.pending_tasks.collect()[0].samples
    assert sum(s.value for s in samples if s.labels["queue"] in queued) == 7
