"""`ask-oom search`: the knowledge-base cases most like a description of a failure, with scores and sources."""

from __future__ import annotations

import argparse
import sys

from .errors import EXIT_OK, EXIT_UNAVAILABLE, UserError
from .request import add_symlink_argument

HELP = "search the knowledge base for cases like a described failure (hybrid dense + BM25 by default)"
EPILOG = """examples:
  ask-oom search "qwen2.5-vl lora oom vision tower"
  ask-oom search "显存逐渐增加 Qwen2.5-VL 全量微调" --k 3 --json
  ask-oom search "eval OOM predictions" --mode bm25 --framework hf_trainer
  ask-oom search --log train.log --json        the query ask-oom builds from a log (parsed facts, not raw lines)
modes: hybrid (dense MiniLM + BM25, reciprocal rank fusion), dense, bm25, fast (BM25 + facets, no model load)
"""
MAX_QUERY_CHARS = 4000


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("query", nargs="?", help="what went wrong, in words (or '-' to read it from stdin)")
    p.add_argument("--log", metavar="FILE", help="search with the query ask-oom builds from this log (parsed, not raw)")
    p.add_argument("--k", type=int, default=5, metavar="N", help="number of cases (default 5, at most 50)")
    p.add_argument("--mode", choices=["hybrid", "dense", "bm25", "fast"], default="hybrid")
    p.add_argument("--framework", help="only cases of this framework (llamafactory, hf_trainer, trl, deepspeed, ...)")
    p.add_argument("--modality", choices=["text", "vision-language", "moe", "vision-language-moe"])
    p.add_argument("--method", choices=["full", "freeze", "lora", "qlora", "inference", "other"])
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_symlink_argument(p)


def _query_text(args: argparse.Namespace) -> str:
    if args.log:
        if args.query:
            raise UserError("give a query or --log FILE, not both")
        from ..kb.query import build_query
        from ..tools.log_parser import parse_log
        from .inputs import read_log_bytes

        data, _ = read_log_bytes(args.log, allow_symlinks=args.allow_symlinks)
        report = parse_log(data)
        query = build_query(report, None)
        if report.kind == "not_oom" or not query:
            raise UserError(f"no memory error or related error found in {args.log}: nothing to search for", 3)
        return query[:MAX_QUERY_CHARS]
    query = args.query
    if query in (None, "-"):
        if sys.stdin is None or sys.stdin.isatty():
            raise UserError('no query: ask-oom search "describe the failure"')
        query = sys.stdin.read(MAX_QUERY_CHARS + 1)
    query = " ".join(query.split())
    if not query:
        raise UserError('empty query: ask-oom search "describe the failure"')
    if len(query) > MAX_QUERY_CHARS:
        raise UserError(f"query longer than {MAX_QUERY_CHARS} characters: describe the failure; "
                        "for a whole log use 'ask-oom diagnose'")
    return query


def hit_json(hit) -> dict:
    c = hit.case
    return {
        "rank": hit.rank, "id": c.id, "score": hit.score, "dense_score": hit.dense_score,
        "bm25_score": hit.bm25_score, "title": c.title, "source": c.source, "language": c.language,
        "root_causes": c.root_causes, "framework": c.framework, "method": c.method, "model": c.model.name,
        "modality": c.model.modality, "matched_facets": hit.matched_facets,
    }


def run(args: argparse.Namespace) -> int:
    query = _query_text(args)
    if not 1 <= args.k <= 50:
        raise UserError("--k must be between 1 and 50")
    filters = {k: v for k, v in (("framework", args.framework), ("modality", args.modality),
                                 ("method", args.method)) if v}

    from ..assistant.settings import load_settings
    from ..kb.embedding import EmbeddingUnavailable
    from ..kb.hybrid import VectorStoreUnavailable
    from ..kb.index import CaseIndex
    from .output import print_json, print_markdown

    try:
        index = CaseIndex.load_or_build(load_settings())
        hits = index.search(query, k=args.k, filters=filters or None, mode=args.mode)
    except (EmbeddingUnavailable, VectorStoreUnavailable) as exc:
        raise UserError(f"{exc} (or use --mode fast)", EXIT_UNAVAILABLE) from None
    if args.json:
        print_json({"query": query, "mode": args.mode, "filters": filters, "n_cases": len(index.cases),
                    "results": [hit_json(h) for h in hits]})
        return EXIT_OK
    if not hits:
        print_markdown(f"No case matches “{query}”" + (f" with {filters}" if filters else "") + ".")
        return EXIT_OK
    lines = [f"**{len(hits)} case(s) for** “{query}” ({args.mode}, {len(index.cases)} cases searched)", "",
             "| # | score | case | causes | source |", "|---|---|---|---|---|"]
    for h in hits:
        title = h.case.title.replace("|", "/")
        lines.append(f"| {h.rank} | {h.score:.4f} | `{h.case.id}` {title} | {', '.join(h.case.root_causes[:3])} "
                     f"| {h.case.source} |")
    print_markdown("\n".join(lines))
    return EXIT_OK
