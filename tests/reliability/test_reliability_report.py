"""``report.py`` renders the suite's JSON into the Markdown page (no cluster needed)."""

from __future__ import annotations

import json

import report

SAMPLE = {
    "machine": {"cpus": 2, "memory_gib": 23.5, "python": "3.11.7", "control_plane": {}},
    "runs": {
        "tests/reliability": {"wall_s": 600.0, "tests_run": 3, "args": ["tests/reliability"]},
        "-k x": {"wall_s": 6.0, "tests_run": 1, "args": ["-k", "x"]},
    },
    "scenarios": {
        "leader-failover": {
            "title": "kill -9 of the leader",
            "injected": "SIGKILL of the leader",
            "injections": 1,
            "failover_gap_s": 5.29,
            "daemon_alive_at_end": True,
            "recorded_at": "2026-11-22T05:44:59Z",
            "verdict": {
                "pods": 300,
                "bound": 300,
                "succeeded": 300,
                "lost_count": 0,
                "double_bound_count": 0,
                "overcommitted_nodes_count": 0,
                "missing_events_count": 0,
                "unattested_count": 0,
                "capacity_samples": 63,
                "capacity_sample_errors": 0,
                "event_lag_p50_s": 0.0,
                "event_lag_max_s": 0.5,
            },
        },
        "load": {
            "title": "10,000 pods",
            "injected": "load only",
            "injections": 0,
            "peak_rss_mib": 303.7,
            "cycles": {
                "count": 2,
                "mean_s": 0.26,
                "p50_bucket_s": 0.25,
                "p99_bucket_s": 0.5,
                "max_bucket_s": 0.5,
            },
            "kills": [{"at_bound": 1, "pause_s": 0.5}],
            "recorded_at": "2026-11-22T05:52:59Z",
        },
    },
    "tests": {
        "tests/reliability/test_x.py::test_defect": {"outcome": "xfailed", "reason": "defect: x"},
        "tests/reliability/test_x.py::test_ok": {"outcome": "passed"},
    },
}


def test_render_has_the_summary_the_details_and_the_defects():
    text = report.render(SAMPLE)
    assert (
        "| [leader-failover](#leader-failover) | SIGKILL of the leader | 1 | 300 | 0 | 0 |" in text
    )
    assert "failover gap 5.29 s" in text
    assert "peak RSS 303.7 MiB; cycle mean 260.0 ms, max ≤ 500.0 ms" in text
    assert "between 2026-11-22T05:44:59Z and 2026-11-22T05:52:59Z" in text
    assert "| `test_defect` | defect: x |" in text
    assert "1 passed, 1 xfailed" in text
    assert "| at_bound | pause_s |" in text
    assert "Largest recorded run: 3 reliability tests in a pytest session of 10.0 min" in text
    assert "`pytest tests/reliability`" in text


def test_a_run_without_arguments_is_named_as_the_ci_run():
    sample = dict(SAMPLE, runs={"": {"wall_s": 900.0, "tests_run": 94, "args": []}})
    text = report.render(sample)
    assert "94 reliability tests in a pytest session of 15.0 min" in text
    assert "`pytest` without arguments, as `.ci/run` starts it" in text


def test_main_writes_the_page(tmp_path):
    source = tmp_path / "in.json"
    source.write_text(json.dumps(SAMPLE))
    target = tmp_path / "out.md"
    assert report.main(["--input", str(source), "--output", str(target)]) == 0
    assert target.read_text().startswith("# Reliability")
    assert report.main(["--input", str(tmp_path / "missing.json")]) == 2
