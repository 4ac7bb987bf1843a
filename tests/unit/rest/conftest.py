"""The ``harness`` fixture: running SchedulerLoops with the REST API, stopped after the test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from rest_helpers import Harness


@pytest.fixture
def harness() -> Iterator[Any]:
    made: list[Harness] = []

    def make(**kwargs: Any) -> Harness:
        h = Harness(**kwargs).start()
        made.append(h)
        return h

    yield make
    for h in made:
        h.stop()
