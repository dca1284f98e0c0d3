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
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "evals"))

FOLDS = 5


def cross_validate(terms: list[dict[str, int]], labels: list[list[str]], projects: list[str], dense, seed: int,
                   inverse_l2: float) -> dict[str, float]:
    """Primary, top 3 and log-loss of the word model (kb/report_words.fit, idf from the training folds only) over each
    report's TF-IDF words, beside `dense` (one row per report, read as its embedding at scale 1) when given; folds
    grouped by project."""
    from ask_oom.kb.report_words import fit
    from ask_oom.kb.reports import LabelledReport, project_folds

    reports = [LabelledReport(id=str(i), source="", project=p, labels=ls, terms=t)
               for i, (t, ls, p) in enumerate(zip(terms, labels, projects))]
    rows = {str(i): [float(v) for v in row] for i, row in enumerate(dense)} if dense is not None else None
    probs: list[dict[str, float]] = [{} for _ in reports]
    for fold in project_folds(projects, FOLDS, seed):
        held = set(fold)
        model = fit((r for i, r in enumerate(reports) if i not in held), inverse_l2, embeddings=rows, scale=1.0)
        for i in fold:
            probs[i] = model.read_terms(terms[i], rows[str(i)] if rows is not None else None).probabilities
    n = len(terms)
    ranked = [sorted(p, key=p.get, reverse=True) for p in probs]
    return {"primary": sum(bool(ranked[i]) and ranked[i][0] in labels[i] for i in range(n)) / n,
            "top3": sum(any(c in labels[i] for c in ranked[i][:3]) for i in range(n)) / n,
            "log_loss": -sum(math.log(max(probs[i].get(labels[i][0], 0.0), 1e-9)) for i in range(n)) / n}


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
