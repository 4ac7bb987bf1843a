import pytest

from scheduler.core import constraints as cs
from scheduler.core import feasibility
from tests.unit.core import core_builders as b

NS = cs.TaintEffect.NO_SCHEDULE
PNS = cs.TaintEffect.PREFER_NO_SCHEDULE
NE = cs.TaintEffect.NO_EXECUTE
EQ = cs.TolerationOperator.EQUAL
EX = cs.TolerationOperator.EXISTS


@pytest.mark.parametrize(
    ("toleration", "taint", "tolerated"),
    [
        (cs.Toleration(key="k", value="v"), cs.Taint(key="k", value="v"), True),
        (cs.Toleration(key="k", value="w"), cs.Taint(key="k", value="v"), False),
        (cs.Toleration(key="k", operator=EX), cs.Taint(key="k", value="v"), True),
        (cs.Toleration(key="other", operator=EX), cs.Taint(key="k"), False),
        (cs.Toleration(operator=EX), cs.Taint(key="anything", effect=NE), True),
        (cs.Toleration(key="k", operator=EX, effect=NS), cs.Taint(key="k", effect=NE), False),
        (cs.Toleration(key="k", operator=EX, effect=NE), cs.Taint(key="k", effect=NE), True),
        (cs.Toleration(key="k", value=""), cs.Taint(key="k"), True),
    ],
)
def test_toleration_matching(toleration: cs.Toleration, taint: cs.Taint, tolerated: bool) -> None:
    assert toleration.tolerates(taint) is tolerated


LABELS = {"zone": "a", "size": "10", "gpu": "true"}


@pytest.mark.parametrize(
    ("operator", "key", "values", "matches"),
    [
        (cs.SelectorOperator.IN, "zone", ("a", "b"), True),
        (cs.SelectorOperator.IN, "zone", ("b",), False),
        (cs.SelectorOperator.IN, "missing", ("a",), False),
        (cs.SelectorOperator.NOT_IN, "zone", ("b",), True),
        (cs.SelectorOperator.NOT_IN, "zone", ("a",), False),
        (cs.SelectorOperator.NOT_IN, "missing", ("a",), True),
        (cs.SelectorOperator.EXISTS, "gpu", (), True),
        (cs.SelectorOperator.EXISTS, "missing", (), False),
        (cs.SelectorOperator.DOES_NOT_EXIST, "missing", (), True),
        (cs.SelectorOperator.DOES_NOT_EXIST, "gpu", (), False),
        (cs.SelectorOperator.GT, "size", ("9",), True),
        (cs.SelectorOperator.GT, "size", ("10",), False),
        (cs.SelectorOperator.LT, "size", ("11",), True),
        (cs.SelectorOperator.LT, "size", ("10",), False),
        (cs.SelectorOperator.GT, "zone", ("1",), False),  # label not an integer
        (cs.SelectorOperator.GT, "size", ("x",), False),  # value not an integer
        (cs.SelectorOperator.GT, "size", ("1", "2"), False),  # needs exactly one value
        (cs.SelectorOperator.LT, "missing", ("5",), False),
    ],
)
def test_selector_requirement(
    operator: cs.SelectorOperator, key: str, values: tuple[str, ...], matches: bool
) -> None:
    assert (
        cs.NodeSelectorRequirement(key=key, operator=operator, values=values).matches(LABELS)
        is matches
    )


def req(key: str, op: str, *values: str) -> cs.NodeSelectorRequirement:
    return cs.NodeSelectorRequirement(key=key, operator=cs.SelectorOperator(op), values=values)


def test_terms_are_ored_and_expressions_anded() -> None:
    both = cs.NodeSelectorTerm(match_expressions=(req("zone", "In", "a"), req("gpu", "Exists")))
    one_fails = cs.NodeSelectorTerm(
        match_expressions=(req("zone", "In", "a"), req("gpu", "DoesNotExist"))
    )
    assert both.matches(node_name="n", labels=LABELS)
    assert not one_fails.matches(node_name="n", labels=LABELS)
    pod = cs.Constraints.of(required_terms=[one_fails, both])
    assert pod.matches_node(node_name="n", labels=LABELS)
    assert not cs.Constraints.of(required_terms=[one_fails]).matches_node(
        node_name="n", labels=LABELS
    )


def test_empty_term_and_empty_terms_match_nothing() -> None:
    assert not cs.NodeSelectorTerm().matches(node_name="n", labels=LABELS)
    assert not cs.Constraints.of(required_terms=[]).matches_node(node_name="n", labels=LABELS)


def test_match_fields_on_node_name() -> None:
    term = cs.NodeSelectorTerm(match_fields=(req("metadata.name", "In", "n1", "n2"),))
    assert term.matches(node_name="n2", labels={})
    assert not term.matches(node_name="n3", labels={})
    not_in = cs.NodeSelectorTerm(match_fields=(req("metadata.name", "NotIn", "n1"),))
    assert not not_in.matches(node_name="n1", labels={})
    assert not_in.matches(node_name="n9", labels={})
    other_field = cs.NodeSelectorTerm(match_fields=(req("metadata.uid", "In", "x"),))
    assert not other_field.matches(node_name="x", labels={})


def test_node_selector_all_pairs_must_match() -> None:
    assert cs.Constraints.of(node_selector={"zone": "a", "gpu": "true"}).matches_node(
        node_name="n", labels=LABELS
    )
    assert not cs.Constraints.of(node_selector={"zone": "a", "gpu": "no"}).matches_node(
        node_name="n", labels=LABELS
    )


def test_constraints_normalise_selector_order_for_hashing() -> None:
    a = cs.Constraints.of(node_selector={"b": "1", "a": "2"})
    assert a == cs.Constraints(node_selector=(("a", "2"), ("b", "1")))
    assert len({a, cs.Constraints(node_selector=(("b", "1"), ("a", "2")))}) == 1


@pytest.mark.parametrize(
    ("node", "pod", "reason"),
    [
        (b.node("n"), cs.Constraints(), None),
        (b.node("n", unschedulable=True), cs.Constraints(), feasibility.REASON_UNSCHEDULABLE),
        (
            b.node("n", unschedulable=True),
            cs.Constraints.of(
                tolerations=[cs.Toleration(key=cs.UNSCHEDULABLE_TAINT_KEY, operator=EX)]
            ),
            None,
        ),
        (b.node("n", ready=False), cs.Constraints(), feasibility.REASON_NOT_READY),
        (
            b.node("n", ready=False),
            cs.Constraints.of(tolerations=[cs.Toleration(key=cs.NOT_READY_TAINT_KEY, operator=EX)]),
            None,
        ),
        (
            b.node("n", taints=[cs.Taint(key="k", value="v")]),
            cs.Constraints(),
            "node(s) had untolerated taint {k: v}",
        ),
        (
            b.node("n", taints=[cs.Taint(key="k", effect=NE)]),
            cs.Constraints(),
            "node(s) had untolerated taint {k: }",
        ),
        (b.node("n", taints=[cs.Taint(key="k", effect=PNS)]), cs.Constraints(), None),
        (
            b.node("n", labels={"a": "1"}),
            cs.Constraints.of(node_selector={"a": "2"}),
            feasibility.REASON_AFFINITY,
        ),
        # filter order: cordon is reported before taints and affinity
        (
            b.node("n", unschedulable=True, taints=[cs.Taint(key="k")]),
            cs.Constraints.of(node_selector={"a": "2"}),
            feasibility.REASON_UNSCHEDULABLE,
        ),
        (
            b.node("n", taints=[cs.Taint(key="k")]),
            cs.Constraints.of(node_selector={"a": "2"}),
            "node(s) had untolerated taint {k: }",
        ),
    ],
)
def test_static_reason(node: object, pod: cs.Constraints, reason: str | None) -> None:
    assert feasibility.static_reason(node, pod) == reason  # type: ignore[arg-type]


def test_prefer_no_schedule_count() -> None:
    node = b.node(
        "n",
        taints=[cs.Taint(key="a", effect=PNS), cs.Taint(key="b", effect=PNS), cs.Taint(key="c")],
    )
    assert feasibility.prefer_no_schedule_count(node, cs.Constraints()) == 2
    tolerant = cs.Constraints.of(tolerations=[cs.Toleration(key="a", operator=EX)])
    assert feasibility.prefer_no_schedule_count(node, tolerant) == 1


def test_fit_error_message_sorted_by_count_then_text() -> None:
    message = feasibility.fit_error_message(
        12,
        {
            "node(s) had untolerated taint {key: value}": 4,
            "Insufficient memory": 8,
            "Insufficient cpu": 4,
        },
    )
    assert message == (
        "0/12 nodes are available: 8 Insufficient memory, 4 Insufficient cpu, "
        "4 node(s) had untolerated taint {key: value}."
    )
    assert (
        feasibility.fit_error_message(0, {})
        == "0/0 nodes are available: no nodes available to schedule pods."
    )
