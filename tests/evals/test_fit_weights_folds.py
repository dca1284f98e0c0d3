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


def test_the_word_model_never_reads_a_report_with_a_model_fitted_on_its_project(monkeypatch):
    """WordReadings: a report outside the allowed projects is read by the model of all of them; one inside, by a model
    of the allowed projects less its own group. Either way no model that read a report saw its project or a project
    outside `allowed`, and a reading is a probability per cause."""
    import ask_oom.kb.report_words as report_words
    from fit_weights import WordReadings

    words = {"batch_too_large": "per_device_train_batch_size micro batch",
             "generation_kv_cache": "vllm kv cache generate", "full_ft_model_states": "adam optimizer states zero3"}
    directions = {label: i for i, label in enumerate(words)}
    rows = [CaseSignals(id=f"{label}-{p}", project=f"{label}-{p}", accepted=[label], must=[], features={}, discount={},
                        terms={w: 1 for w in text.split()},
                        embedding=[float(i == directions[label]) for i in range(len(words))])
            for label, text in words.items() for p in range(6)]
    fitted_on: dict[int, set[str]] = {}
    kept = []   # every model stays alive, so no two share an id()
    real_fit = report_words.fit

    def recording_fit(reports, embeddings=None):
        reports = list(reports)
        assert embeddings is not None and {r.id for r in reports} <= set(embeddings)   # the rows' embeddings are read
        model = real_fit(reports, embeddings=embeddings)
        kept.append(model)
        fitted_on[id(model)] = {r.project for r in reports}
        return model

    monkeypatch.setattr(report_words, "fit", recording_fit)
    read_by: dict[str, int] = {}   # row id -> the model that read it
    row_of = {id(r.terms): r.id for r in rows}
    real_read = report_words.WordModel.read_terms

    def recording_read(self, terms, embedding=None):
        read_by[row_of[id(terms)]] = id(self)
        assert self.reads_embedding and embedding is not None
        return real_read(self, terms, embedding)

    monkeypatch.setattr(report_words.WordModel, "read_terms", recording_read)
    readings = WordReadings(rows, embedding=True)
    allowed = {r.project for r in rows[::2]}
    for row in rows:
        reading = readings.reading(row, allowed)
        assert set(reading) == set(words) and abs(sum(reading.values()) - 1) < 1e-9
    assert set(read_by) == {r.id for r in rows}   # every report read once, by one model
    for row in rows:
        seen = fitted_on[read_by[row.id]]
        assert row.project not in seen and seen <= allowed
        if row.project not in allowed:
            assert seen == allowed
