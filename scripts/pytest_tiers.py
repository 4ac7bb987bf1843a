"""Say which test tiers pytest arguments name: prints ``unit`` and/or ``other``, one a line.

scripts/test.sh runs the unit tier (tests/unit) in its first stage and the other tiers in its
second; with this it skips a stage the arguments cannot reach, without collecting anything.
pytest itself parses the arguments (so an option's value is never taken for a path) and stops
before collecting. A path under tests/unit reaches ``unit``; a path that contains tests/unit
(``tests``, the default test paths) or that does not exist reaches both; any other path reaches
``other``. Exits with pytest's status when the arguments are not valid.

    python scripts/pytest_tiers.py [PYTEST ARGS ...]
"""

from __future__ import annotations

import contextlib
import io
import sys
from pathlib import Path

import pytest

UNIT_TIER = Path("tests/unit")


class _TierFinder:
    """pytest plugin: records the tiers the initial paths reach, then skips the collection."""

    def __init__(self) -> None:
        self.tiers: set[str] = set()

    def pytest_collection(self, session: pytest.Session) -> bool:
        unit = (session.config.rootpath / UNIT_TIER).resolve()
        for arg in session.config.args:
            path = Path(arg.split("::", 1)[0]).resolve()
            if path.exists() and path.is_relative_to(unit):
                self.tiers.add("unit")
            elif path.exists() and not unit.is_relative_to(path):
                self.tiers.add("other")
            else:
                self.tiers.update(("unit", "other"))
        return True  # collection done: nothing collected


def main(argv: list[str]) -> int:
    """Print the tiers ``argv`` reaches; return 0, or pytest's status if it rejects ``argv``."""
    finder = _TierFinder()
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        status = pytest.main(["-p", "no:cacheprovider", *argv], plugins=[finder])
    if status not in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        print(output.getvalue(), file=sys.stderr)
        return int(status)
    for tier in sorted(finder.tiers, key=("unit", "other").index):
        print(tier)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
