"""Write kb/reports.json, the labelled reports the diagnosis weighs as neighbours, from the dev sets only,
kb/report_embeddings.npz, their pastes' sentence embeddings (kb/paste_embedding.py), and kb/report_words.json, the
word model fitted on their words (kb/report_words.py), and with `--embedding` on their embeddings too.

Each report keeps its source thread, its project, the causes its thread accepts (primary first) and the words of what
the product is given for it (the user's words, the log and the config, as diagnosis_benchmark.request_for passes them).
Held-out and validation sets are never read here, so their figures stay a measure of reports nobody has seen.

    python evals/build_reports.py [--check] [--embedding]

The shipped word model reads the words alone: with the embedding beside them the diagnosis gained on the dev reports
cross-validated by project (66.7% -> 67.2% primary, median of 3 splits) but lost on the blind validation sets
(diagnosis_fresh5-25: 62.5% -> 60.3%, 12 answers newly wrong against 5 newly right) and on the held-out sets
(71.0% -> 69.0%), so it stays an option (report_words.EMBEDDING_SCALE) until a blind set says otherwise.

`--check` exits 1 when the shipped files differ from a fresh build (the tests run the same comparison; the word
model's readings of every report must agree to WORDS_TOLERANCE, as L-BFGS may end a hair apart on another machine;
each embedding to EMBEDDING_TOLERANCE, as stored in half precision). Embedding every report takes about a minute.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "evals"))

from diagnosis_benchmark import DEV_SETS, load_cases, request_for  # noqa: E402
from fit_weights import project_of  # noqa: E402

from ask_oom.kb.paste_embedding import (REPORT_EMBEDDINGS_PATH, dump_report_embeddings,  # noqa: E402
                                        load_report_embeddings, paste_embedding)
from ask_oom.kb.report_words import WORDS_PATH, WordModel, fit  # noqa: E402
from ask_oom.kb.reports import REPORTS_PATH, LabelledReport, ReportIndex, paste_text, report_terms  # noqa: E402

WORDS_TOLERANCE = 1e-3       # the largest difference in any cause's probability for any report
EMBEDDING_TOLERANCE = 2e-3   # ... in any value of a report's embedding (half precision keeps about 1e-3 of each)


def report_text(case: dict) -> str:
    """What the product reads of a case: the log text it is given, then its config."""
    request = request_for(case)
    return paste_text(request.log_text, request.config_text)


def build(cases: list[dict] | None = None) -> ReportIndex:
    """The index of the dev sets' reports (or of `cases`)."""
    cases = load_cases(DEV_SETS) if cases is None else cases
    return ReportIndex(reports=[
        LabelledReport(id=str(c["id"]), source=str(c.get("source") or ""), project=project_of(c),
                       labels=list(c["expected"]["primary_any_of"]), terms=report_terms(report_text(c)))
        for c in cases if c["expected"].get("primary_any_of")])


def embed(cases: list[dict] | None = None) -> dict[str, list[float]]:
    """The paste embedding of every dev report (or of `cases`'), by report id."""
    cases = load_cases(DEV_SETS) if cases is None else cases
    return {str(c["id"]): paste_embedding(report_text(c)) for c in cases if c["expected"].get("primary_any_of")}


def embeddings_differ(shipped: dict[str, list[float]], fresh: dict[str, list[float]]) -> float:
    """The largest difference in any value of any report's embedding (1.0 when the reports differ)."""
    if shipped.keys() != fresh.keys():
        return 1.0
    return max((abs(a - b) for i in fresh for a, b in zip(shipped[i], fresh[i])), default=0.0)


def words_differ(shipped: WordModel, fresh: WordModel, index: ReportIndex,
                 embeddings: dict[str, list[float]] | None = None) -> float:
    """The largest difference between two word models' readings of the reports (1.0 when their causes differ)."""
    if shipped.labels != fresh.labels or shipped.reports != fresh.reports:
        return 1.0
    worst = 0.0
    for r in index.reports:
        e = (embeddings or {}).get(r.id)
        a, b = shipped.read_terms(r.terms, e).probabilities, fresh.read_terms(r.terms, e).probabilities
        worst = max(worst, max(abs(a[label] - b[label]) for label in a))
    return worst


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare with the shipped file instead of writing it")
    ap.add_argument("--embedding", action="store_true",
                    help="fit the word model on the pastes' sentence embeddings beside their words")
    args = ap.parse_args(argv)
    cases = load_cases(DEV_SETS)
    index = build(cases)
    if args.check:
        tmp = REPORTS_PATH.with_suffix(".check.json")
        index.dump(tmp)
        same = tmp.read_text(encoding="utf-8") == (REPORTS_PATH.read_text(encoding="utf-8") if REPORTS_PATH.is_file() else "")
        tmp.unlink()
        stored = load_report_embeddings()
        same = same and embeddings_differ(stored, embed(cases)) <= EMBEDDING_TOLERANCE
        shipped = WordModel.from_file(WORDS_PATH) if WORDS_PATH.is_file() else None
        read = stored if shipped is not None and shipped.reads_embedding else None   # a fit of the shipped kind
        gap = words_differ(shipped, fit(index.reports, embeddings=read), index, read) if shipped and stored else 1.0
        same = same and gap <= WORDS_TOLERANCE
        print("kb/reports.json, kb/report_embeddings.npz and kb/report_words.json are up to date" if same
              else "kb/reports.json, kb/report_embeddings.npz or kb/report_words.json differs from the dev sets: "
                   "run evals/build_reports.py")
        return 0 if same else 1
    index.dump()
    dump_report_embeddings(embed(cases))
    # the fit reads them as stored, as the check and the tests do
    embeddings = load_report_embeddings() if args.embedding else None
    words = fit(index.reports, embeddings=embeddings)
    words.dump()
    print(f"wrote {REPORTS_PATH.relative_to(REPO)}: {len(index.reports)} labelled reports; "
          f"{REPORT_EMBEDDINGS_PATH.relative_to(REPO)}: their embeddings; "
          f"{WORDS_PATH.relative_to(REPO)}: {len(words.weights)} words and {len(words.embedding[0]) if words.embedding else 0} "
          f"embedding dimensions x {len(words.labels)} causes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
