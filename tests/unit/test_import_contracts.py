"""The import contracts in pyproject.toml hold, and each one catches the import it forbids.

``lint-imports`` (import-linter) checks the checkout; then, for every contract, a copy of the
three packages gets one offending import appended to one module and ``lint-imports --contract``
must report that contract broken. A contract that no case breaks fails the test, so a new
contract comes with a case here.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
PACKAGES = ("scheduler", "policies", "predictors")


def contracts() -> dict[str, str]:
    """Contract id -> name, as pyproject.toml declares them."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    return {c["id"]: c["name"] for c in config["tool"]["importlinter"]["contracts"]}


def lint_imports(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    if not LINT_IMPORTS.is_file():
        pytest.fail("lint-imports is missing: pip install -e '.[dev]'", pytrace=False)
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", *args],
        cwd=root,  # lint-imports analyses the packages found from its working directory
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@dataclass(frozen=True)
class Offence:
    """One import appended to one module, which ``contract`` must report."""

    contract: str
    module: str
    line: str

    def __str__(self) -> str:
        return f"{self.contract}: {self.module} + {self.line}"


OFFENCES = [
    Offence("pure-core", "scheduler/core/resources.py", "import threading"),
    Offence("pure-core", "predictors/base.py", "from scheduler.runtime import metrics"),
    Offence("pure-core", "policies/ranking/fifo.py", "import time"),
    Offence("kubernetes-in-kube-only", "scheduler/runtime/workflows.py", "import kubernetes"),
    Offence("kubernetes-in-kube-only", "scheduler/devtools/simulate.py", "import urllib3"),
    # Indirect: the state machine imports the memory model.
    Offence("pure-state-machine", "scheduler/runtime/memory.py", "import time"),
    Offence("pure-state-machine", "scheduler/runtime/state.py", "import scheduler.kube.client"),
    Offence("runtime-without-tooling", "scheduler/rest/api.py", "import scheduler.devtools.pki"),
    Offence("runtime-without-tooling", "scheduler/kube/keys.py", "from scheduler import cli"),
    Offence("layers", "scheduler/runtime/settings.py", "from scheduler.runtime import state"),
    Offence("layers", "scheduler/runtime/loop.py", "from scheduler.rest import api"),
    Offence("layers", "scheduler/core/cycle.py", "from scheduler import registry"),
    Offence("policies-independent", "policies/ranking/fifo.py", "from policies import assignment"),
]


def test_the_checkout_keeps_every_contract() -> None:
    proc = lint_imports(REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"Contracts: {len(contracts())} kept, 0 broken." in proc.stdout


def test_every_contract_has_an_offence_that_breaks_it() -> None:
    assert {o.contract for o in OFFENCES} == set(contracts())


@pytest.mark.parametrize("offence", OFFENCES, ids=str)
def test_the_contract_reports_the_offending_import(offence: Offence, tmp_path: Path) -> None:
    shutil.copy2(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    for package in PACKAGES:
        shutil.copytree(
            REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    module = tmp_path / offence.module
    module.write_text(module.read_text() + f"\n{offence.line}\n")
    proc = lint_imports(tmp_path, "--contract", offence.contract)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    broken = " ".join(proc.stdout.split())  # the report wraps long names
    assert f"{contracts()[offence.contract]} BROKEN" in broken
