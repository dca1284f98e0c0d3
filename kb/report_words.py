"""The labelled reports' words as a model of their causes: multinomial logistic regression over the TF-IDF vectors
the neighbours are found with (kb/reports.py), fitted on the causes the dev reports' threads accept (a thread that
settled "the weights, or the load itself" counts once for each).

The neighbours vote with the ten reports worded most like a paste; the model weighs every word of every report
against every cause at once, so "vllm" or "generate" speak for the KV cache whichever reports they came from, and a
word common to all causes speaks for none. Its reading is one more piece of evidence, weighed beside the rules and
the votes with a fitted weight (tools/root_causes/similar_cases.labelled_report_words). Cross-validated by project,
with the readings of each fold's reports from a model fitted without their projects: +3.0 points primary and +4.1 in
the top 3 on the dev reports when it was added (evals/fit_weights.py; fitted on the primary causes alone: +2.4 and
+3.4), measured on pastes that still quoted the threads' replies.

Beside the words, a model fitted with `embeddings` also reads the paste's sentence embedding (kb/paste_embedding.py),
scaled by EMBEDDING_SCALE: the words in context, where a paraphrase lands near the report it paraphrases.
Cross-validated by project, refitted per fold (evals/word_model_features.py, evals/fit_weights.py --embedding): the
word model alone 49.5% -> 52.1% primary; the diagnosis 66.7% -> 67.2% (median of 3 splits). On the blind sets it lost
(validation 62.5% -> 60.3%, held-out 71.0% -> 69.0%), so the shipped model reads the words alone
(evals/build_reports.py --embedding writes the other).

`evals/build_reports.py` fits it on kb/reports.json (and with --embedding on the reports' embeddings,
kb/report_embeddings.npz) and writes kb/report_words.json; a test keeps them in step. Fitting needs scikit-learn;
reading a paste is pure Python over the words it shares with the model (plus, with embeddings, one dot product per
cause).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, Field

from .reports import LabelledReport, project_folds, report_terms, smoothed_idf, tfidf_vector

WORDS_PATH = Path(__file__).resolve().parent / "report_words.json"
# scikit-learn's C, the inverse strength of the L2 penalty: cross-validated by project on the pastes without the
# threads' replies, 3 and 10 give the same primary accuracy and 3 puts an accepted cause in the top 3 more often
# (+0.6 points; with the reading as log-odds evidence, +1.1 on two splits)
INVERSE_L2 = 3.0
MAX_ITERATIONS = 3000   # L-BFGS converges in under 100 on the dev reports
DIGITS = 4              # weights as stored: the readings of a fresh fit and of the file agree to 1e-3
SHOWN_WORDS = 3         # the words that speak most for a cause, quoted with its reading
# the sentence embedding's columns beside the TF-IDF ones are multiplied by this (a unit-length embedding against a
# unit-length TF-IDF vector, under one L2 penalty): the strength the penalty leaves the embedding, tried at 0.5, 1
# and 2 by project-grouped cross-validation of the diagnosis (0.5 best: 68.0%, 67.6%, 67.4% primary on one split)
EMBEDDING_SCALE = 0.5


class WordReading(BaseModel):
    """What the word model reads in one paste: a probability per cause, and how many reports it was fitted on."""

    probabilities: dict[str, float] = Field(default_factory=dict)
    reports: int = 0
    words: dict[str, list[str]] = Field(default_factory=dict,
                                        description="per cause, the paste's words that speak most for it")


class WordModel(BaseModel):
    """Per word, its idf and one weight per cause; per cause an intercept. Empty: it reads nothing."""

    labels: list[str] = Field(default_factory=list)
    intercept: list[float] = Field(default_factory=list)
    idf: dict[str, float] = Field(default_factory=dict)
    weights: dict[str, list[float]] = Field(default_factory=dict, description="word -> one weight per label")
    embedding: list[list[float]] = Field(default_factory=list,
                                         description="per label, one weight per dimension of the paste's embedding "
                                                     "(empty: a model of the words alone)")
    embedding_scale: float = 0.0
    reports: int = 0

    @property
    def reads_embedding(self) -> bool:
        """Whether a reading needs the paste's sentence embedding (kb/paste_embedding.py)."""
        return bool(self.embedding)

    def read(self, text: str, embedding: Sequence[float] | None = None) -> WordReading:
        """The causes' probabilities for a paste (kb.reports.paste_text), softmax of the intercepts plus its words
        (and its embedding, when the model reads one and it is given)."""
        return self.read_terms(report_terms(text), embedding)

    def read_terms(self, terms: dict[str, int], embedding: Sequence[float] | None = None) -> WordReading:
        """As `read`, from a paste's term counts. Without the embedding a model fitted with one reads the words
        alone (the embedding's columns at 0, as for an empty paste)."""
        if not self.labels:
            return WordReading()
        logits = list(self.intercept)
        if embedding is not None and self.embedding:
            for i, weights in enumerate(self.embedding):
                logits[i] += self.embedding_scale * math.fsum(w * v for w, v in zip(weights, embedding))
        # a word's pull towards a cause is its weight there less its mean weight over the causes (the softmax does
        # not change when one amount is added to every cause): what sets that cause apart
        pulls: list[list[tuple[float, str]]] = [[] for _ in self.labels]
        for term, value in tfidf_vector(terms, self.idf).items():
            weights = self.weights[term]
            mean = sum(weights) / len(weights)
            for i, w in enumerate(weights):
                logits[i] += w * value
                if w > mean:
                    pulls[i].append(((w - mean) * value, term))
        top = max(logits)
        exp = [math.exp(v - top) for v in logits]
        total = sum(exp)
        return WordReading(probabilities={label: e / total for label, e in zip(self.labels, exp)}, reports=self.reports,
                           words={label: [term for _, term in sorted(pull, reverse=True)[:SHOWN_WORDS]]
                                  for label, pull in zip(self.labels, pulls)})

    def dump(self, path: Path = WORDS_PATH) -> None:
        """One line per word, sorted (a stable diff when the corpus grows)."""
        head = {"labels": self.labels, "intercept": self.intercept, "reports": self.reports,
                "embedding_scale": self.embedding_scale, "embedding": self.embedding}
        rows = [json.dumps(t, ensure_ascii=False) + ": " + json.dumps([self.idf[t], *self.weights[t]])
                for t in sorted(self.weights)]
        path.write_text(json.dumps(head, ensure_ascii=False)[:-1] + ', "words": {\n' + ",\n".join(rows) + "\n}}\n",
                        encoding="utf-8")

    @classmethod
    def from_file(cls, path: Path = WORDS_PATH) -> WordModel:
        data = json.loads(path.read_text(encoding="utf-8"))
        words = data.pop("words")
        return cls(**data, idf={t: v[0] for t, v in words.items()}, weights={t: v[1:] for t, v in words.items()})


def fit(reports: Iterable[LabelledReport], inverse_l2: float = INVERSE_L2,
        embeddings: Mapping[str, Sequence[float]] | None = None, scale: float = EMBEDDING_SCALE) -> WordModel:
    """The model of the causes `reports`' threads accept, each a sample of its report (their idf from them alone);
    empty when they name fewer than two causes. With `embeddings` (report id -> its paste's embedding, one for every
    report), each report's embedding times `scale` is read beside its words."""
    import numpy as np
    from scipy.sparse import csr_matrix, hstack
    from sklearn.linear_model import LogisticRegression

    reports = list(reports)
    labels = sorted({label for r in reports for label in r.labels})
    if len(labels) < 2:
        return WordModel()
    idf = smoothed_idf(r.terms for r in reports)
    matrix, vocabulary = tfidf_matrix([r.terms for r in reports], idf)
    if embeddings is not None:
        matrix = hstack([matrix, csr_matrix(scale * np.asarray([embeddings[r.id] for r in reports], dtype=float))],
                        format="csr")
    samples = [(i, label) for i, r in enumerate(reports) for label in dict.fromkeys(r.labels)]
    x, causes = matrix[[i for i, _ in samples]], [label for _, label in samples]
    model = LogisticRegression(C=inverse_l2, max_iter=MAX_ITERATIONS).fit(x, causes)
    coef, intercept = model.coef_, model.intercept_
    if len(labels) == 2:   # two causes: one logit, the first cause's pinned at 0
        coef, intercept = np.vstack([np.zeros_like(coef), coef]), np.concatenate([[0.0], intercept])
    order = [list(model.classes_).index(label) for label in labels]
    coef = coef[order]
    return WordModel(labels=labels, intercept=[round(float(v), DIGITS) for v in intercept[order]],
                     idf={t: round(v, DIGITS + 2) for t, v in idf.items()},
                     weights={t: [round(float(v), DIGITS) for v in coef[:, i]] for t, i in vocabulary.items()},
                     embedding=[[round(float(v), DIGITS) for v in row] for row in coef[:, len(vocabulary):]]
                     if embeddings is not None else [],
                     embedding_scale=scale if embeddings is not None else 0.0, reports=len(reports))


def tfidf_matrix(rows: Sequence[dict[str, int]], idf: dict[str, float]):
    """The TF-IDF vectors of `rows` (term counts) as a sparse matrix, one row each, and its columns: the words of
    `idf`, sorted (words it lacks are left out)."""
    from scipy.sparse import csr_matrix

    vocabulary = {t: i for i, t in enumerate(sorted(idf))}
    data, cols, ptr = [], [], [0]
    for terms in rows:
        for t, v in tfidf_vector(terms, idf).items():
            data.append(v)
            cols.append(vocabulary[t])
        ptr.append(len(data))
    return csr_matrix((data, cols, ptr), shape=(len(rows), len(vocabulary))), vocabulary


def unseen_models(reports: Iterable[LabelledReport], k: int = 5,
                  embeddings: Mapping[str, Sequence[float]] | None = None) -> dict[str, WordModel]:
    """Per report id, a model fitted without the report's project (k fits, folds grouped by project): how the
    benchmark reads a dev report, which the shipped model was fitted on, as the product reads a new project's."""
    reports = list(reports)
    out: dict[str, WordModel] = {}
    for fold in project_folds([r.project for r in reports], k):
        held = set(fold)
        model = fit((r for i, r in enumerate(reports) if i not in held), embeddings=embeddings)
        out.update({reports[i].id: model for i in fold})
    return out


@lru_cache(maxsize=1)
def load_words(path: Path = WORDS_PATH) -> WordModel:
    """The shipped word model (an empty one when the file is absent: the evidence is then simply missing)."""
    return WordModel.from_file(path) if path.is_file() else WordModel()
