"""The spec grammar (cws-semantics.md 5.1) and its resolution in the registry."""

import pytest

from predictors import const, envelope, grammar, lr, lr2, mean, offsets, poly, ponder
from scheduler import registry


@pytest.mark.parametrize(
    ("text", "module", "args", "offset"),
    [
        ("lr", lr, lr.Args(), offsets.MAX),
        ("LINEAR", lr, lr.Args(), offsets.MAX),
        ("linear-offset=STD", lr, lr.Args(), offsets.Offset(kind=offsets.OffsetKind.STD, value=1)),
        ("lr2", lr2, lr2.Args(), offsets.MAX),
        ("linear2-offset=none", lr2, lr2.Args(), offsets.NONE),
        ("mean", mean, mean.Args(), offsets.MAX),
        ("ponder", ponder, ponder.Args(), offsets.MAX),
        ("ponder-offset=none", ponder, ponder.Args(), offsets.NONE),
        ("Ponder(8)", ponder, ponder.Args(warmup=8), offsets.MAX),
        ("const", const, const.Args(), offsets.MAX),
        ("const1000-offset=max", const, const.Args(value_bytes=1000), offsets.MAX),
        ("poly", poly, poly.Args(), offsets.MAX),
        (
            "poly3-offset=95percentile",
            poly,
            poly.Args(degree=3),
            offsets.Offset(kind=offsets.OffsetKind.PERCENTILE, value=95),
        ),
        (
            "lr2-offset=0.5std",
            lr2,
            lr2.Args(),
            offsets.Offset(kind=offsets.OffsetKind.STD, value=0.5),
        ),
        ("envelope", envelope, envelope.Args(), offsets.MAX),
        ("envelope(1.5)", envelope, envelope.Args(headroom=1.5), offsets.MAX),
    ],
)
def test_good_specs(text: str, module: object, args: object, offset: offsets.Offset) -> None:
    spec = registry.parse_predictor(text)
    assert spec.module is module
    assert spec.args == args
    assert spec.offset == offset
    assert spec.warnings == ()
    assert spec.make().predict(1.0) is None or module in (const, envelope)


def test_name_is_everything_before_the_first_dash() -> None:
    spec = grammar.parse("lr-offset=std,foo=bar")
    assert spec.predictor == "lr"
    assert spec.offset == offsets.Offset(kind=offsets.OffsetKind.STD, value=1)
    assert spec.warnings == ("predictor spec 'lr-offset=std,foo=bar': unknown key 'foo' ignored",)


def test_var_is_one_std_with_a_warning_d3() -> None:
    spec = registry.parse_predictor("mean-offset=var")
    assert spec.offset == offsets.Offset(kind=offsets.OffsetKind.STD, value=1)
    assert len(spec.warnings) == 1 and "1std" in spec.warnings[0]


def test_offset_spellings() -> None:
    assert str(grammar.parse_offset("0percentile")) == "0percentile"
    assert str(grammar.parse_offset("100percentile")) == "100percentile"
    assert str(grammar.parse_offset("2std")) == "2std"
    assert str(grammar.parse_offset("max")) == "max"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "missing predictor name"),
        ("-offset=max", "missing predictor name"),
        ("lr-offset", "not key=value"),
        ("lr-=max", "not key=value"),
        ("lr-offset=101percentile", "allowed: none, max"),
        ("lr-offset=2.5percentile", "allowed: none, max"),
        ("lr-offset=abc", "allowed: none, max"),
        ("lr-offset=-1std", "allowed: none, max"),
        ("lr-offset=nanstd", "allowed: none, max"),
        ("foo", "allowed: lr|linear, lr2|linear2"),
        ("mean5", "unknown memory predictor 'mean5'"),
        ("ponder(0)", "unknown memory predictor"),
        ("ponder(x)", "unknown memory predictor"),
        ("poly0", "unknown memory predictor"),
        ("const-5", "not key=value"),
        ("envelope(-1)", "not key=value"),  # split at the first dash, as in CWS
        ("envelope(x)", "unknown memory predictor"),
    ],
)
def test_bad_specs_raise_spec_error_naming_allowed_values(text: str, fragment: str) -> None:
    with pytest.raises(grammar.SpecError, match=fragment.replace("|", r"\|").replace("(", r"\(")):
        registry.parse_predictor(text)


def test_spec_error_is_a_value_error() -> None:
    assert issubclass(grammar.SpecError, ValueError)
