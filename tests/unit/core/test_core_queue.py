from scheduler.core import decisions, queue, workflow
from tests.unit.core import core_builders as b


def key(task_id: str) -> workflow.TaskKey:
    return workflow.TaskKey(b.RUN, task_id)


def test_persistent_order_new_tasks_last_and_update_in_place() -> None:
    q = b.queue_of([b.task("a"), b.task("b", submission=1)])
    assert q.add(b.task("c", submission=2)) is True
    assert q.add(b.task("a", size=5)) is False
    assert [t.key.task for t in q.tasks()] == ["a", "b", "c"]
    assert q.get(key("a")).input_size == 5  # type: ignore[union-attr]
    q.reorder([key("c"), key("a"), key("gone")])
    assert [t.key.task for t in q] == ["c", "a", "b"]
    assert q.remove(key("a")) is not None and q.remove(key("a")) is None
    assert len(q) == 2 and key("c") in q and key("a") not in q


def test_backoff_doubles_up_to_the_cap_and_clears() -> None:
    q = queue.SchedulingQueue(initial_backoff=1.0, max_backoff=5.0)
    q.add(b.task("a"))
    assert [q.backoff(key("a"), now=0.0) for _ in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert q.backing_off(key("a"), 4.9) and not q.backing_off(key("a"), 5.0)
    q.clear_backoff(key("a"))
    assert not q.backing_off(key("a"), 0.0)
    assert q.backoff(key("missing"), now=3.0) == 3.0


def test_apply_stores_order_drops_bound_and_remembers_reasons() -> None:
    q = b.queue_of([b.task("a"), b.task("b", submission=1), b.task("c", submission=2)])
    result = decisions.CycleResult(
        cycle_id=1,
        order=(key("c"), key("b"), key("a")),
        decisions=(
            decisions.Bind(
                cycle_id=1, task=key("b"), pod=None, node="n", request=b.task("b").request
            ),
            decisions.Reject(
                cycle_id=1, task=key("a"), code=decisions.RejectCode.UNSCHEDULABLE, reason="r"
            ),
            decisions.MarkUnschedulable(cycle_id=1, task=key("a"), pod=None, reason="r", at=5.0),
        ),
    )
    q.apply(result)
    assert [t.key.task for t in q] == ["c", "a"]
    assert q.binding(key("b")) and len(q) == 2 and q.binding_count == 1
    assert q.bind_succeeded(key("b")) is not None and key("b") not in q
    assert q.reported_reason(key("a")) == "r" and q.reported_reason(key("c")) is None
    # "r" was reported at 5 s: the same reason is never due again, another one after 10 s.
    assert q.report_due(key("c"), "r", now=0.0, interval_s=10.0)
    assert not q.report_due(key("a"), "r", now=100.0, interval_s=10.0)
    assert not q.report_due(key("a"), "other", now=14.9, interval_s=10.0)
    assert q.report_due(key("a"), "other", now=15.0, interval_s=10.0)
    assert q.report_due(key("a"), "other", now=5.0, interval_s=0.0)


def _bind_decision(task_id: str) -> decisions.CycleResult:
    return decisions.CycleResult(
        cycle_id=1,
        order=(key("a"), key("b"), key("c")),
        decisions=(
            decisions.Bind(
                cycle_id=1, task=key(task_id), pod=None, node="n", request=b.task("a").request
            ),
        ),
    )


def test_a_failed_bind_keeps_the_place_and_the_backoff_grows_to_the_cap() -> None:
    q = queue.SchedulingQueue(initial_backoff=1.0, max_backoff=5.0)
    for i, name in enumerate("abc"):
        q.add(b.task(name, submission=i))
    eligible = []
    now = 0.0
    for _ in range(5):
        q.apply(_bind_decision("a"))
        assert [t.key.task for t in q] == ["b", "c"]  # hidden while its bind is in flight
        eligible.append(q.bind_failed(key("a"), now=now) - now)
        assert [t.key.task for t in q] == ["a", "b", "c"]  # back at its old place
        now += 100.0
    assert eligible == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_an_abandoned_bind_costs_no_backoff() -> None:
    q = queue.SchedulingQueue()
    q.add(b.task("a"))
    q.apply(_bind_decision("a"))
    assert len(q) == 0 and q.binding_count == 1
    q.bind_abandoned(key("a"))
    assert len(q) == 1 and q.binding_count == 0 and not q.backing_off(key("a"), 0.0)
    q.bind_abandoned(key("a"))  # idempotent
    assert q.binding_count == 0


def test_removing_a_task_being_bound_keeps_the_counts_right() -> None:
    q = queue.SchedulingQueue()
    q.add(b.task("a"))
    q.add(b.task("b", submission=1))
    q.apply(_bind_decision("a"))
    q.remove(key("a"))
    assert q.binding_count == 0 and len(q) == 1
    q.bind_failed(key("a"), now=0.0)  # outcome of a pod deleted meanwhile: nothing to do
    assert [t.key.task for t in q] == ["b"]


def test_waiting_counts_match_the_per_task_questions_and_leave_out_binds() -> None:
    q = queue.SchedulingQueue(initial_backoff=2.0, max_backoff=8.0)
    for i, name in enumerate("abcde"):
        q.add(b.task(name, submission=i, gates=("kueue",) if name in "ae" else ()))
    q.apply(
        decisions.CycleResult(
            cycle_id=1,
            order=(key("e"), key("d"), key("c"), key("b"), key("a")),
            decisions=(
                decisions.Bind(
                    cycle_id=1, task=key("d"), pod=None, node="n", request=b.task("d").request
                ),
                decisions.MarkUnschedulable(
                    cycle_id=1, task=key("c"), pod=None, reason="full", at=0.0
                ),
                decisions.MarkUnschedulable(
                    cycle_id=1, task=key("e"), pod=None, reason="gate", at=0.0
                ),
            ),
        )
    )
    q.backoff(key("c"), now=10.0)
    q.backoff(key("b"), now=10.0)
    assert q.binding(key("d"))
    for now in (9.0, 11.0, 13.0):
        waiting = q.tasks()  # d, being bound, is not among them
        expected = (
            sum(1 for t in waiting if t.gated),
            sum(1 for t in waiting if q.backing_off(t.key, now)),
            sum(1 for t in waiting if q.reported_reason(t.key) is not None),
        )
        assert q.waiting_counts(now) == expected
    assert sorted(t.key.task for t in q.waiting_tasks()) == ["a", "b", "c", "e"]
    assert q.waiting_counts(11.0) == (2, 2, 2)
    assert q.waiting_counts(13.0) == (2, 0, 2)


def _reasons(
    q: queue.SchedulingQueue,
    *marks: tuple[str, str, float],
    rejects: tuple[tuple[str, str], ...] = (),
    unreported: tuple[tuple[str, str], ...] = (),
    binds: tuple[str, ...] = (),
) -> None:
    made: list[decisions.Decision] = [
        decisions.Bind(cycle_id=1, task=key(t), pod=None, node="n", request=b.task(t).request)
        for t in binds
    ]
    for task_id, reason in rejects:
        made.append(
            decisions.Reject(
                cycle_id=1,
                task=key(task_id),
                code=decisions.RejectCode.UNSCHEDULABLE,
                reason=reason,
            )
        )
    for task_id, reason, at in marks:
        made.append(
            decisions.MarkUnschedulable(
                cycle_id=1, task=key(task_id), pod=None, reason=reason, at=at
            )
        )
    q.apply(
        decisions.CycleResult(
            cycle_id=1,
            order=tuple(t.key for t in q.tasks()),
            decisions=tuple(made),
            unreported=tuple((key(t), r) for t, r in unreported),
        )
    )


def test_a_reason_kept_unreported_falls_due_until_reported_or_gone() -> None:
    q = b.queue_of([b.task("a"), b.task("b", submission=1), b.task("c", submission=2)])
    _reasons(q, ("a", "r1", 0.0), ("b", "r1", 0.0), ("c", "r1", 0.0))
    _reasons(q, unreported=(("a", "r2"), ("b", "r2"), ("c", "r2")))
    assert list(q.due_reports(9.0, 10.0)) == []
    assert [(t.key.task, r) for t, r in q.due_reports(10.0, 10.0)] == [
        ("a", "r2"),
        ("b", "r2"),
        ("c", "r2"),
    ]
    # a fails again as reported, b's new reason is reported, c is being bound.
    _reasons(q, ("b", "r2", 10.0), rejects=(("a", "r1"),), binds=("c",))
    assert list(q.due_reports(100.0, 10.0)) == []
    assert q.bind_failed(key("c"), now=100.0) > 100.0  # back in the queue, still unreported
    assert [(t.key.task, r) for t, r in q.due_reports(100.0, 10.0)] == [("c", "r2")]
    q.remove(key("c"))
    assert list(q.due_reports(100.0, 10.0)) == []
