"""Grow-in-place scoring and the synthetic production-like variants."""

import math

import pytest

from predictors import base, const, offsets, replay, traces, variants

MIB = base.MIB
HOUR = 3_600_000.0
MIB_HOUR_GBH = MIB * HOUR / (1e9 * 3.6e6)


def _run() -> traces.Run:
    task = traces.Task(
        order=1,
        name="P (1)",
        process="P",
        request_bytes=1024 * MIB,
        peak_bytes=300 * MIB,
        input_bytes=0,
        submit_ms=0.0,
        start_ms=0.0,
        complete_ms=HOUR,
        realtime_ms=HOUR,
    )
    return traces.Run(name="w/trace-1", tasks=(task,))


def _const(mib: int) -> replay.PredictorFactory:
    return lambda: offsets.OffsetPredictor(const.ConstModel(mib * MIB), offsets.NONE)


def test_without_growth_the_small_allocation_fails_and_retries_at_the_request() -> None:
    metrics = replay.replay_run(_run(), _const(200)).metrics
    assert metrics.failed_attempts == 1 and metrics.growths == 0
    assert metrics.wastage_gbh == pytest.approx((200 + 1024 - 300) * MIB_HOUR_GBH)


def test_growth_replaces_the_failure_at_its_stated_cost() -> None:
    grow = replay.GrowInPlace(delay_ms=HOUR / 10, grown_from=0.0)
    metrics = replay.replay_run(_run(), _const(200), replay.Options(grow=grow)).metrics
    assert (metrics.failed_attempts, metrics.growths, metrics.grown_tasks) == (0, 1, 1)
    # Grown by doubling to 400 MiB, counted from the start, plus 1/10 h at 400 MiB.
    assert metrics.wastage_gbh == pytest.approx((400 - 300 + 40) * MIB_HOUR_GBH)
    # Grown at mid-run (the default): the first half used the whole 200 MiB (no waste), the
    # second half wastes 400 - 300 MiB. Never negative, however small the first allocation.
    later = replay.GrowInPlace(delay_ms=0.0)
    metrics = replay.replay_run(_run(), _const(200), replay.Options(grow=later)).metrics
    assert metrics.wastage_gbh == pytest.approx(0.5 * (400 - 300) * MIB_HOUR_GBH)
    metrics = replay.replay_run(_run(), _const(1), replay.Options(grow=later)).metrics
    assert metrics.growths == 2 and metrics.over >= 0  # 128 MiB floor -> 256 -> 512


def test_growth_steps_double_up_to_the_request_then_beyond() -> None:
    assert replay.growth_steps(200, peak=300, request=1024) == ((200,), 400)
    assert replay.growth_steps(600, peak=1000, request=1024) == ((600,), 1024)
    assert replay.growth_steps(600, peak=1500, request=1024) == ((600, 1024), 2048)
    assert replay.growth_steps(400, peak=300, request=1024) == ((), 400)


def test_no_room_means_the_usual_failure() -> None:
    full = replay.GrowInPlace(room_probability=0.0)
    metrics = replay.replay_run(_run(), _const(200), replay.Options(grow=full)).metrics
    assert (metrics.failed_attempts, metrics.growths) == (1, 0)
    half = replay.GrowInPlace(room_probability=0.5)
    rooms = [half.has_room(order) for order in range(1000)]
    assert 400 < sum(rooms) < 600 and rooms == [half.has_room(o) for o in range(1000)]
    with pytest.raises(ValueError):
        replay.GrowInPlace(room_probability=1.5)


def _test_profile_run() -> traces.Run:
    tasks = []
    for p in range(6):
        for i in range(8):
            order = p * 100 + i
            tasks.append(
                traces.Task(
                    order=order,
                    name=f"S{p} ({i})",
                    process=f"W:S{p}",
                    request_bytes=6 << 30,
                    peak_bytes=(50 + 40 * p + 3 * i) * MIB,
                    input_bytes=1000 * (i + 1),
                    submit_ms=0.0,
                    start_ms=float(i),
                    complete_ms=float(i) + 1000.0 * (p + 1),
                    realtime_ms=1000.0 * (p + 1),
                )
            )
    return traces.Run(name="w/trace-1", tasks=tuple(tasks))


def test_production_variant_reaches_its_stated_regime() -> None:
    run = _test_profile_run()
    variant, stats = variants.production_variant(run)
    assert len(variant.tasks) == len(run.tasks)
    assert [t.start_ms for t in variant.tasks] == [t.start_ms for t in run.tasks]
    assert stats.heavy_steps >= 1 and stats.heavy_share > 0.5
    assert 2.6 <= stats.request_ratio < 3.5  # 2.6 before rounding requests up to GiB
    for task in variant.tasks:
        assert task.request_bytes is not None and task.peak_bytes is not None
        assert task.request_bytes >= task.peak_bytes  # presets fit their process
    by_process: dict[str, list[traces.Task]] = {}
    for task in variant.tasks:
        by_process.setdefault(task.process, []).append(task)
    flat = [
        group
        for group in by_process.values()
        if max(t.peak_bytes or 0 for t in group) <= 1.05 * min(t.peak_bytes or 0 for t in group)
    ]
    assert len(flat) == stats.flat_steps
    for group in flat:
        inputs = [t.input_bytes or 0 for t in group]
        assert max(inputs) / min(inputs) > 10  # spread over up to three decades
    assert variants.production_variant(run) == (variant, stats)  # deterministic


def test_production_variant_of_an_empty_run() -> None:
    run = traces.Run(name="w/trace-1", tasks=())
    variant, stats = variants.production_variant(run)
    assert variant == run and math.isnan(stats.request_ratio)
