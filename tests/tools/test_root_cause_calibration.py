"""Top-label calibration (tools/root_causes/calibration.py): the isotonic map is monotone, never certain, and the
ranking's leading probability goes through the fitted map."""

from __future__ import annotations

import random

import pytest

from ask_oom.tools.labels import Label
from ask_oom.tools.root_causes.calibration import calibrate_top, calibrated, fit_confidence_map
from ask_oom.tools.root_causes.scoring import score_signals
from ask_oom.tools.root_causes.signals import support
from ask_oom.tools.root_causes.weights import DEFAULT_WEIGHTS


def test_the_map_pools_bands_that_were_right_less_often_than_the_band_below():
    # 0.85 answers right 6 times in 10, 0.7 answers 8 in 10: pooled, the map cannot fall as probability rises
    answers = [(0.7, i < 8) for i in range(10)] + [(0.85, i < 6) for i in range(10)] + [(0.99, True)] * 20
    knots = fit_confidence_map(answers)
    assert len(knots) == 2
    assert knots[0] == pytest.approx((0.775, (14 + 1) / (20 + 2)))
    assert [q for _, q in knots] == sorted(q for _, q in knots)


def test_a_band_that_was_always_right_maps_below_certainty():
    knots = fit_confidence_map([(0.97, True)] * 40)
    assert len(knots) == 1 and knots[0] == pytest.approx((0.97, 41 / 42))
    assert calibrated(0.999, knots) < 1.0


def test_the_map_is_monotone_on_noisy_answers():
    rng = random.Random(7)
    answers = [(p, rng.random() < p) for p in (rng.random() for _ in range(500))]
    knots = fit_confidence_map(answers)
    grid = [i / 100 for i in range(101)]
    values = [calibrated(p, knots) for p in grid]
    assert values == sorted(values)
    assert all(0.0 < v < 1.0 for v in values)


def test_between_knots_the_map_is_linear_and_flat_beyond_them():
    knots = ((0.5, 0.4), (0.9, 0.8))
    assert calibrated(0.7, knots) == pytest.approx(0.6)
    assert calibrated(0.1, knots) == 0.4 and calibrated(0.99, knots) == 0.8
    assert calibrated(0.73, ()) == 0.73   # no map: the softmax's probability as it is


def test_only_the_leading_cause_is_mapped_and_the_others_keep_their_odds():
    probs = {"a": 0.9, "b": 0.06, "c": 0.02}   # 0.02 left to "none of these"
    out = calibrate_top(probs, ((0.5, 0.5), (0.9, 0.8)))
    assert out["a"] == pytest.approx(0.8)
    assert out["b"] / out["c"] == pytest.approx(3.0)
    assert sum(out.values()) == pytest.approx(0.8 + 0.08 * 2)   # the rest scaled by (1 - 0.8) / (1 - 0.9)
    assert calibrate_top({"a": 0.0}, ((0.5, 0.5),)) == {"a": 0.0}


def test_the_ranking_states_the_mapped_probability():
    signals = [support(Label.batch_too_large, "batch_over_budget", "the batch's activations exceed the budget"),
               support(Label.seq_len_too_long, "cutoff_very_long", "the sequence's activations exceed the budget")]
    flat = DEFAULT_WEIGHTS.replace(confidence=())
    mapped = DEFAULT_WEIGHTS.replace(confidence=((0.0, 0.3), (1.0, 0.6)))
    raw = score_signals(signals, flat)[0].probability
    top = score_signals(signals, mapped)[0]
    assert top.probability == pytest.approx(0.3 + 0.3 * raw, abs=1e-3)
