"""The fitter's coverage table: a report counts as covered when an accepted cause has a rule of its own that read the
paste; the neighbours' votes and words and the similar documented cases are borrowed evidence."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "evals"))

from fit_weights import VOTES, WORDS, CaseSignals, evidence_coverage  # noqa: E402


def _row(rid: str, accepted: str, features: dict) -> CaseSignals:
    return CaseSignals(id=rid, project=rid, accepted=[accepted], must=[], features=features, discount={})


def test_own_and_borrowed_evidence_are_counted_apart():
    rows = [_row("a", "batch_too_large", {"batch_too_large": {"stated_batch_unsized": 1.0}}),
            _row("b", "seq_len_too_long", {"seq_len_too_long": {VOTES: 0.5, "similar_case_primary": 1.0},
                                           "batch_too_large": {"stated_batch_unsized": 1.0}}),
            _row("c", "seq_len_too_long", {"seq_len_too_long": {WORDS: 2.0}})]
    preds = [[("batch_too_large", 3.0, 0.9)], [("batch_too_large", 2.0, 0.6)], [("seq_len_too_long", 1.0, 0.5)]]
    cov = evidence_coverage(rows, preds)
    assert cov["own_evidence"] == {"cases": 1, "right": 1}
    assert cov["borrowed_only"] == {"cases": 2, "right": 1}
    assert cov["borrowed_only_by_cause"] == [{"cause": "seq_len_too_long", "cases": 2, "right": 1}]
