"""evals/word_model_features.py: the word model's feature sets, cross-validated by project."""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "evals"))

from word_model_features import cross_validate  # noqa: E402


def _corpus():
    """Twenty projects, each with a report of each cause; the causes' own words and, in a dense column, a sign."""
    terms, labels, projects, dense = [], [], [], []
    for p in range(20):
        for cause, word, sign in (("batch_too_large", "batch", 1.0), ("generation_kv_cache", "generate", -1.0)):
            terms.append({word: 2, "memory": 1, f"project{p}": 1})
            labels.append([cause])
            projects.append(f"p{p}")
            dense.append([sign])
    return terms, labels, projects, np.array(dense)


def test_words_that_name_a_cause_in_every_project_are_read_on_projects_left_out():
    terms, labels, projects, _ = _corpus()
    got = cross_validate(terms, labels, projects, None, seed=0, inverse_l2=3.0)
    assert got["primary"] == 1.0 and got["top3"] == 1.0 and got["log_loss"] < 0.69   # better than a coin


def test_a_dense_feature_is_read_beside_the_words():
    terms, labels, projects, dense = _corpus()
    blank = [{"memory": 1} for _ in terms]   # the words alone tell nothing: the dense column decides
    assert cross_validate(blank, labels, projects, None, seed=0, inverse_l2=3.0)["primary"] <= 0.5
    assert cross_validate(blank, labels, projects, dense, seed=0, inverse_l2=3.0)["primary"] == 1.0
