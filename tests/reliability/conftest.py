"""Fixtures of the reliability suite.

Each test module that needs a control plane gets its own (``plane``, module scope), so a heavy
or risky module never disturbs another; tests that restart kube-apiserver or etcd take a private
one of their own (``private_plane``). Starting one costs a few seconds. Daemons started with
``reliability_helpers.start_daemon`` are stopped after each test, whatever its outcome. The
outcome of every test here is merged into the report file at the end of the session.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from reliability_helpers import STARTED, ControlPlane, record_tests


@pytest.fixture(autouse=True)
def _stop_daemons() -> Iterator[None]:
    """No daemon outlives its test, whatever the test's outcome."""
    yield
    while STARTED:
        STARTED.pop().stop()


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    cp = ControlPlane.start(tmp_path_factory.mktemp("plane"))
    try:
        yield cp
    finally:
        cp.stop()


@pytest.fixture
def private_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    cp = ControlPlane.start(tmp_path_factory.mktemp("private-plane"))
    try:
        yield cp
    finally:
        while STARTED:  # before the control plane goes away
            STARTED.pop().stop()
        cp.stop()


# --- outcomes for the report ------------------------------------------------------------------

_HERE = Path(__file__).resolve().parent
_outcomes: dict[str, dict[str, str]] = {}
_started = time.time()


_root: list[Path] = []


def pytest_configure(config: pytest.Config) -> None:
    _root.append(config.rootpath)


_collected: set[str] = set()
_files: set[str] = set()


def _ours(location: str) -> bool:
    path = Path(location)
    if _root and not path.is_absolute():
        path = _root[0] / path
    return path.resolve().parent == _HERE


def pytest_itemcollected(item: pytest.Item) -> None:
    if _ours(item.location[0]):
        _collected.add(item.nodeid)
        _files.add(item.nodeid.split("::", 1)[0])


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if not _ours(report.location[0]):
        return
    if report.when == "call" or (report.when == "setup" and not report.passed):
        entry = {"outcome": report.outcome}
        if hasattr(report, "wasxfail"):
            entry = {
                "outcome": "xfailed" if report.skipped else "xpassed",
                "reason": report.wasxfail,
            }
        _outcomes[report.nodeid] = entry


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _outcomes:
        args = [str(a) for a in session.config.invocation_params.args]
        record_tests(
            _outcomes,
            wall_s=time.time() - _started,
            args=args,
            known=_collected,
            files=_files,
        )
