"""The predictor spec grammar of CWS: ``<predictor>[-<key>=<value>[,<key>=<value>...]]``.

``parse`` splits a spec string exactly as CWS does (cws-semantics.md 5.1): the predictor token is
everything before the **first** ``-``, compared case-insensitively; keys and values are
lower-cased; every parameter must be ``key=value``; ``offset`` is the only key (unknown keys only
produce a warning); an absent offset means ``max``. The predictor token itself (``lr``,
``ponder(8)``, ``const1000``, ...) is resolved to a module by ``scheduler.registry``.

Warnings are returned in the spec instead of being logged, so this module stays pure; the caller
logs them once per execution.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from predictors import offsets

OFFSET_FORMS = ("none", "max", "<p>percentile (p = 0..100)", "<k>std (k >= 0; std = 1std)", "var")
"""The offset spellings accepted, for error messages."""

_PERCENTILE = re.compile(r"(\d+)percentile")
_STD = re.compile(r"(.*)std")


class SpecError(ValueError):
    """A predictor or offset spec that cannot be parsed; the message names the allowed values."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PredictorSpec:
    """A syntactically parsed predictor spec.

    Attributes:
        text: The spec string as given.
        predictor: The lower-cased predictor token (``"ponder(8)"``), not yet resolved.
        offset: The parsed offset (``max`` when absent).
        warnings: Messages for the caller to log (unknown keys, ``var``).
        offset_given: Whether the spec named an offset (a module may then supply its own
            default instead of ``max``).
    """

    text: str
    predictor: str
    offset: offsets.Offset
    warnings: tuple[str, ...] = ()
    offset_given: bool = False


def parse(text: str) -> PredictorSpec:
    """Parse a spec string.

    Raises:
        SpecError: Empty predictor token, a parameter that is not ``key=value``, or a bad offset.
    """
    predictor, _, rest = text.strip().partition("-")
    predictor = predictor.strip().lower()
    if not predictor:
        raise SpecError(f"predictor spec {text!r}: missing predictor name")
    offset = offsets.MAX
    offset_given = False
    warnings: list[str] = []
    if rest:
        for param in rest.split(","):
            key, sep, value = param.partition("=")
            key, value = key.strip().lower(), value.strip().lower()
            if not sep or not key:
                raise SpecError(
                    f"predictor spec {text!r}: parameter {param!r} is not key=value "
                    "(the only key is 'offset')"
                )
            if key != "offset":
                warnings.append(f"predictor spec {text!r}: unknown key {key!r} ignored")
                continue
            offset = parse_offset(value)
            offset_given = True
            if value == "var":
                warnings.append(
                    f"predictor spec {text!r}: offset 'var' is computed as '1std' "
                    "(CWS added a variance in bytes^2 to bytes)"
                )
    return PredictorSpec(
        text=text,
        predictor=predictor,
        offset=offset,
        warnings=tuple(warnings),
        offset_given=offset_given,
    )


def parse_offset(value: str) -> offsets.Offset:
    """Parse an offset value (already lower-cased).

    Raises:
        SpecError: The value is none of :data:`OFFSET_FORMS`.
    """
    if value == "none":
        return offsets.NONE
    if value == "max":
        return offsets.MAX
    if value == "var":
        return offsets.Offset(kind=offsets.OffsetKind.STD, value=1.0)
    if match := _PERCENTILE.fullmatch(value):
        p = int(match.group(1))
        if p <= 100:
            return offsets.Offset(kind=offsets.OffsetKind.PERCENTILE, value=float(p))
    elif match := _STD.fullmatch(value):
        k = _parse_float(match.group(1)) if match.group(1) else 1.0
        if k is not None and k >= 0:
            return offsets.Offset(kind=offsets.OffsetKind.STD, value=k)
    raise SpecError(f"unknown offset {value!r}; allowed: {', '.join(OFFSET_FORMS)}")


def _parse_float(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None
