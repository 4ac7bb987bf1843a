from pathlib import Path

import pytest

from scheduler.runtime import settings as settings_mod
from scheduler.runtime.settings import SettingsError, load_settings


def test_defaults_without_file_or_env() -> None:
    s = load_settings(env={})
    assert s.scheduler_names == ("workflow-scheduler",)
    assert s.policy == "rank_min-roundrobin"
    assert s.lease.enabled is True
    assert s.lease.duration_s == 15.0


def test_yaml_file_then_environment_override(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "scheduler_names: [a-sched, b-sched]\nqps: 50\nlease:\n  duration_s: 20\n"
        "  renew_deadline_s: 12\nnamespaces: [team-a]\n"
    )
    s = load_settings(
        config,
        env={"WFSCHED_QPS": "75.5", "WFSCHED_LEASE__ENABLED": "false", "WFSCHED_NAMESPACES": "x,y"},
    )
    assert s.scheduler_names == ("a-sched", "b-sched")
    assert s.qps == 75.5
    assert s.lease.duration_s == 20.0
    assert s.lease.renew_deadline_s == 12.0
    assert s.lease.enabled is False
    assert s.namespaces == ("x", "y")


def test_config_path_from_environment(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("policy: fifo-fair\n")
    s = load_settings(env={"WFSCHED_CONFIG": str(config)})
    assert s.policy == "fifo-fair"


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("qps: fast\n", "qps: cannot use 'fast'"),
        ("burst: 1.5\n", "burst: cannot use 1.5"),
        ("colour: blue\n", "colour: unknown setting"),
        ("lease: 3\n", "lease: expected a mapping"),
        ("lease:\n  durations: 3\n", "lease.durations: unknown setting"),
        ("scheduler_names: [Bad_Name]\n", "not a valid DNS subdomain"),
        ("scheduler_names: []\n", "at least one name"),
        ("qps: 0\n", "qps: must be > 0"),
        ("min_memory_per_cpu_bytes: -1\n", "min_memory_per_cpu_bytes: must be >= 0"),
        ("shrink_running: true\n", "shrink_running: needs a predictor"),
        ("shrink_min_saving_bytes: -1\n", "shrink_min_saving_bytes: must be >= 0"),
        ("arrival_settle_s: -0.1\n", "arrival_settle_s: must be >= 0"),
        (
            "unschedulable_report_interval_s: -1\n",
            "unschedulable_report_interval_s: must be >= 0",
        ),
        ("unschedulable_report_interval_s: soon\n", "unschedulable_report_interval_s: cannot use"),
        ("health_port: 70000\n", "not a TCP port"),
        ("log_format: xml\n", "log_format"),
        ("lease:\n  duration_s: 5\n  renew_deadline_s: 10\n", "shorter than lease.duration_s"),
        ("- a\n- b\n", "expected a mapping at the top level"),
        ("qps: [\n", "not valid YAML"),
    ],
)
def test_bad_configuration_names_the_key(tmp_path: Path, content: str, fragment: str) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(content)
    with pytest.raises(SettingsError) as info:
        load_settings(config, env={})
    assert fragment in str(info.value)


def test_missing_file_is_a_settings_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="cannot read"):
        load_settings(tmp_path / "absent.yaml", env={})


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("qps: x\nburst: y\n")
    with pytest.raises(SettingsError) as info:
        load_settings(config, env={})
    assert len(info.value.problems) == 2


def test_environment_bad_boolean() -> None:
    with pytest.raises(SettingsError, match=r"lease\.enabled"):
        load_settings(env={"WFSCHED_LEASE__ENABLED": "maybe"})


def test_default_name_constant() -> None:
    assert settings_mod.DEFAULT_SCHEDULER_NAME == "workflow-scheduler"
