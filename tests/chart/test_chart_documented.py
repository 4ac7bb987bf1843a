"""The helm commands README.md and the chart's README show work as written.

Each ``helm`` command of a shell code block runs, as written, with the Go-built helm from the
checkout's root against the chart tier's control plane, with ``--dry-run=server`` (helm renders
the release, validates it and asks the API server, but installs nothing); the release it would
install must pull the image the documents tell the user to build and push.
The other documented commands are checked in ``tests/unit/test_documented_commands.py``.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml

from scheduler.devtools import devcluster

from .chart_helpers import REPO

DOCUMENTS = ("README.md", "charts/wfsched/README.md")


def helm_commands(document: str) -> list[str]:
    """The ``helm`` command lines of the document's shell code blocks (continuations joined)."""
    commands: list[str] = []
    in_shell_block = False
    pending = ""
    for line in (REPO / document).read_text().splitlines():
        if line.startswith("```"):
            in_shell_block = not in_shell_block and line[3:].strip() in ("bash", "sh", "shell")
            continue
        if not in_shell_block:
            continue
        pending = f"{pending} {line.strip()}" if pending else line.strip()
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip()
            continue
        if pending.startswith("helm "):
            commands.append(pending)
        pending = ""
    return commands


def documented_image(document: str) -> str:
    """The image the document's ``docker push`` sends."""
    pushed = re.findall(r"^docker push (\S+)$", (REPO / document).read_text(), re.M)
    assert len(pushed) == 1, f"{document}: expected one docker push, found {pushed}"
    return pushed[0]


COMMANDS = [(doc, command) for doc in DOCUMENTS for command in helm_commands(doc)]


def test_the_documented_helm_commands_are_found() -> None:
    assert [doc for doc, _ in COMMANDS] == list(DOCUMENTS)


@pytest.mark.integration
@pytest.mark.parametrize(("document", "command"), COMMANDS)
def test_documented_helm_command_works(
    helm: Path, chart_cluster: devcluster.DevCluster, document: str, command: str
) -> None:
    argv = shlex.split(command)
    assert argv[:2] == ["helm", "install"], f"no dry form known for {command}"
    with tempfile.TemporaryDirectory() as home:
        proc = subprocess.run(
            [
                str(helm),
                *argv[1:],
                "--dry-run=server",
                "--kubeconfig",
                str(chart_cluster.kubeconfig),
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={"HOME": home, "PATH": "/usr/bin:/bin", "HELM_CACHE_HOME": f"{home}/cache"},
        )
    assert proc.returncode == 0, f"{command}\n{proc.stderr}"
    manifests = proc.stdout.split("MANIFEST:", 1)[1].split("NOTES:", 1)[0]
    docs = [d for d in yaml.safe_load_all(manifests) if d]
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    namespace = argv[argv.index("--namespace") + 1]
    assert deployment["metadata"]["namespace"] == namespace
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == documented_image(document), "helm would pull an image nobody pushed"
    sets = dict(s.split("=", 1) for s in argv[argv.index("install") :] if "=" in s)
    config = next(d for d in docs if d["kind"] == "ConfigMap" and "config.yaml" in d["data"])
    if "policies.predictor" in sets:
        assert f"predictor: {sets['policies.predictor']}" in config["data"]["config.yaml"]
