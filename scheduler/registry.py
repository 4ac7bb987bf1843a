"""The one place that maps policy and predictor names to their modules and factories.

Ranking policies, node-assignment policies and memory predictors are each one module with a
``NAME``, ``ALIASES`` and a factory; this module lists those modules, resolves user-facing names
and aliases (case-insensitively) and parses the spec strings (``"rank_min-roundrobin"``,
``"ponder-offset=none"``) into typed specs, raising errors that name the allowed values.
"""

from __future__ import annotations

# --- ranking and assignment policies (owned by the scheduling core) ------------------------
import dataclasses
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

from policies.assignment import balanced, binpack, fair, loadaware, roundrobin
from policies.assignment import random as random_assignment
from policies.ranking import (
    critical_path,
    fifo,
    gs_max,
    gs_min,
    lff_max,
    lff_min,
    max_input,
    min_input,
    rank,
    rank_max,
    rank_min,
)
from policies.ranking import random as random_ranking
from scheduler.core import interfaces

RANKING_MODULES: tuple[types.ModuleType, ...] = (
    fifo,
    rank,
    rank_min,
    rank_max,
    lff_min,
    lff_max,
    gs_min,
    gs_max,
    random_ranking,
    max_input,
    min_input,
    critical_path,
)
"""Every ranking policy module, in the order tables and ``--compare`` list them."""

ASSIGNMENT_MODULES: tuple[types.ModuleType, ...] = (
    roundrobin,
    random_assignment,
    fair,
    binpack,
    balanced,
    loadaware,
)
"""Every assignment policy module; the first is the default."""

DEFAULT_ASSIGNMENT = "roundrobin"
"""The assignment used when a strategy string has no assignment part (as in CWS)."""

_P = TypeVar("_P")


class PolicyError(ValueError):
    """A strategy string, policy name or policy argument is invalid."""


class UnknownPolicyError(PolicyError):
    """A policy name or alias is not registered; the message lists the allowed names."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyEntry(Generic[_P]):
    """One registered policy module.

    Attributes:
        name: Canonical name (the module's ``NAME``).
        aliases: Other accepted spellings (the module's ``ALIASES``).
        kind: ``"ranking"`` or ``"assignment"``.
        args_type: The module's ``Args`` dataclass, or ``None`` if it takes no arguments.
        doc: First line of the module docstring.
    """

    name: str
    aliases: tuple[str, ...]
    kind: str
    args_type: type | None
    doc: str
    factory: Callable[[Any], _P]

    def make(self, args: Mapping[str, object] | None = None) -> _P:
        """Build a fresh policy instance, validating ``args`` against ``Args``.

        Raises:
            PolicyError: If ``args`` names unknown keys or the policy takes no arguments.
        """
        if self.args_type is None:
            if args:
                raise PolicyError(f"{self.kind} policy {self.name!r} takes no arguments")
            return self.factory(None)
        allowed = {f.name for f in dataclasses.fields(self.args_type)}
        unknown = sorted(set(args or {}) - allowed)
        if unknown:
            raise PolicyError(
                f"{self.kind} policy {self.name!r}: unknown argument(s) {', '.join(unknown)}; "
                f"allowed: {', '.join(sorted(allowed))}"
            )
        try:
            return self.factory(self.args_type(**(args or {})))
        except (TypeError, ValueError) as exc:
            raise PolicyError(
                f"{self.kind} policy {self.name!r}: invalid arguments: {exc}"
            ) from None


def _entries(modules: tuple[types.ModuleType, ...], kind: str) -> dict[str, PolicyEntry[_P]]:
    table: dict[str, PolicyEntry[_P]] = {}
    for module in modules:
        entry: PolicyEntry[_P] = PolicyEntry(
            name=cast(str, module.NAME),
            aliases=cast(tuple[str, ...], module.ALIASES),
            kind=kind,
            args_type=cast(type | None, getattr(module, "Args", None)),
            doc=(module.__doc__ or "").strip().splitlines()[0],
            factory=cast(Callable[[Any], _P], module.make),
        )
        table[entry.name] = entry
    return table


RANKINGS: dict[str, PolicyEntry[interfaces.RankingPolicy]] = _entries(RANKING_MODULES, "ranking")
ASSIGNMENTS: dict[str, PolicyEntry[interfaces.AssignmentPolicy]] = _entries(
    ASSIGNMENT_MODULES, "assignment"
)


def _lookup(table: Mapping[str, PolicyEntry[_P]], kind: str, name: str) -> PolicyEntry[_P]:
    wanted = name.strip().lower()
    for entry in table.values():
        if wanted == entry.name or wanted in entry.aliases:
            return entry
    names = ", ".join(table)
    aliases = ", ".join(alias for entry in table.values() for alias in entry.aliases)
    raise UnknownPolicyError(
        f"unknown {kind} policy {name!r}; allowed: {names} (aliases: {aliases})"
    )


def ranking(name: str) -> PolicyEntry[interfaces.RankingPolicy]:
    """Resolve a ranking name or alias, case-insensitively.

    Raises:
        UnknownPolicyError: With the allowed names in the message.
    """
    return _lookup(RANKINGS, "ranking", name)


def assignment(name: str) -> PolicyEntry[interfaces.AssignmentPolicy]:
    """Resolve an assignment name or alias, case-insensitively.

    Raises:
        UnknownPolicyError: With the allowed names in the message.
    """
    return _lookup(ASSIGNMENTS, "assignment", name)


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicySpec:
    """A parsed strategy: canonical ranking and assignment names.

    Attributes:
        ranking: Canonical ranking name.
        assignment: Canonical assignment name.
    """

    ranking: str
    assignment: str = DEFAULT_ASSIGNMENT

    def __str__(self) -> str:
        return f"{self.ranking}-{self.assignment}"

    def build(
        self,
        *,
        ranking_args: Mapping[str, object] | None = None,
        assignment_args: Mapping[str, object] | None = None,
        memory_planner: interfaces.MemoryPlanner | None = None,
    ) -> interfaces.Policies:
        """Instantiate fresh policies for one scheduler (round-robin cursor at the start)."""
        return interfaces.Policies(
            ranking=RANKINGS[self.ranking].make(ranking_args),
            assignment=ASSIGNMENTS[self.assignment].make(assignment_args),
            memory_planner=memory_planner,
        )


def parse_strategy(text: str) -> PolicySpec:
    """Parse ``"<ranking>[-<assignment>]"`` case-insensitively (cws-semantics 3.1).

    Raises:
        PolicyError: If the string is empty, has an empty part or more than two parts.
        UnknownPolicyError: If a part is not a registered name or alias.
    """
    parts = text.strip().split("-")
    if len(parts) > 2:
        raise PolicyError(
            f"strategy {text!r} has {len(parts)} parts; expected <ranking>[-<assignment>]"
        )
    if any(not part.strip() for part in parts):
        raise PolicyError(f"strategy {text!r} has an empty part; expected <ranking>[-<assignment>]")
    ranking_name = ranking(parts[0]).name
    assignment_name = assignment(parts[1]).name if len(parts) == 2 else DEFAULT_ASSIGNMENT
    return PolicySpec(ranking=ranking_name, assignment=assignment_name)


# --- memory predictors and offsets ----------------------------------------------------------

# Imported here, not at the top, so that this section stays self-contained below its marker.
from typing import Protocol  # noqa: E402

import predictors.base  # noqa: E402
import predictors.const  # noqa: E402
import predictors.envelope  # noqa: E402
import predictors.grammar  # noqa: E402
import predictors.last  # noqa: E402
import predictors.lr  # noqa: E402
import predictors.lr2  # noqa: E402
import predictors.mean  # noqa: E402
import predictors.offsets  # noqa: E402
import predictors.poly  # noqa: E402
import predictors.ponder  # noqa: E402
import predictors.steady  # noqa: E402
import predictors.tovar  # noqa: E402
import predictors.wittlr  # noqa: E402
import predictors.wittpct  # noqa: E402


class PredictorModule(Protocol):
    """What each predictor module provides (``predictors/<name>.py``)."""

    NAME: str
    ALIASES: tuple[str, ...]
    SYNTAX: str

    def parse_args(self, suffix: str) -> Any:
        """Return the module's ``Args`` for the name suffix, or ``None`` if it is not theirs."""
        ...

    def make(self, args: Any) -> predictors.base.Model:
        """Return an empty model (without offset) for these arguments."""
        ...


PREDICTOR_MODULES: tuple[PredictorModule, ...] = (
    predictors.lr,
    predictors.lr2,
    predictors.mean,
    predictors.last,
    predictors.ponder,
    predictors.const,
    predictors.poly,
    predictors.envelope,
    predictors.wittlr,
    predictors.wittpct,
    predictors.tovar,
    predictors.steady,
)
"""Every memory predictor; a spec's name is resolved against these, in this order.

A module may define ``DEFAULT_OFFSET`` (a ``predictors.offsets.Offset``): it applies when the
spec names no offset, instead of ``max``.
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class PredictorSpec:
    """A resolved memory predictor spec: module, its arguments and the offset.

    Attributes:
        text: The spec string as given (``"ponder(8)-offset=none"``).
        module: The predictor module.
        args: The module's ``Args``.
        offset: The offset wrapped around the model (``max`` when absent).
        warnings: Messages to log once per execution (unknown keys, ``var``).
    """

    text: str
    module: PredictorModule
    args: Any
    offset: predictors.offsets.Offset
    warnings: tuple[str, ...] = ()

    def make(self) -> predictors.base.MemoryPredictor:
        """Return a fresh predictor (model plus offset) for one process of one execution."""
        return predictors.offsets.OffsetPredictor(self.module.make(self.args), self.offset)


def predictor_syntax() -> str:
    """Return the accepted predictor names, for help texts and error messages."""
    return ", ".join(module.SYNTAX for module in PREDICTOR_MODULES)


def parse_predictor(text: str) -> PredictorSpec:
    """Parse and resolve a memory predictor spec such as ``"lr2-offset=95percentile"``.

    The name is matched case-insensitively against each module's ``NAME`` and ``ALIASES``;
    what follows a matching prefix (``8`` in ``const8``, ``(8)`` in ``ponder(8)``) goes to the
    module's ``parse_args``, which accepts or declines it.

    Raises:
        predictors.grammar.SpecError: Unknown predictor or bad offset; names the allowed values.
    """
    spec = predictors.grammar.parse(text)
    for module in PREDICTOR_MODULES:
        for name in (module.NAME, *module.ALIASES):
            if spec.predictor.startswith(name):
                args = module.parse_args(spec.predictor[len(name) :])
                if args is not None:
                    default = getattr(module, "DEFAULT_OFFSET", predictors.offsets.MAX)
                    return PredictorSpec(
                        text=text,
                        module=module,
                        args=args,
                        offset=spec.offset if spec.offset_given else default,
                        warnings=spec.warnings,
                    )
    raise predictors.grammar.SpecError(
        f"unknown memory predictor {spec.predictor!r}; allowed: {predictor_syntax()}"
    )
