"""scripts/test.sh: a fast stage 1 (lint, types, import contracts, unit tests), then stage 2.

The script runs for real, but in a sandbox: a copy of its scripts beside a tiny test tree (one test
per tier, each writing its name to a log), a virtualenv whose ``python`` is this interpreter and
whose ruff, mypy and lint-imports are stubs that log their call, and a control-plane build
script that only logs. So what each stage ran, in which order, and the exit status are checked
without installing or building anything. The unit tier's per-test timeout is checked too.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.unit.conftest import UNIT_TEST_TIMEOUT_S

REPO = Path(__file__).resolve().parents[2]
NO_TESTS = 5
STUBS = ("ruff", "mypy", "lint-imports")

_TIER_TEST = """
import os

def test_{tier}():
    with open(os.environ["SANDBOX_LOG"], "a") as log:
        log.write("pytest {tier}\\n")
    assert os.environ.get("FAIL_TIER") != "{tier}"
"""
_STUB = """#!/bin/sh
echo "$(basename "$0") $*" >> "$SANDBOX_LOG"
[ "$STUB_FAIL" != "$(basename "$0")" ]
"""


def _write(path: Path, text: str, *, executable: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if executable:
        path.chmod(path.stat().st_mode | stat.S_IXUSR)


@dataclass(frozen=True)
class Run:
    status: int
    stderr: str
    log: list[str]


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    root = tmp_path / "checkout"
    for script in ("test.sh", "bootstrap.sh", "pytest_tiers.py"):
        _write(root / "scripts" / script, (REPO / "scripts" / script).read_text())
    _write(root / "pyproject.toml", '[tool.pytest.ini_options]\ntestpaths = ["tests"]\n')
    for tier in ("unit", "integration", "chart"):
        _write(root / "tests" / tier / f"test_{tier}.py", _TIER_TEST.format(tier=tier))
    build = 'echo "build.sh $*" >> "$SANDBOX_LOG"\n'
    _write(root / "scheduler" / "devtools" / "assets" / "build.sh", build, executable=True)
    venv = root / ".venv"
    _write(venv / "bin" / "python", f'#!/bin/sh\nexec "{sys.executable}" "$@"\n', executable=True)
    for stub in STUBS:
        _write(venv / "bin" / stub, _STUB, executable=True)
    stamp = venv / ".wfsched-installed"  # installed after pyproject.toml changed: no install
    stamp.touch()
    later = time.time() + 60
    os.utime(stamp, (later, later))
    return root


def run_script(root: Path, *args: str, **env: str) -> Run:
    log = root / "calls.log"
    log.write_text("")
    environment = {
        "PATH": f"/usr/bin{os.pathsep}/bin",
        "HOME": str(root),
        "SANDBOX_LOG": str(log),
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",  # the tiny tests need no plugin: faster start
        **env,
    }
    proc = subprocess.run(
        ["bash", "scripts/test.sh", *args],
        cwd=root,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return Run(proc.returncode, proc.stderr, log.read_text().splitlines())


def test_help_names_both_stages() -> None:
    proc = subprocess.run(
        ["bash", "scripts/test.sh", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "stage 1, fast" in proc.stdout
    assert "stage 2:" in proc.stdout
    assert "bash scripts/test.sh --dry-run [PYTEST ARGS ...]" in proc.stdout


def test_stage_1_checks_and_unit_tests_come_before_the_build_and_the_other_tiers(
    sandbox: Path,
) -> None:
    run = run_script(sandbox)
    assert run.status == 0, run.stderr
    assert run.log == [
        "ruff check .",
        "ruff format --check .",
        "mypy ",
        "lint-imports ",
        "pytest unit",
        "build.sh ",
        "pytest chart",
        "pytest integration",
    ]
    for timing in ("[test] mypy: ", "stage 1 passed in ", "stage 2 passed in ", "all stages"):
        assert timing in run.stderr


def test_a_failing_unit_test_stops_the_run_before_the_build(sandbox: Path) -> None:
    run = run_script(sandbox, FAIL_TIER="unit")
    assert run.status == 1
    assert run.log[-1] == "pytest unit"
    assert "stage 1 failed after" in run.stderr


def test_a_failing_check_stops_the_run_at_once(sandbox: Path) -> None:
    run = run_script(sandbox, STUB_FAIL="mypy")
    assert run.status == 1
    assert run.log == ["ruff check .", "ruff format --check .", "mypy "]
    assert "stage 1 failed after" in run.stderr


def test_unit_tests_alone_build_nothing(sandbox: Path) -> None:
    run = run_script(sandbox, "tests/unit")
    assert run.status == 0, run.stderr
    assert run.log[-2:] == ["lint-imports ", "pytest unit"]
    assert "nothing to build" in run.stderr


def test_tests_of_other_tiers_alone_still_get_the_stage_1_checks(sandbox: Path) -> None:
    run = run_script(sandbox, "tests/integration/test_integration.py", "-k", "integration")
    assert run.status == 0, run.stderr
    assert run.log == [
        "ruff check .",
        "ruff format --check .",
        "mypy ",
        "lint-imports ",
        "build.sh ",
        "pytest integration",
    ]
    assert "no unit test selected" in run.stderr


def test_a_bad_pytest_argument_fails_before_the_checks(sandbox: Path) -> None:
    run = run_script(sandbox, "--no-such-option")
    assert run.status == 4  # pytest's usage error
    assert run.log == []
    assert "unrecognized arguments: --no-such-option" in run.stderr


def test_arguments_that_select_no_test_fail(sandbox: Path) -> None:
    run = run_script(sandbox, "-k", "no_test_is_called_this")
    assert run.status == NO_TESTS
    assert "build.sh " not in run.log
    assert "the arguments select no test" in run.stderr


def test_a_dry_run_collects_each_stage_and_checks_the_build_without_running(
    sandbox: Path,
) -> None:
    run = run_script(sandbox, "--dry-run", "tests/unit", "tests/chart")
    assert run.status == 0, run.stderr
    assert run.log == ["build.sh --dry-run"]  # no stub and no test ran
    assert "stage 2 would build the control plane" in run.stderr


def test_a_dry_run_of_unit_tests_alone_builds_nothing(sandbox: Path) -> None:
    run = run_script(sandbox, "--dry-run", "tests/unit")
    assert run.status == 0, run.stderr
    assert run.log == []
    assert "stage 2 would build nothing" in run.stderr


def test_a_dry_run_that_selects_no_test_fails(sandbox: Path) -> None:
    run = run_script(sandbox, "--dry-run", "-k", "no_test_is_called_this")
    assert run.status == NO_TESTS
    assert "the arguments select no test" in run.stderr


def test_unit_tests_get_the_short_timeout(request: pytest.FixtureRequest) -> None:
    marker = request.node.get_closest_marker("timeout")
    assert marker is not None
    assert marker.args == (UNIT_TEST_TIMEOUT_S,)
