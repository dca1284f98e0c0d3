"""Retrieval benchmark: hit@1, hit@3 and MRR@10 over labelled queries (evals/data/retrieval_queries.yaml) for
dense-only, BM25-only, fused (hybrid) and the CLI's fast path, side by side; then per query kind.

    python evals/retrieval_benchmark.py [--queries FILE] [--cases DIR] [--json] [--misses]

Log queries go through the real parser (parse_log) and kb.query.build_query, as `ask-oom diagnose` does.
Targets (issue 5): fused hit@3 >= 0.9 and MRR >= 0.75; exit code 1 when they are not met.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
MODES = ("dense", "bm25", "hybrid", "fast")
TARGET_HIT3, TARGET_MRR = 0.9, 0.75
DEPTH = 10


def load_queries(path: Path) -> list[dict]:
    from ruamel.yaml import YAML

    data = YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))
    return data["queries"]


def query_text(q: dict) -> str:
    """The search text: for a log, the parsed report rendered by build_query (never the raw log)."""
    if q["kind"] != "log":
        return q["query"]
    from ask_oom.kb.query import build_query
    from ask_oom.tools.log_parser import parse_log

    return build_query(parse_log((REPO / q["log"]).read_bytes()), None)


def evaluate(index, queries: list[dict], modes=MODES) -> dict:
    rows = []
    for q in queries:
        text = query_text(q)
        row = {"id": q["id"], "kind": q["kind"], "expected": q["expected"], "query": text, "ranks": {}, "top": {}}
        for mode in modes:
            hits = index.search(text, k=DEPTH, mode=mode)
            ids = [h.case.id for h in hits]
            rank = next((i + 1 for i, cid in enumerate(ids) if cid in q["expected"]), None)
            row["ranks"][mode] = rank
            row["top"][mode] = ids[:3]
        rows.append(row)
    return {"rows": rows, "summary": summarise(rows, modes)}


def summarise(rows: list[dict], modes) -> dict:
    out = {}
    for kind in ("all", *sorted({r["kind"] for r in rows})):
        sel = [r for r in rows if kind == "all" or r["kind"] == kind]
        out[kind] = {"n": len(sel)}
        for mode in modes:
            ranks = [r["ranks"][mode] for r in sel]
            out[kind][mode] = {
                "hit@1": sum(1 for x in ranks if x == 1) / len(sel),
                "hit@3": sum(1 for x in ranks if x and x <= 3) / len(sel),
                "mrr": sum(1.0 / x for x in ranks if x) / len(sel),
            }
    return out


def print_table(summary: dict, n_cases: int, modes=MODES) -> None:
    print(f"Retrieval benchmark: {summary['all']['n']} queries over {n_cases} cases (MRR@{DEPTH})\n")
    head = f"{'queries':<10}{'n':>4}  " + "  ".join(f"{m + ' h@1':>11}{'h@3':>7}{'MRR':>7}" for m in modes)
    print(head)
    print("-" * len(head))
    for kind, s in summary.items():
        cells = "  ".join(f"{s[m]['hit@1']:>11.3f}{s[m]['hit@3']:>7.3f}{s[m]['mrr']:>7.3f}" for m in modes)
        print(f"{kind:<10}{s['n']:>4}  {cells}")
    fused = summary["all"]["hybrid"]
    ok = fused["hit@3"] >= TARGET_HIT3 and fused["mrr"] >= TARGET_MRR
    print(f"\nfused (hybrid): hit@3 {fused['hit@3']:.3f} (target {TARGET_HIT3}), MRR {fused['mrr']:.3f} "
          f"(target {TARGET_MRR}) → {'PASS' if ok else 'FAIL'}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queries", type=Path, default=REPO / "evals" / "data" / "retrieval_queries.yaml")
    ap.add_argument("--cases", type=Path, default=None, help="case folder (default: the packaged kb/cases)")
    ap.add_argument("--json", action="store_true", help="print the full result as JSON")
    ap.add_argument("--misses", action="store_true", help="list queries the fused ranking misses at 3")
    args = ap.parse_args(argv)

    from ask_oom.kb.cases import load_cases
    from ask_oom.kb.index import CaseIndex

    queries = load_queries(args.queries)
    known = {c.id for c in load_cases(args.cases)}
    unknown = sorted({e for q in queries for e in q["expected"] if e not in known})
    if unknown:
        print(f"error: queries name cases that do not exist: {', '.join(unknown)}", file=sys.stderr)
        return 2
    index = CaseIndex.load_or_build(cases_dir=args.cases, dense=True)
    result = evaluate(index, queries)
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=2))
    else:
        print_table(result["summary"], len(index.cases))
        if args.misses:
            print("\nmisses (fused rank > 3):")
            for r in result["rows"]:
                if not r["ranks"]["hybrid"] or r["ranks"]["hybrid"] > 3:
                    print(f"  {r['id']}: rank {r['ranks']['hybrid']} (dense {r['ranks']['dense']}, bm25 {r['ranks']['bm25']}, "
                          f"fast {r['ranks']['fast']}); top {r['top']['hybrid']}\n    query: {r['query'][:160]}")
    fused = result["summary"]["all"]["hybrid"]
    return 0 if fused["hit@3"] >= TARGET_HIT3 and fused["mrr"] >= TARGET_MRR else 1


if __name__ == "__main__":
    sys.exit(main())
