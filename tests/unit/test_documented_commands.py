"""Every command README.md and the docs it links show works as written, in a dry form.

Commands come from the shell code blocks (```bash, ```sh, ```shell, ```console, and untagged
blocks whose first line starts with a known program) and from inline code spans that start with
a program (`bash scripts/test.sh -m "not slow"`), in README.md, every Markdown file it links
inside the repository and every ``docs/*.md``. Synopsis notation is expanded: ``[OPTIONAL]``
(without it, and with it in each of its alternatives), ``a|b`` (each alternative), ``NAME...``,
and upper-case placeholders (and the README's ``config.yaml``) get real values. Each command
then runs in a form that installs, builds and starts nothing:

- ``bash scripts/test.sh|demo.sh ARGS``: the script's own ``--dry-run`` (the build's component
  names are checked; pytest collects what ARGS select; the demo reads its instance);
- ``scheduler/devtools/assets/build.sh ARGS``: ``build.sh --dry-run ARGS``;
- ``wfsched run ...``: the same with ``--check-config``; other ``wfsched`` commands are parsed by
  the real CLI parser (a bare ``wfsched SUBCOMMAND`` must answer ``--help``);
- ``python SCRIPT ARGS``: the script runs until its argparse parser has accepted ARGS;
- ``pytest ARGS``: ``pytest --collect-only ARGS``;
- ``export KUBECONFIG=...``: the path is the one ``wfsched dev-cluster up`` writes;
- ``docker build``/``push``: the build context has the Dockerfile and the tag is the chart's
  appVersion, the tag ``helm install`` pulls;
- ``helm ...``: run against the Go-built helm in ``tests/chart/test_chart_documented.py``.

Paths the documents name must exist. A command no rule covers fails, so a new documented
command needs a rule here.
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from scheduler import cli
from scheduler.devtools import devcluster

# These tests run the scripts' dry runs (each collects the suite with pytest) and other
# programs as subprocesses: more than the unit tier's per-test timeout allows under load.
pytestmark = pytest.mark.timeout(120)

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"
VENV_BIN = Path(sys.executable).parent

_SHELL_FENCES = {"bash", "sh", "shell", "console"}
_PROGRAMS = (
    "bash ",
    "wfsched ",
    ".venv/bin/",
    "python ",
    "pytest ",
    "for ",
    "export ",
    "docker ",
    "helm ",
    "scheduler/devtools/assets/build.sh",
)
_PLACEHOLDER = re.compile(r"^[A-Z][A-Z0-9_]*$")
# Values for the synopsis placeholders; ``@tmp@`` is the test's temporary directory.
_PLACEHOLDER_VALUES = {
    "INSTANCE": str(SHARED_DATA / "wfinstances" / "nextflow-rnaseq.json"),
    "TRACES": str(SHARED_DATA / "nfcore-traces"),
    "TRACE_OR_DIR": str(SHARED_DATA / "nfcore-traces"),
    "TRACE": str(SHARED_DATA / "nfcore-traces" / "rnaseq" / "trace-1.csv"),
    "EARLIER": str(SHARED_DATA / "nfcore-traces" / "rnaseq" / "trace-2.csv"),
    "NS": "wfsched-demo",
    "K": "@tmp@/admin.kubeconfig",
    "SPEC": "ponder",
    "N": "4096",
    "SIZE": "2Gi",
    "FILE": "@tmp@/tasks.csv",
    "COMPONENT": "etcd",
}
# Literal names in the documents that stand for a file of the user's.
_USER_FILES = {"config.yaml": "@tmp@/config.yaml"}


@dataclass(frozen=True)
class DocCommand:
    """One command as a document shows it (continuation lines joined, comment dropped)."""

    source: str
    line: int
    text: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.text}"


def documents() -> list[Path]:
    """README.md, the repository's Markdown files it links, and docs/*.md."""
    readme = REPO / "README.md"
    found = [readme]
    for target in re.findall(r"\]\(([^)#\s]+\.md)\)", readme.read_text()):
        path = (REPO / target).resolve()
        if path.is_file() and path.is_relative_to(REPO) and path not in found:
            found.append(path)
    found += [p for p in sorted((REPO / "docs").glob("*.md")) if p not in found]
    return found


def _strip_comment(line: str) -> str:
    return "" if line.lstrip().startswith("#") else re.sub(r"\s+#\s.*$", "", line).rstrip()


def _block_commands(lines: list[tuple[int, str]], source: str) -> Iterator[DocCommand]:
    pending: tuple[int, str] | None = None
    for number, raw in lines:
        line = _strip_comment(raw)
        if not line.strip():
            continue
        if pending is not None and (pending[1].endswith("\\") or raw[:1].isspace()):
            pending = (pending[0], pending[1].rstrip("\\").rstrip() + " " + line.strip())
            continue
        if pending is not None:
            yield DocCommand(source, pending[0], pending[1])
        pending = (number, line.strip())
    if pending is not None:
        yield DocCommand(source, pending[0], pending[1])


def extract_commands(path: Path) -> list[DocCommand]:
    """Return the commands one Markdown file shows, in order."""
    source = str(path.relative_to(REPO))
    commands: list[DocCommand] = []
    fence: str | None = None
    block: list[tuple[int, str]] = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if line.startswith("```"):
            if fence is None:
                fence = line[3:].strip()
                block = []
                continue
            first = next((text.strip() for _, text in block if text.strip()), "")
            if fence in _SHELL_FENCES or (fence == "" and first.startswith(_PROGRAMS)):
                commands += _block_commands(block, source)
            fence = None
            continue
        if fence is not None:
            block.append((number, line))
            continue
        for span in re.findall(r"`([^`]+)`", line):
            if span.startswith(_PROGRAMS) and not span.startswith("helm "):
                commands.append(DocCommand(source, number, span.strip()))
    return commands


def all_commands() -> list[DocCommand]:
    return [c for doc in documents() for c in extract_commands(doc)]


def expand_notation(text: str) -> list[str]:
    """Turn a synopsis into concrete command lines (placeholders become ``@NAME@``).

    Without any ``[...]`` part, then with each part alone; each ``a|b`` word once per
    alternative (the others at their first); ``...`` repetitions dropped.
    """
    optional = re.compile(r"\[([^\[\]]*)\]")

    def keeping(kept: int | None) -> list[str]:
        seen = itertools.count()

        def part(match: re.Match[str]) -> str:
            return f" {match.group(1)} " if next(seen) == kept else " "

        return [t for t in optional.sub(part, text).split() if t != "..."]

    variants = [keeping(None)] + [keeping(n) for n in range(len(optional.findall(text)))]
    lines: list[str] = []
    for tokens in variants:
        choices = [n for n, t in enumerate(tokens) if "|" in t and t[0] not in "'\""]
        options = [[t.split("|")[0] if n in choices else t for n, t in enumerate(tokens)]]
        for n in choices:
            for alternative in tokens[n].split("|")[1:]:
                options.append([*options[0][:n], alternative, *options[0][n + 1 :]])
        for option in options:
            line = " ".join(_mark(t) for t in option)
            if line not in lines:
                lines.append(line)
    return lines


def _mark(token: str) -> str:
    name = token.removesuffix("...")
    if _PLACEHOLDER.match(name) or token in _USER_FILES:
        return f"@{name}@"
    return token


def shell_words(line: str) -> list[str]:
    """Split and expand one command line as bash would (quotes, braces, globs, ``~``)."""
    out = subprocess.run(
        ["bash", "-c", 'printf "%s\\0" ' + line],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    return out.split("\0")[:-1]


def resolve(word: str, tmp: Path) -> str:
    """Replace ``@NAME@`` markers with the placeholder's value."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in _USER_FILES:
            return _USER_FILES[name].replace("@tmp@", str(tmp))
        assert name in _PLACEHOLDER_VALUES, f"no value for the placeholder {name}: add one"
        return _PLACEHOLDER_VALUES[name].replace("@tmp@", str(tmp))

    return re.sub(r"@([A-Za-z0-9_.]+)@", value, word)


def concrete_commands(command: DocCommand) -> list[list[str]]:
    """Every concrete argv the documented command stands for (with markers unresolved)."""
    loop = re.fullmatch(r"for (\w+) in (.+); do (.+); done", command.text)
    if loop is None:
        return [shell_words(line) for line in expand_notation(command.text)]
    variable, items, body = loop.groups()
    argvs = []
    for item in shell_words(items):
        argvs += [shell_words(line.replace(f"${variable}", item)) for line in expand_notation(body)]
    return argvs


# Where the scripts install and build; every other WFSCHED_* variable overrides a daemon setting.
_SET_UP_VARIABLES = {"WFSCHED_VENV", "WFSCHED_CACHE_DIR"}


def _is_daemon_override(name: str) -> bool:
    return name.startswith("WFSCHED_") and name not in _SET_UP_VARIABLES


def run(argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not _is_daemon_override(k)}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(
        argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def assert_ok(proc: subprocess.CompletedProcess[str], what: str) -> None:
    assert proc.returncode == 0, (
        f"{what}: exit {proc.returncode}\n--- stdout\n{proc.stdout[-3000:]}\n"
        f"--- stderr\n{proc.stderr[-3000:]}"
    )


def assert_paths_exist(argv: list[str]) -> None:
    """Arguments that name a file of the repository or the shared data must exist."""
    for word in argv[1:]:
        if word.startswith("-") or "/" not in word or "@" in word or "=" in word:
            continue
        assert (REPO / word).exists(), f"{word} does not exist (relative to the checkout)"


def venv_program(word: str) -> str:
    if word.startswith(".venv/bin/"):
        program = VENV_BIN / word.removeprefix(".venv/bin/")
        assert program.is_file(), f"{program} is not installed"
        return str(program)
    return word


# Runs a Python script until its argparse parser has accepted the arguments, then stops.
_PARSE_ONLY = """
import argparse, runpy, sys
original = argparse.ArgumentParser.parse_args
def parse_then_stop(self, args=None, namespace=None):
    original(self, args, namespace)
    print("arguments accepted")
    sys.exit(0)
argparse.ArgumentParser.parse_args = parse_then_stop
sys.argv = sys.argv[1:]
sys.path[0] = __import__("os").path.dirname(sys.argv[0])
runpy.run_path(sys.argv[0], run_name="__main__")
sys.exit("the script finished without parsing its arguments")
"""


def check_script(argv: list[str]) -> None:
    script = argv[1]
    dry = {"scripts/test.sh": "--dry-run", "scripts/demo.sh": "--dry-run"}
    assert script in dry, f"no dry form known for {script}"
    args = argv[2:] if argv[2:3] == [dry[script]] else [dry[script], *argv[2:]]
    proc = run(["bash", script, *args], timeout=240)
    assert_ok(proc, " ".join(argv))
    assert "unknown component" not in proc.stderr


def check_build(argv: list[str]) -> None:
    assert_ok(run(["bash", argv[0], "--dry-run", *argv[1:]]), " ".join(argv))


def check_wfsched(argv: list[str], tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = argv[1:]
    parser = cli.build_parser()
    command_path = _command_path(parser, args)
    if args == command_path:  # a bare reference to a (sub)command: it must exist
        with pytest.raises(SystemExit) as leaving:
            parser.parse_args([*args, "--help"])
        assert leaving.value.code == 0
        return
    if args[0] == "run":
        (tmp / "config.yaml").write_text("policy: rank_min-roundrobin\npredictor: ponder\n")
        (tmp / "admin.kubeconfig").write_text("apiVersion: v1\nkind: Config\n")
        check = [] if "--check-config" in args else ["--check-config"]
        status = cli.main([*args, *check])
        assert status == 0, capsys.readouterr().err
        assert "configuration ok" in capsys.readouterr().out
        return
    try:
        parser.parse_args(args)
    except SystemExit as exc:
        raise AssertionError(f"wfsched {' '.join(args)}: {capsys.readouterr().err}") from exc


def _command_path(parser: argparse.ArgumentParser, args: list[str]) -> list[str]:
    """The leading words of ``args`` that name (sub)commands."""
    path: list[str] = []
    current = parser
    for word in args:
        subparsers = [a for a in current._actions if isinstance(a, argparse._SubParsersAction)]
        if not subparsers or word not in subparsers[0].choices:
            break
        path.append(word)
        current = subparsers[0].choices[word]
    return path


def check_python(argv: list[str]) -> None:
    proc = run([venv_program(argv[0]), "-c", _PARSE_ONLY, *argv[1:]])
    assert_ok(proc, " ".join(argv))
    assert "arguments accepted" in proc.stdout


def check_pytest(argv: list[str]) -> None:
    proc = run([venv_program(argv[0]), "--collect-only", "-q", "-p", "no:cacheprovider", *argv[1:]])
    assert_ok(proc, " ".join(argv))


def check_export(argv: list[str]) -> None:
    name, _, value = argv[1].partition("=")
    assert name == "KUBECONFIG", f"no rule for export {name}"
    home = os.environ.get("XDG_STATE_HOME")
    try:
        os.environ.pop("XDG_STATE_HOME", None)  # the documented path assumes the default
        written = devcluster.default_workdir() / "admin.kubeconfig"
    finally:
        if home is not None:
            os.environ["XDG_STATE_HOME"] = home
    assert Path(value) == written


def check_docker(argv: list[str]) -> None:
    chart = yaml.safe_load((REPO / "charts" / "wfsched" / "Chart.yaml").read_text())
    if argv[1] == "build":
        tag = argv[argv.index("-t") + 1]
        context = REPO / argv[-1]
        assert (context / "Dockerfile").is_file(), f"no Dockerfile in {context}"
    else:
        assert argv[1] == "push", f"no rule for docker {argv[1]}"
        tag = argv[2]
    # helm install --set image.repository=REPO pulls REPO:<appVersion>: the tag built and pushed
    # must be that one.
    assert tag.rsplit(":", 1)[1] == chart["appVersion"], f"{tag}: chart pulls {chart['appVersion']}"


_TAKES_PATHS = {"bash", "wfsched", ".venv/bin/wfsched", "python", ".venv/bin/python"}
_TAKES_PATHS |= {"pytest", ".venv/bin/pytest"}
COMMANDS = [c for c in all_commands() if not c.text.startswith("helm ")]


def test_the_documented_commands_are_found() -> None:
    texts = [c.text for c in COMMANDS]
    assert "bash scripts/test.sh" in texts
    assert 'bash scripts/test.sh -m "not slow"' in texts
    assert "wfsched run --config config.yaml [--kubeconfig K]" in texts
    assert any(t.startswith(".venv/bin/python benchmarks/throughput.py") for t in texts)
    assert len(COMMANDS) >= 20


def test_synopsis_notation_expands_to_every_form() -> None:
    assert expand_notation("wfsched dev-cluster up|down") == [
        "wfsched dev-cluster up",
        "wfsched dev-cluster down",
    ]
    assert expand_notation("wfsched run --config config.yaml [--kubeconfig K]") == [
        "wfsched run --config @config.yaml@",
        "wfsched run --config @config.yaml@ --kubeconfig @K@",
    ]
    assert expand_notation("x T... [--a b|c] [--d SPEC ...]") == [
        "x @T@",
        "x @T@ --a b",
        "x @T@ --a c",
        "x @T@ --d @SPEC@",
    ]


@pytest.mark.parametrize("command", COMMANDS, ids=str)
def test_documented_command_works(
    command: DocCommand,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in [n for n in os.environ if _is_daemon_override(n)]:
        monkeypatch.delenv(name)  # the documents assume no overrides
    argvs = concrete_commands(command)
    assert argvs, f"{command}: nothing to run"
    for marked in argvs:
        argv = [resolve(word, tmp_path) for word in marked]
        program = argv[0]
        if program in _TAKES_PATHS:
            assert_paths_exist(marked)
        if program == "bash":
            check_script(argv)
        elif program == "scheduler/devtools/assets/build.sh":
            check_build(argv)
        elif program in ("wfsched", ".venv/bin/wfsched"):
            venv_program(program)
            check_wfsched(argv, tmp_path, capsys)
        elif program in ("python", ".venv/bin/python"):
            check_python(argv)
        elif program in ("pytest", ".venv/bin/pytest"):
            check_pytest(argv)
        elif program == "export":
            check_export(argv)
        elif program == "docker":
            check_docker(argv)
        else:
            raise AssertionError(f"{command}: no rule for {program}; add one to this test")


def test_the_installed_wfsched_entry_point_answers_help() -> None:
    proc = run([str(VENV_BIN / "wfsched"), "--help"])
    assert_ok(proc, "wfsched --help")
    for subcommand in ("run", "simulate", "predict", "replay", "dev-cluster", "demo"):
        assert subcommand in proc.stdout
