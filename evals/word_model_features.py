"""Which features should the labelled reports' word model (kb/report_words.py) read? Cross-validated by project on the
dev reports (kb/reports.json), the word model alone: the shipped TF-IDF words, and the same words beside the paste's
sentence embedding (the packaged all-MiniLM-L6-v2 over the paste's first and last characters).

    python evals/word_model_features.py [--splits 2] [--chunk 1500] [--tokens 256]

Prints, per feature set, primary accuracy (the top cause is one the thread accepts), top 3 and the log-loss of the
primary cause: the median over `--splits` shuffles of the projects into 5 folds, with each split's figure beside it.
An experiment, not a product path: the CLI's diagnosis is torch-free (agent.RETRIEVAL_MODE "fast"), and a sentence
embedding of every paste would import torch there. Dev reports only: held-out and validation sets are never read.
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
FEATURES = ("words", "words+embedding")


def paste_chunks(text: str, chunk: int) -> list[str]:
    """The paste's first and last `chunk` characters (the whole paste when it is shorter than two chunks): the
    user's words and the launch at one end, the error and the config at the other."""
    text = text.strip()
    return [text] if len(text) <= 2 * chunk else [text[:chunk], text[-chunk:]]


def embed_pastes(texts: list[str], chunk: int, tokens: int):
    """One vector per paste: the mean of its chunks' unit-length MiniLM sentence embeddings."""
    import numpy as np
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    from ask_oom.kb.embedding import model_path

    hf_logging.disable_progress_bar()
    model = SentenceTransformer(str(model_path()), device="cpu")
    model.max_seq_length = tokens
    pieces, owner = [], []
    for i, text in enumerate(texts):
        for part in paste_chunks(text, chunk):
            pieces.append(part)
            owner.append(i)
    vectors = model.encode(pieces, batch_size=64, show_progress_bar=False, normalize_embeddings=True)
    out = np.zeros((len(texts), vectors.shape[1]))
    counts = np.zeros(len(texts))
    for vector, i in zip(vectors, owner):
        out[i] += vector
        counts[i] += 1
    return out / np.maximum(counts, 1)[:, None]


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
    ap.add_argument("--chunk", type=int, default=1500, help="characters embedded at each end of a paste")
    ap.add_argument("--tokens", type=int, default=256, help="the embedding model's token limit per chunk")
    args = ap.parse_args(argv)

    from build_reports import report_text
    from diagnosis_benchmark import DEV_SETS, load_cases

    from ask_oom.kb.report_words import INVERSE_L2
    from ask_oom.kb.reports import load_reports

    reports = {r.id: r for r in load_reports().reports}
    cases = [c for c in load_cases(DEV_SETS) if str(c["id"]) in reports]
    shipped = [reports[str(c["id"])] for c in cases]
    terms, labels, projects = [r.terms for r in shipped], [r.labels for r in shipped], [r.project for r in shipped]
    dense = embed_pastes([report_text(c) for c in cases], args.chunk, args.tokens)
    print(f"{len(shipped)} dev reports, {len({*projects})} projects, {FOLDS} folds by project, {args.splits} splits")
    print(f"{'features':<18} {'primary':>8} {'top 3':>7} {'log-loss':>9}   per split (primary)")
    for name in FEATURES:
        runs = [cross_validate(terms, labels, projects, dense if "embedding" in name else None, seed, INVERSE_L2)
                for seed in range(args.splits)]
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(f"{name:<18} {med['primary']:>8.1%} {med['top3']:>7.1%} {med['log_loss']:>9.3f}   "
              + ", ".join(f"{r['primary']:.1%}" for r in runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
