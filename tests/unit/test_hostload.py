"""The CPU sampler the makespan benchmark runs beside each replay (``devtools.hostload``)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from scheduler.devtools import hostload


@pytest.mark.parametrize(
    ("argv", "group"),
    [
        (["/cache/kubernetes/bin/kube-apiserver", "--etcd-servers=x"], "kube-apiserver"),
        (["/cache/etcd/bin/etcd", "--data-dir", "d"], "etcd"),
        (["/cache/kwok/bin/kwok", "--kubeconfig", "k"], "kwok"),
        (["kube-scheduler", "--config", "c"], "kube-scheduler"),
        (["/venv/bin/python3.11", "-m", "scheduler", "run", "--config", "c"], "wfsched"),
        (["/venv/bin/python", "-m", "pytest"], "other"),
        (["/venv/bin/python3", "/venv/bin/wfsched", "run"], "wfsched"),
        (["/usr/local/bin/wfsched", "run"], "wfsched"),
        (["/opt/bin/benchmark"], "other"),  # only the caller's own process is the benchmark
        (["bash", "-c", "kube-apiserver"], "other"),
        ([], "other"),
    ],
)
def test_processes_are_grouped_by_program(argv: list[str], group: str) -> None:
    assert hostload.process_group(argv) == group


def test_the_callers_own_process_is_the_benchmark() -> None:
    assert hostload.process_group(["/venv/bin/python", "-m", "scheduler"], is_self=True) == (
        "benchmark"
    )


def _stat(pid: int, name: str, utime: int, stime: int) -> str:
    rest = ["S", "1", "1", "1", "0", "-1", "4194304", "0", "0", "0", "0", str(utime), str(stime)]
    return f"{pid} ({name}) " + " ".join(rest + ["0"] * 30)


def _process(proc: Path, pid: int, argv: list[str], utime: int, stime: int) -> None:
    entry = proc / str(pid)
    entry.mkdir()
    (entry / "stat").write_text(_stat(pid, argv[0][:15], utime, stime), encoding="utf-8")
    (entry / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")


def test_ticks_are_read_past_a_command_name_holding_spaces_and_parentheses(tmp_path: Path) -> None:
    _process(tmp_path, 40, ["kwok"], 7, 3)
    (tmp_path / "40" / "stat").write_text(_stat(40, "kw (ok) x", 7, 3), encoding="utf-8")
    (tmp_path / "self").mkdir()  # not a pid: skipped
    assert hostload.read_ticks(tmp_path) == {40: ("kwok", 10)}


def test_the_readers_own_pid_reads_as_the_benchmark(tmp_path: Path) -> None:
    _process(tmp_path, os.getpid(), ["/venv/bin/python", "benchmarks/makespan.py"], 5, 5)
    assert hostload.read_ticks(tmp_path) == {os.getpid(): ("benchmark", 10)}


def test_deltas_count_new_processes_from_zero_and_drop_gone_ones() -> None:
    before = {1: ("etcd", 100), 2: ("kwok", 50), 3: ("wfsched", 10)}
    after = {1: ("etcd", 130), 3: ("other", 4), 4: ("wfsched", 7)}  # 2 exited; pid 3 reused
    assert hostload.tick_deltas(before, after) == {"etcd": 30, "other": 4, "wfsched": 7}


def test_summary_weights_by_interval_and_counts_saturated_seconds() -> None:
    samples = [
        (1.0, {"kwok": 1.0, "kube-apiserver": 0.9}),  # 1.9 of 2 cores: saturated
        (2.0, {"kwok": 0.25}),
        (0.0, {"kwok": 9.0}),  # no time passed: ignored
    ]
    load = hostload.summarise(samples, cores=2)
    assert load.seconds == 2
    assert load.saturated_seconds == 1
    assert load.mean_cores["kwok"] == pytest.approx(1.5 / 3.0)
    assert load.mean_cores["kube-apiserver"] == pytest.approx(0.9 / 3.0)
    assert load.mean_cores["etcd"] == 0.0
    assert load.to_json()["saturated_seconds"] == 1


def test_no_samples_summarise_to_zero() -> None:
    load = hostload.summarise([], cores=4)
    assert (load.seconds, load.saturated_seconds) == (0, 0)
    assert set(load.mean_cores.values()) == {0.0}


def test_the_sampler_sees_this_process_burn_cpu() -> None:
    with hostload.HostLoadSampler(interval_s=0.1) as sampler:
        give_up = time.monotonic() + 20
        while sampler.result().seconds < 3 and time.monotonic() < give_up:
            sum(i * i for i in range(1000))  # busy: the samples must see this process work
    load = sampler.result()
    assert load.seconds >= 3
    assert load.mean_cores["benchmark"] > 0.05  # a share of a core, even on a busy machine
    assert load.cores == hostload.usable_cores() >= 1


def test_cpu_seconds_of_one_process_grow_as_it_works(tmp_path: Path) -> None:
    _process(tmp_path, 77, ["etcd"], 300, 100)
    ticks = os.sysconf("SC_CLK_TCK")
    assert hostload.process_cpu_seconds(77, tmp_path) == pytest.approx(400 / ticks)
    spent = hostload.process_cpu_seconds(os.getpid())
    sum(i * i for i in range(200_000))
    assert hostload.process_cpu_seconds(os.getpid()) >= spent > 0


def test_cpu_seconds_of_a_gone_process_raise(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        hostload.process_cpu_seconds(12345, tmp_path)
