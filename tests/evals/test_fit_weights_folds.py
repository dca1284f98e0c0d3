"""The fitter's folds: whole projects per fold, every case once, and another split for another seed (repeated
cross-validation, evals/fit_weights.py --repeats)."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "evals"))

from fit_weights import CaseSignals, grouped_folds  # noqa: E402


def _rows() -> list[CaseSignals]:
    sizes = [7, 5, 3, 3, 2, 2, 2] + [1] * 30   # a few large projects and a long tail of one-report projects
    rows = []
    for p, n in enumerate(sizes):
        rows += [CaseSignals(id=f"p{p}-{i}", project=f"project{p}", accepted=["batch_too_large"], must=[],
                             features={}, discount={}) for i in range(n)]
    return rows


def _split(folds: list[list[int]], rows: list[CaseSignals]) -> list[frozenset[str]]:
    return sorted((frozenset(rows[i].project for i in fold) for fold in folds), key=sorted)


def test_every_case_sits_in_one_fold_with_its_whole_project():
    rows = _rows()
    for seed in (None, 1, 2):
        folds = grouped_folds(rows, 5, seed)
        assert sorted(i for f in folds for i in f) == list(range(len(rows)))
        owner = {}
        for fi, fold in enumerate(folds):
            for i in fold:
                assert owner.setdefault(rows[i].project, fi) == fi, "a project split over two folds"
        sizes = [len(f) for f in folds]
        assert max(sizes) - min(sizes) <= max(len([r for r in rows if r.project == "project0"]), 1)


def test_a_seed_gives_another_split_and_the_same_one_each_time():
    rows = _rows()
    assert _split(grouped_folds(rows, 5, 1), rows) == _split(grouped_folds(rows, 5, 1), rows)
    assert _split(grouped_folds(rows, 5, 1), rows) != _split(grouped_folds(rows, 5, 2), rows)
    assert _split(grouped_folds(rows, 5), rows) == _split(grouped_folds(rows, 5, None), rows)
