"""Unit tier: a short per-test timeout, so a test that hangs fails in seconds, not minutes.

Every test under tests/unit gets ``UNIT_TEST_TIMEOUT_S`` (pytest-timeout) unless it carries its
own ``timeout`` marker; the other tiers keep the project-wide ``timeout`` from pyproject.toml.
"""

from __future__ import annotations

from pathlib import Path

import pytest

UNIT_TEST_TIMEOUT_S = 20
_UNIT_DIR = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Hooks of a conftest see every collected item, not only this directory's: filter by path.
    for item in items:
        if item.path.is_relative_to(_UNIT_DIR) and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(UNIT_TEST_TIMEOUT_S))
