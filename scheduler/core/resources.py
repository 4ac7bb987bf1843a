"""Resource amounts and Kubernetes quantity parsing.

Data flow: the translation layer turns ``resources.requests`` maps and node ``allocatable`` maps
(strings such as ``"500m"`` or ``"1.5Gi"``) into :class:`Resources` with
:meth:`Resources.from_quantities`; everything downstream computes on exact integers: CPU in
millicores, memory in bytes, the pod count, and extended resources (``nvidia.com/gpu``,
``ephemeral-storage``, hugepages, ...) in their base unit.

Quantity grammar (``k8s.io/apimachinery/pkg/api/resource``)::

    quantity  ::= [sign] number [suffix]
    number    ::= digits | digits "." [digits] | "." digits
    suffix    ::= binarySI | decimalSI | exponent
    binarySI  ::= Ki | Mi | Gi | Ti | Pi | Ei
    decimalSI ::= n | u | m | "" | k | M | G | T | P | E
    exponent  ::= ("e" | "E") [sign] digits

Conversion to integers rounds **up** (like ``Quantity.MilliValue``/``Value``), so ``"1n"`` CPU is
1 millicore and ``"0.5"`` bytes is 1 byte. Negative quantities are rejected: no request,
capacity or usage may be negative.
"""

from __future__ import annotations

import dataclasses
import decimal
import functools
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from scheduler.core import errors

CPU = "cpu"
MEMORY = "memory"
PODS = "pods"

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL_EXP = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_QUANTITY_RE = re.compile(
    r"(?P<sign>[+-]?)(?P<number>\d+(?:\.\d*)?|\.\d+)"
    r"(?:(?P<binary>Ki|Mi|Gi|Ti|Pi|Ei)|[eE](?P<exp>[+-]?\d+)|(?P<decimal>[numkMGTPE]?))"
)
# Anything beyond this is not a meaningful amount and would only stress Decimal arithmetic.
_MAX_EXPONENT = 30
_MAX_INT = 2**63 - 1
_CONTEXT = decimal.Context(prec=80, traps=[decimal.InvalidOperation, decimal.Overflow])


def parse_quantity(value: str | int | float) -> decimal.Decimal:
    """Parse a Kubernetes quantity exactly.

    Args:
        value: A quantity string (``"100m"``, ``"1.5Gi"``, ``"1e3"``, ``"2"``), or an ``int`` or
            finite ``float`` (taken as a plain number).

    Returns:
        The exact value as a ``Decimal`` in base units (cores for CPU, bytes for memory).

    Raises:
        QuantityError: If the value is malformed, negative, not finite, or absurdly large.
    """
    if isinstance(value, bool):
        raise errors.QuantityError(f"quantity must be a string or number, not {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise errors.QuantityError(f"negative quantity {value!r}")
        return decimal.Decimal(value)
    if isinstance(value, float):
        if not math.isfinite(value) or value < 0:
            raise errors.QuantityError(f"quantity must be finite and non-negative: {value!r}")
        return decimal.Decimal(repr(value))
    if not isinstance(value, str):
        raise errors.QuantityError(f"quantity must be a string or number, not {value!r}")
    match = _QUANTITY_RE.fullmatch(value.strip())
    if match is None:
        raise errors.QuantityError(f"malformed quantity {value!r}")
    number = decimal.Decimal(match["number"])
    if match["sign"] == "-" and number != 0:
        raise errors.QuantityError(f"negative quantity {value!r}")
    if match["binary"]:
        return _CONTEXT.multiply(number, decimal.Decimal(_BINARY[match["binary"]]))
    exponent = int(match["exp"]) if match["exp"] is not None else _DECIMAL_EXP[match["decimal"]]
    if abs(exponent) > _MAX_EXPONENT:
        raise errors.QuantityError(f"quantity exponent out of range: {value!r}")
    return _CONTEXT.multiply(number, _CONTEXT.power(decimal.Decimal(10), exponent))


def _ceil_int(amount: decimal.Decimal, original: object) -> int:
    result = int(amount.to_integral_value(rounding=decimal.ROUND_CEILING))
    if result > _MAX_INT:
        raise errors.QuantityError(f"quantity too large: {original!r}")
    return result


# Pods repeat a few quantity strings ("500m", "36Gi") in every watch event: both parsers are
# pure, so they remember their last few thousand answers (errors are not remembered).
@functools.lru_cache(maxsize=4096)
def cpu_millis(value: str | int | float) -> int:
    """Return a CPU quantity in millicores, rounded up (``"0.5"`` → 500, ``"1n"`` → 1)."""
    return _ceil_int(_CONTEXT.multiply(parse_quantity(value), decimal.Decimal(1000)), value)


@functools.lru_cache(maxsize=4096)
def integer_value(value: str | int | float) -> int:
    """Return a quantity in base units rounded up (bytes for memory, a count otherwise)."""
    return _ceil_int(parse_quantity(value), value)


def _normalise(extended: Iterable[tuple[str, int]]) -> tuple[tuple[str, int], ...]:
    merged: dict[str, int] = {}
    for name, amount in extended:
        merged[name] = merged.get(name, 0) + amount
    return tuple(sorted((name, amount) for name, amount in merged.items() if amount != 0))


@dataclass(frozen=True, slots=True, kw_only=True)
class Resources:
    """An exact amount of every resource kind a pod can request or a node can offer.

    Values are plain integers and may become negative through subtraction (a node that is
    over-committed by pods bound elsewhere has negative free memory); constructors that read
    user input reject negatives. ``extended`` is kept sorted, merged and without zero entries so
    that equal amounts compare and hash equal.

    Attributes:
        cpu_millis: CPU in millicores.
        memory_bytes: Memory in bytes.
        pods: Pod slots (a pod's effective request always has ``pods == 1``).
        extended: Every other resource as sorted ``(name, amount)`` pairs.
    """

    cpu_millis: int = 0
    memory_bytes: int = 0
    pods: int = 0
    extended: tuple[tuple[str, int], ...] = ()
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.extended:
            object.__setattr__(self, "extended", _normalise(self.extended))
        # Amounts are dictionary keys on the hot path of every cycle: hash once.
        key = (self.cpu_millis, self.memory_bytes, self.pods, self.extended)
        object.__setattr__(self, "_hash", hash(key))

    def __hash__(self) -> int:
        return self._hash

    @classmethod
    def of(
        cls,
        *,
        cpu_millis: int = 0,
        memory_bytes: int = 0,
        pods: int = 0,
        extended: Mapping[str, int] | None = None,
    ) -> Resources:
        """Build from keyword amounts, taking extended resources as a mapping."""
        return cls(
            cpu_millis=cpu_millis,
            memory_bytes=memory_bytes,
            pods=pods,
            extended=tuple((extended or {}).items()),
        )

    @classmethod
    def from_quantities(cls, quantities: Mapping[str, str | int | float]) -> Resources:
        """Parse a Kubernetes resource list such as ``{"cpu": "500m", "memory": "1Gi"}``.

        Raises:
            QuantityError: If any quantity is malformed or negative.
        """
        cpu = memory = pods = 0
        extended: list[tuple[str, int]] = []
        for name, raw in quantities.items():
            if name == CPU:
                cpu = cpu_millis(raw)
            elif name == MEMORY:
                memory = integer_value(raw)
            elif name == PODS:
                pods = integer_value(raw)
            else:
                extended.append((name, integer_value(raw)))
        return cls(cpu_millis=cpu, memory_bytes=memory, pods=pods, extended=tuple(extended))

    def get(self, name: str) -> int:
        """Return the amount of one resource by its Kubernetes name (``cpu`` in millicores)."""
        if name == CPU:
            return self.cpu_millis
        if name == MEMORY:
            return self.memory_bytes
        if name == PODS:
            return self.pods
        for key, amount in self.extended:
            if key == name:
                return amount
        return 0

    def items(self) -> Iterator[tuple[str, int]]:
        """Yield ``(name, amount)`` for every non-zero resource, core kinds first."""
        for name, amount in (
            (CPU, self.cpu_millis),
            (MEMORY, self.memory_bytes),
            (PODS, self.pods),
        ):
            if amount != 0:
                yield name, amount
        yield from self.extended

    def __add__(self, other: Resources) -> Resources:
        return Resources(
            cpu_millis=self.cpu_millis + other.cpu_millis,
            memory_bytes=self.memory_bytes + other.memory_bytes,
            pods=self.pods + other.pods,
            extended=self.extended + other.extended,
        )

    def __sub__(self, other: Resources) -> Resources:
        return Resources(
            cpu_millis=self.cpu_millis - other.cpu_millis,
            memory_bytes=self.memory_bytes - other.memory_bytes,
            pods=self.pods - other.pods,
            extended=self.extended + tuple((name, -amount) for name, amount in other.extended),
        )

    def maximum(self, other: Resources) -> Resources:
        """Return the element-wise maximum of two amounts."""
        names = {name for name, _ in self.extended} | {name for name, _ in other.extended}
        return Resources(
            cpu_millis=max(self.cpu_millis, other.cpu_millis),
            memory_bytes=max(self.memory_bytes, other.memory_bytes),
            pods=max(self.pods, other.pods),
            extended=tuple((name, max(self.get(name), other.get(name))) for name in names),
        )

    def with_memory(self, memory_bytes: int) -> Resources:
        """Return a copy with a different memory amount (used for planned requests)."""
        return dataclasses.replace(self, memory_bytes=memory_bytes)

    def insufficient(self, free: Resources) -> tuple[str, ...]:
        """Name every resource this request asks for (amount > 0) that ``free`` cannot cover.

        Resources the request does not ask for are never reported, even if ``free`` is negative
        for them, which is how kube-scheduler's NodeResourcesFit behaves.
        """
        return tuple(
            name for name, amount in self.items() if amount > 0 and amount > free.get(name)
        )

    def fits(self, free: Resources) -> bool:
        """Return True when every requested amount is covered by ``free``."""
        return not self.insufficient(free)
