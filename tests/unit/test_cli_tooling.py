"""``wfsched`` without the developer tooling: its subcommands say what to install, run still works.

The container image has no ``scheduler/devtools`` and no ``cryptography``. Here they are made
unimportable by a ``None`` entry in ``sys.modules`` (and the modules that import them are
dropped from it, so they import again); tests/chart/test_dockerfile.py checks the real install.
"""

from __future__ import annotations

import argparse
import sys

import pytest

from scheduler import cli


def _block(monkeypatch: pytest.MonkeyPatch, missing: str) -> None:
    """Make ``missing`` unimportable and let every module that needs it import afresh."""
    for name in list(sys.modules):
        if name.startswith(("scheduler.cli.", "scheduler.devtools")):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, missing, None)


def test_each_tooling_command_names_its_module() -> None:
    assert set(cli._TOOLING_COMMANDS) < set(cli._COMMAND_MODULES)
    (subcommands,) = [
        a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction)
    ]
    commands = subcommands.choices
    assert set(cli._TOOLING_COMMANDS.values()) < set(commands)
    assert not any(isinstance(p.get_default("func"), cli.Unavailable) for p in commands.values())


def test_without_the_tooling_its_commands_say_how_to_get_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _block(monkeypatch, "scheduler.devtools")
    for argv in (["demo", "--nodes", "3"], ["dev-cluster", "up"], ["replay"], ["simulate", "x"]):
        assert cli.main(argv) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"wfsched {argv[0]}: this installation has no developer tooling")
        assert "pip install '.[tools]'" in err
    assert cli.main(["run", "--check-config"]) == 0
    assert capsys.readouterr().out.strip() == "configuration ok"


def test_unavailable_commands_are_listed_as_such(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _block(monkeypatch, "scheduler.devtools")
    with pytest.raises(SystemExit) as leaving:
        cli.main(["--help"])
    assert leaving.value.code == 0
    listed = " ".join(capsys.readouterr().out.split())
    assert "demo (not available: this installation has no developer tooling" in listed


def test_without_cryptography_the_control_plane_asks_for_the_tools_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _block(monkeypatch, "cryptography")
    assert cli.main(["dev-cluster", "status"]) == 1
    assert "pip install 'wfsched[tools]'" in capsys.readouterr().err
    # The simulator needs no certificates.
    assert not isinstance(cli.build_parser().parse_args(["simulate", "x"]).func, cli.Unavailable)


def test_an_ordinary_missing_module_is_a_bug_not_missing_tooling(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _block(monkeypatch, "yaml")  # the local control plane reads and writes YAML
    with pytest.raises(ModuleNotFoundError, match="yaml"):
        cli.build_parser()


def test_a_known_command_still_rejects_unknown_arguments(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as leaving:
        cli.main(["run", "--check-config", "--no-such-flag"])
    assert leaving.value.code == 2
    assert "unrecognized arguments: --no-such-flag" in capsys.readouterr().err
