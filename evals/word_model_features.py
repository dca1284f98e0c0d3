"""Which features should the labelled reports' word model (kb/report_words.py) read? Cross-validated by project on the
dev reports (kb/reports.json), the word model alone: the TF-IDF words, and the same words beside the paste's sentence
embedding (kb/paste_embedding.py, as stored in kb/report_embeddings.npz) times a scale (the shipped one,
report_words.EMBEDDING_SCALE, unless `--scale` gives others).

    python evals/word_model_features.py [--splits 2] [--scale 0.5 1 2]

Prints, per feature set, primary accuracy (the top cause is one the thread accepts), top 3 and the log-loss of the
primary cause: the median over `--splits` shuffles of the projects into 5 folds, with each split's figure beside it.
This measures the word model alone; evals/fit_weights.py measures the diagnosis it feeds. Dev reports only: held-out
and validation sets are never read.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "evals"))

FOLDS = 5


def cross_validate(terms: list[dict[str, int]], labels: list[list[str]], projects: list[str], dense, seed: int,
                   inverse_l2: float) -> dict[str, float]:
    """Primary, top 3 and log-loss of a multinomial logistic regression over each report's TF-IDF words (idf from
    the training folds only), beside `dense` (one row per report) when given; folds grouped by project."""
    import numpy as np
    from scipy.sparse import csr_matrix, hstack
    from sklearn.linear_model import LogisticRegression

    from ask_oom.kb.report_words import tfidf_matrix
    from ask_oom.kb.reports import project_folds, smoothed_idf

    causes = sorted({c for row in labels for c in row})
    probs = np.zeros((len(terms), len(causes)))
    for fold in project_folds(projects, FOLDS, seed):
        held = set(fold)
        train = [i for i in range(len(terms)) if i not in held]
        x, _ = tfidf_matrix(terms, smoothed_idf(terms[i] for i in train))
        if dense is not None:
            x = hstack([x, csr_matrix(dense)]).tocsr()
        # a thread that accepts two causes is a sample of each (as kb/report_words.fit learns them)
        samples = [(i, c) for i in train for c in dict.fromkeys(labels[i])]
        model = LogisticRegression(C=inverse_l2, max_iter=3000).fit(x[[i for i, _ in samples]], [c for _, c in samples])
        probs[np.ix_(fold, [causes.index(c) for c in model.classes_])] = model.predict_proba(x[fold])
    n = len(terms)
    ranked = np.argsort(-probs, axis=1)
    return {"primary": sum(causes[ranked[i, 0]] in labels[i] for i in range(n)) / n,
            "top3": sum(any(causes[j] in labels[i] for j in ranked[i, :3]) for i in range(n)) / n,
            "log_loss": -sum(math.log(max(probs[i, causes.index(labels[i][0])], 1e-9)) for i in range(n)) / n}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--splits", type=int, default=2, help="shuffles of the projects into folds (median shown)")
    ap.add_argument("--scale", type=float, nargs="*", help="the embedding's scales to try (default: the shipped one)")
    args = ap.parse_args(argv)

    import numpy as np

    from ask_oom.kb.paste_embedding import load_report_embeddings
    from ask_oom.kb.report_words import EMBEDDING_SCALE, INVERSE_L2
    from ask_oom.kb.reports import load_reports

    shipped = load_reports().reports
    stored = load_report_embeddings()
    terms, labels, projects = [r.terms for r in shipped], [r.labels for r in shipped], [r.project for r in shipped]
    embedding = np.asarray([stored[r.id] for r in shipped])
    features = [("words", None)] + [(f"words+embedding x{s:g}", s * embedding) for s in (args.scale or [EMBEDDING_SCALE])]
    print(f"{len(shipped)} dev reports, {len({*projects})} projects, {FOLDS} folds by project, {args.splits} splits")
    print(f"{'features':<24} {'primary':>8} {'top 3':>7} {'log-loss':>9}   per split (primary)")
    for name, dense in features:
        runs = [cross_validate(terms, labels, projects, dense, seed, INVERSE_L2) for seed in range(args.splits)]
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(f"{name:<24} {med['primary']:>8.1%} {med['top3']:>7.1%} {med['log_loss']:>9.3f}   "
              + ", ".join(f"{r['primary']:.1%}" for r in runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
