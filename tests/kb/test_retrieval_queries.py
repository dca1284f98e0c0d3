"""The retrieval benchmark's dataset stays valid as cases are added or renamed: >= 40 labelled queries of every
kind, every expected id exists, every log exists and parses to a memory error or a related error."""

from __future__ import annotations

import sys
from pathlib import Path

from ask_oom.kb.cases import load_cases

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "evals"))

from retrieval_benchmark import evaluate, load_queries, query_text  # noqa: E402

QUERIES = REPO / "evals" / "data" / "retrieval_queries.yaml"


def test_dataset_is_complete_and_labels_exist():
    queries = load_queries(QUERIES)
    ids = {c.id for c in load_cases()}
    assert len(queries) >= 40
    assert {q["kind"] for q in queries} == {"log", "text", "zh"}
    assert len({q["id"] for q in queries}) == len(queries)
    for q in queries:
        assert q["expected"] and set(q["expected"]) <= ids, q["id"]
        if q["kind"] == "log":
            assert (REPO / q["log"]).is_file(), q["log"]
        else:
            assert len(q["query"]) > 10


def test_log_queries_are_built_from_parsed_reports():
    for q in (q for q in load_queries(QUERIES) if q["kind"] == "log"):
        text = query_text(q)
        assert text and "Traceback" not in text and "File \"" not in text, q["id"]


def test_evaluate_scores_the_fast_path(tmp_path):
    """The benchmark's own arithmetic on the torch-free path (the full table is evals/retrieval_benchmark.py)."""
    from ask_oom.kb.index import CaseIndex

    index = CaseIndex.load_or_build(index_dir=tmp_path / "idx")
    queries = load_queries(QUERIES)[:12]
    result = evaluate(index, queries, modes=("fast",))
    summary = result["summary"]["all"]["fast"]
    ranks = [r["ranks"]["fast"] for r in result["rows"]]
    assert summary["mrr"] == sum(1 / r for r in ranks if r) / len(ranks)
    assert 0 <= summary["hit@1"] <= summary["hit@3"] <= 1
