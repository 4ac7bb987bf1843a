"""``wittlr``: Witt et al.'s feedback-based linear regression (HPCS 2019), "LR + std" variant.

Model: ordinary least squares of peak memory on input size over the observations of the process
(the same fit as ``lr``), refitted after every observation. What distinguishes the published
variants is the offset added to the fit; the spec's offset selects it:

- ``wittlr`` (no offset given) = OLS + one standard deviation of the in-sample residuals, the
  variant with a dispersion-based margin (``DEFAULT_OFFSET`` = ``1std``);
- ``wittlr-offset=max`` = OLS + the largest under-prediction, identical to ``lr`` (CWS's
  default, and the "Witt-LR" baseline of the Ponder paper);
- ``wittlr-offset=<k>std`` or ``-offset=<p>percentile`` for other margins.

Witt et al. retry a failed attempt by doubling its allocation; in wfsched's tables every
predictor is replayed with the same retry rule (``--retry``), so choose ``--retry double`` to
reproduce theirs. No prediction with fewer than two samples or all inputs equal. Version: one
per observation. Maturity: baseline.
"""

from __future__ import annotations

from dataclasses import dataclass

from predictors import base, lr, offsets

NAME = "wittlr"
ALIASES: tuple[str, ...] = ()
SYNTAX = "wittlr"

DEFAULT_OFFSET = offsets.Offset(kind=offsets.OffsetKind.STD, value=1.0)
"""The offset used when the spec names none: one standard deviation of the residuals."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Args:
    """``wittlr`` takes no arguments (the offset comes from the spec)."""


def parse_args(suffix: str) -> Args | None:
    """Return the arguments for the name suffix after ``wittlr``; only the empty suffix."""
    return Args() if suffix == "" else None


def make(args: Args) -> base.Model:
    """Return an empty OLS model (the offset wrapper adds Witt's margin)."""
    del args
    return lr.LinearModel()
