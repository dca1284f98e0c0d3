"""The fitter's discounts (evals/fit_weights.py): a rule against a cause is a factor in (0, 1] fitted from the cases,
which shrinks where the discounted cause is wrong and stays near 1 where it is the answer anyway."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "evals"))

from fit_weights import DISCOUNT_PRIOR, CaseSignals, Fitter, discount_factor, discount_rules, predict  # noqa: E402


def _rows(discounted_right: bool, n: int = 40) -> list[CaseSignals]:
    """Two causes with the same evidence, the discount firing on the batch, which every case accepts
    (`discounted_right`) or none does."""
    right = "batch_too_large" if discounted_right else "seq_len_too_long"
    return [CaseSignals(id=f"c{i}", project=f"p{i}", accepted=[right], must=[],
                        features={"batch_too_large": {"activations": 1.0}, "seq_len_too_long": {"activations": 1.0}},
                        discount={"batch_too_large": {"batch_of_one": 1}}) for i in range(n)]


def test_a_discount_that_marks_a_wrong_cause_is_fitted_below_its_prior():
    rows = _rows(discounted_right=False)
    assert discount_rules(rows) == ["batch_of_one"]
    fitted = Fitter(["activations"], None, discount_rules(rows)).fit(rows, l2=0.03)
    assert 0 < fitted["batch_of_one"] < DISCOUNT_PRIOR
    assert predict(rows[0], fitted)[0][0] == "seq_len_too_long"


def test_a_discount_on_the_cause_that_is_right_is_fitted_towards_one():
    rows = _rows(discounted_right=True)
    fitted = Fitter(["activations"], None, discount_rules(rows)).fit(rows, l2=0.03)
    assert DISCOUNT_PRIOR < fitted["batch_of_one"] <= 1.0


def test_discounts_multiply_and_a_rule_the_table_lacks_keeps_the_prior():
    row = CaseSignals(id="c", project="p", accepted=["batch_too_large"], must=[], features={"batch_too_large": {"a": 1.0}},
                      discount={"batch_too_large": {"batch_of_one": 2, "unknown_rule": 1}})
    assert discount_factor(row, "batch_too_large", {"batch_of_one": 0.5}) == 0.5 * 0.5 * DISCOUNT_PRIOR
    assert discount_factor(row, "seq_len_too_long", {"batch_of_one": 0.5}) == 1.0
