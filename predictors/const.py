"""``const<X>``: always X bytes (X a non-negative integer, default 0).

The version stays 0. Unlike CWS, the constant applies immediately, before the process's first
observation (the D24 fix: it needs no data). ``const0`` with the default ``max`` offset is the
"max observed" baseline: 0 + the largest peak seen, no prediction before the first one.
Maturity: stable.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from predictors import base

NAME = "const"
ALIASES: tuple[str, ...] = ()
SYNTAX = "const<X bytes>"


@dataclass(frozen=True, slots=True, kw_only=True)
class Args:
    """Arguments of ``const``.

    Attributes:
        value_bytes: The constant answer in bytes; 0 means "no opinion" unless an offset adds to
            it.
    """

    value_bytes: int = 0


def parse_args(suffix: str) -> Args | None:
    """Return the arguments for ``const<X>`` (``const`` alone = ``const0``), else ``None``."""
    if suffix == "":
        return Args()
    return Args(value_bytes=int(suffix)) if suffix.isdigit() else None


class ConstModel(base.Model):
    """Predicts the same number of bytes for every input; never changes its version."""

    def __init__(self, value_bytes: int) -> None:
        super().__init__()
        self.value_bytes = value_bytes

    def _after_observe(self) -> int:
        return 0

    def predict_many(self, xs: base.FloatArray) -> base.FloatArray:
        """See :meth:`base.Model.predict_many`."""
        return np.full(xs.shape, float(self.value_bytes))


def make(args: Args) -> base.Model:
    """Return a constant model."""
    return ConstModel(args.value_bytes)
