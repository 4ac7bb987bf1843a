"""envelope: wfsched's predictor, on hand-computed values."""

import math

import pytest

from predictors import base, envelope

GIB = base.GIB
M = base.PONDER_MARGIN_BYTES


def test_no_samples_no_prediction() -> None:
    assert envelope.make(envelope.Args()).predict(GIB) is None


def test_one_sample_triples_the_largest_peak() -> None:
    model = envelope.make(envelope.Args())
    model.observe(1 * GIB, 1 * GIB)
    assert model.predict(0.5 * GIB) == pytest.approx(3 * GIB + M)  # 1 x (1 + 2/1) + M
    assert model.predict(2 * GIB) == pytest.approx(6 * GIB + M)  # input twice as large


def test_headroom_decays_with_one_over_sqrt_n() -> None:
    model = envelope.make(envelope.Args())
    for x, y in ((1, 0.5), (2, 1.0), (4, 0.8), (3, 0.7)):
        model.observe(x * GIB, y * GIB)
    assert model.version == 4
    # Y = 1 GiB, X = 4 GiB, n = 4: headroom 1 + 2/2 = 2
    assert model.predict(1 * GIB) == pytest.approx(2 * GIB + M)
    assert model.predict(8 * GIB) == pytest.approx(4 * GIB + M)
    custom = envelope.make(envelope.Args(headroom=0.5))
    custom.observe(0, 100)
    assert custom.predict(0) == pytest.approx(150 + M)  # X = 0: no input scaling


def test_failure_is_a_lower_bound_d8() -> None:
    model = envelope.make(envelope.Args())
    model.observe(1 * GIB, 1 * GIB)
    version = model.version
    model.observe_failure(1 * GIB, 2 * GIB)
    assert model.version == version + 1
    assert model.predict(1 * GIB) == pytest.approx(6 * GIB + M)
    model.observe_failure(1 * GIB, 1.5 * GIB)  # weaker bound: no change
    assert model.version == version + 1


def test_a_prior_answers_as_one_observation_until_the_first_own_peak() -> None:
    model = envelope.make(envelope.Args())
    model.seed(base.Prior(source=base.PriorSource.TOOL, peaks=(0.25 * GIB, 0.5 * GIB)))
    # Another pipeline's tool: 2 x 0.5 GiB, as one observation: x (1 + 2) + M, whatever the input.
    assert model.predict(8 * GIB) == pytest.approx(3 * GIB + M)
    version = model.version
    model.seed(base.Prior(source=base.PriorSource.RUN, peaks=(0.5 * GIB,)))
    assert model.version > version
    assert model.predict(0) == pytest.approx(1.5 * GIB + M)  # earlier runs: no inflation
    model.seed(base.Prior(source=base.PriorSource.TOOL, peaks=(40 * GIB,)))  # less specific
    assert model.predict(0) == pytest.approx(1.5 * GIB + M)
    model.observe_failure(0, 1 * GIB)  # an OOM kill above the prior's level raises it
    assert model.predict(0) == pytest.approx(3 * GIB + M)
    model.observe(0, 0.1 * GIB)  # the first own peak: the prior no longer answers
    assert model.predict(0) == pytest.approx(3 * GIB + M)  # Y = max(0.1, 1 GiB failed) x 3
    fresh = envelope.make(envelope.Args())
    fresh.observe(0, 0.1 * GIB)
    fresh.seed(base.Prior(source=base.PriorSource.TOOL, peaks=(4 * GIB,)))
    assert fresh.predict(0) == pytest.approx(0.3 * GIB + M)


def test_prior_merging_keeps_the_most_specific_source() -> None:
    tool = base.Prior(source=base.PriorSource.TOOL, peaks=(1.0,))
    run = base.Prior(source=base.PriorSource.RUN, peaks=(2.0,))
    assert tool.merged(None) is tool
    assert tool.merged(tool) == base.Prior(source=base.PriorSource.TOOL, peaks=(1.0, 1.0))
    assert run.merged(tool) is run
    assert tool.merged(run) is None


def test_parse_args() -> None:
    assert envelope.parse_args("") == envelope.Args()
    assert envelope.parse_args("(1.5)") == envelope.Args(headroom=1.5)
    assert envelope.parse_args("(0)") == envelope.Args(headroom=0.0)
    for bad in ("(x)", "(inf)", "(-1)", "2"):
        assert envelope.parse_args(bad) is None
    assert math.isclose(envelope.DEFAULT_HEADROOM, 2.0)
