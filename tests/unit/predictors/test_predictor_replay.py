"""The replay protocol and its metrics on a tiny hand-made trace (memory-evaluation.md 12).

One process, request 1024 MiB, three tasks:

    task  start  complete  runtime  peak     const0 (max observed) predicts  allocation
    1     0 h    1 h       1 h      200 MiB  nothing (cold start)            1024 MiB
    2     1 h    2 h       1 h      150 MiB  200 MiB (task 1 done at 1 h)    200 MiB
    3     1 h    1.5 h     0.5 h    300 MiB  200 MiB                         200 -> OOM -> 1024

usage = 200 + 150 + 300 x 0.5 = 500 MiB·h; over = 824 + 50 + 724 x 0.5 = 1236 MiB·h;
under = 200 x 0.5 = 100 MiB·h; MAQ = 500 / 1836; wastage = 1336 MiB·h = 1.400897536 GB·h.
"""

import predictor_tiny_trace
import pytest

from predictors import base, replay, traces
from scheduler import registry

MIB = base.MIB
HOUR = predictor_tiny_trace.HOUR
HEADER = predictor_tiny_trace.HEADER
RAW_TRACE = predictor_tiny_trace.RAW_TRACE
HUMAN_TRACE = predictor_tiny_trace.HUMAN_TRACE
WASTAGE_GBH = predictor_tiny_trace.WASTAGE_GBH


def max_observed() -> base.MemoryPredictor:
    return registry.parse_predictor("const0").make()


@pytest.mark.parametrize("text", [RAW_TRACE, HUMAN_TRACE])
def test_hand_computed_trace(text: str) -> None:
    run = traces.parse_nextflow_trace(text, name="tiny/trace-1")
    result = replay.replay_run(run, max_observed)
    by_task = {o.task.order: o for o in result.outcomes}
    assert by_task[1].prediction is None and by_task[1].allocation == 1024 * MIB
    assert by_task[2].prediction == 200 * MIB and by_task[2].failed == ()
    assert by_task[3].failed == (200 * MIB,) and by_task[3].final == 1024 * MIB
    m = result.metrics.as_dict()
    assert m["maq"] == pytest.approx(500 / 1836)
    assert m["wastage_gbh"] == pytest.approx(WASTAGE_GBH)
    assert m["over_gbh"] == pytest.approx(1236 * MIB / 1e9)
    assert m["under_gbh"] == pytest.approx(100 * MIB / 1e9)
    assert (m["failures"], m["tasks_with_failures"], m["tasks"]) == (1, 1, 3)
    assert m["cold_start_share"] == pytest.approx(1 / 3)
    assert m["excluded"] == 0


def test_user_default_and_submit_decision() -> None:
    run = traces.parse_nextflow_trace(RAW_TRACE, name="tiny")
    user = replay.replay_run(run, None).metrics
    assert user.maq == pytest.approx(500 / 2560)  # over = 824 + 874 + 362 MiB·h
    assert user.failed_attempts == 0 and user.cold_starts == 3
    # Decided at submission (time 0) nothing is known yet: same as the user default.
    strict = replay.replay_run(run, max_observed, replay.Options(decision=replay.Decision.SUBMIT))
    assert strict.metrics == user


@pytest.mark.parametrize(
    ("first", "peak", "retry", "failed", "final"),
    [
        (100, 50, replay.Retry.USER, (), 100),
        (100, 300, replay.Retry.USER, (100,), 1024),
        (1024, 3000, replay.Retry.USER, (1024, 2048), 4096),  # the request itself is too small
        (100, 3000, replay.Retry.USER, (100, 1024, 2048), 4096),
        (100, 300, replay.Retry.DOUBLE, (100, 200), 400),
    ],
)
def test_attempts(
    first: int, peak: int, retry: replay.Retry, failed: tuple[int, ...], final: int
) -> None:
    assert replay.attempts(first, peak=peak, request=1024, retry=retry) == (failed, final)


def test_failure_feedback_reaches_the_predictor_before_the_next_decision() -> None:
    # Task 2 is OOM-killed at 1 h + 0.5 h; task 3 starts at 1.6 h, before task 2 completes.
    rows = [
        HEADER,
        f"1;a;P (1);COMPLETED;P;{4096 * MIB};1;0;0;{HOUR};{HOUR};{200 * MIB};1",
        f"2;b;P (2);COMPLETED;P;{4096 * MIB};1;0;{HOUR};{3 * HOUR};{HOUR // 2};{900 * MIB};1",
        f"3;c;P (3);COMPLETED;P;{4096 * MIB};1;0;{HOUR * 8 // 5};{4 * HOUR};{HOUR};{100 * MIB};1",
    ]
    run = traces.parse_nextflow_trace("\n".join(rows), name="t")
    with_feedback = replay.replay_run(run, max_observed).outcomes
    assert with_feedback[-1].prediction == 201 * MIB  # floor above the failed 200 MiB (D8)
    off = replay.Options(failure_feedback=False)
    assert replay.replay_run(run, max_observed, off).outcomes[-1].prediction == 200 * MIB


def test_tasks_without_request_are_observed_but_not_scored() -> None:
    rows = [
        HEADER,
        f"1;a;P (1);COMPLETED;P;-;1;0;0;10;10;{500 * MIB};1",
        f"2;b;P (2);COMPLETED;P;{4096 * MIB};1;0;20;30;10;{100 * MIB};1",
        f"3;c;P (3);COMPLETED;P;{4096 * MIB};1;0;20;30;10;0;1",
    ]
    result = replay.replay_run(traces.parse_nextflow_trace("\n".join(rows), name="t"), max_observed)
    assert result.metrics.tasks == 1 and result.metrics.excluded == 2
    assert result.outcomes[0].allocation == 500 * MIB


def test_duplicate_task_ids_do_not_break_the_event_order() -> None:
    rows = [
        HEADER,
        f"7;a;P (1);COMPLETED;P;{4096 * MIB};1;0;0;10;10;{100 * MIB};1",
        f"7;b;P (2);COMPLETED;P;{4096 * MIB};1;0;0;10;10;{100 * MIB};1",
    ]
    result = replay.replay_run(traces.parse_nextflow_trace("\n".join(rows), name="t"), max_observed)
    assert result.metrics.tasks == 2 and result.metrics.cold_starts == 2
