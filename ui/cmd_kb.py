"""`ask-oom kb`: manage the knowledge base: ingest documents into draft cases, rebuild the index, list and show cases."""

from __future__ import annotations

import argparse
import time

from .errors import EXIT_ALL_DUPLICATES, EXIT_OK, EXIT_UNAVAILABLE, UserError

HELP = "knowledge base: ingest documents into draft cases, build the retrieval index, list and show cases"
EPILOG = """examples:
  ask-oom kb ingest article.md issue.html            draft cases (YAML) for review, in the drafts folder
  ask-oom kb ingest notes.txt --out kb/cases --json  write straight into a case folder
  ask-oom kb ingest --session 3f2a...                a solved conversation → a draft case
  ask-oom kb build                                   re-index after adding or editing cases
  ask-oom kb list --framework llamafactory
  ask-oom kb show seed-kimi-vl-a3b-full-z3-cutoff16k
exit codes: 0 ok, 2 bad input (unreadable document, invalid case), 4 LLM / session support unavailable,
            6 every document was a duplicate of an existing case
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="kb_command", metavar="{ingest,build,list,show}", parser_class=type(p))
    sub.required = True
    ing = sub.add_parser("ingest", help="raw documents (Markdown, text, HTML; zh/en) or a solved session → draft cases")
    ing.add_argument("files", nargs="*", metavar="FILE")
    ing.add_argument("--session", metavar="ID", help="turn a solved conversation into a draft case")
    ing.add_argument("--out", metavar="DIR", help="where drafts are written (default: the state dir's drafts/)")
    ing.add_argument("--source", help="the document's URL or name to cite (default: a URL in the text, else the path)")
    llm = ing.add_mutually_exclusive_group()
    llm.add_argument("--llm", dest="llm", action="store_true", default=None,
                     help="also run LLM structured extraction (needs ASK_OOM_LLM_BASE_URL)")
    llm.add_argument("--no-llm", dest="llm", action="store_false", help="rules only, even if an LLM is configured")
    ing.add_argument("--force", action="store_true", help="write the draft even if it duplicates an existing case")
    ing.add_argument("--json", action="store_true")
    b = sub.add_parser("build", help="rebuild the retrieval index (lexical + embeddings) from the case files")
    b.add_argument("--lexical-only", action="store_true", help="skip the embedding model (fast path only)")
    b.add_argument("--json", action="store_true")
    ls = sub.add_parser("list", help="list the cases")
    ls.add_argument("--framework")
    ls.add_argument("--modality")
    ls.add_argument("--method")
    ls.add_argument("--label", help="only cases with this root-cause label")
    ls.add_argument("--json", action="store_true")
    sh = sub.add_parser("show", help="show one case")
    sh.add_argument("id")
    sh.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    from ..assistant.settings import load_settings

    settings = load_settings()
    return {"ingest": _ingest, "build": _build, "list": _list, "show": _show}[args.kb_command](args, settings)


def _ingest(args, settings) -> int:
    from ..kb.ingest import case_to_yaml, ingest_file
    from .output import print_json, print_markdown
    from .progress import track

    if not args.files and not args.session:
        raise UserError("nothing to ingest: pass FILE... or --session ID")
    results = []
    if args.session:
        results.append(_ingest_session(args, settings))
    for f in track(args.files, "ingesting", enabled=not args.json):
        results.append(ingest_file(f, cases_dir=settings.kb_dir, out_dir=args.out, source=args.source,
                                   settings=settings, use_llm=args.llm, force=args.force))
    if args.json:
        print_json({"drafts": [{"file": str(r.path) if r.path else None, "id": r.case.id,
                                "duplicate_of": r.duplicate_of, "llm_used": r.llm_used, "warnings": r.warnings,
                                "case": r.case.model_dump(mode="json", by_alias=True, exclude_none=True)}
                               for r in results]})
    else:
        out = []
        for r in results:
            if r.path is None:
                out.append(f"**refused** `{r.case.id}`: {r.warnings[-1] if r.warnings else 'duplicate'}")
                continue
            out.append(f"**draft** `{r.path}` ({'rules + LLM' if r.llm_used else 'rules'}): "
                       f"{r.case.model.name}, {', '.join(r.case.root_causes[:3])}, {len(r.case.fixes)} fix(es)")
            out.extend(f"- check: {w}" for w in r.warnings)
            out.append("")
            out.append("```yaml\n" + case_to_yaml(r.case).rstrip() + "\n```")
        out.append("\nReview each draft, move it into the case folder, then run `ask-oom kb build`.")
        print_markdown("\n".join(out))
    return EXIT_ALL_DUPLICATES if results and all(r.path is None for r in results) else EXIT_OK


def _ingest_session(args, settings):
    """A solved conversation → draft case, via assistant/session_to_case.py (written by the conversation stage)."""
    try:
        from ..assistant.session import SessionStore
        from ..assistant.session_to_case import draft_case_from_session
    except ImportError as exc:
        raise UserError(f"session ingestion is not available in this build ({exc.name} missing)",
                        EXIT_UNAVAILABLE) from None
    from pathlib import Path

    from ..kb.cases import load_cases
    from ..kb.ingest import IngestResult, case_to_yaml, default_drafts_dir, find_duplicate

    if not Path(settings.session_db).is_file():
        raise UserError(f"no session store at {settings.session_db}: set ASK_OOM_SESSION_DB or session_db in the config")
    case = draft_case_from_session(SessionStore(settings.session_db, ttl_days=settings.session_ttl_days), args.session)
    dup, why = find_duplicate(case, load_cases(settings.kb_dir))
    result = IngestResult(case=case, duplicate_of=dup)
    if dup and not args.force:
        result.warnings.append(f"duplicate of {dup}: {why}")
        return result
    out = Path(args.out) if args.out else default_drafts_dir()
    out.mkdir(parents=True, exist_ok=True)
    result.path = out / f"{case.id}.yaml"
    result.path.write_text(case_to_yaml(case), encoding="utf-8")
    return result


def _build(args, settings) -> int:
    from ..kb.embedding import EmbeddingUnavailable
    from ..kb.hybrid import VectorStoreUnavailable
    from ..kb.index import CaseIndex
    from .output import print_json, print_markdown
    from .progress import status

    t0 = time.perf_counter()
    what = "building the lexical index" if args.lexical_only else "embedding the cases (all-MiniLM-L6-v2) and building BM25"
    try:
        with status(f"kb build: {what}", enabled=not args.json):
            index = CaseIndex.build(settings, dense=not args.lexical_only)
    except (EmbeddingUnavailable, VectorStoreUnavailable) as exc:
        raise UserError(str(exc), EXIT_UNAVAILABLE) from None
    took = time.perf_counter() - t0
    info = {"cases": len(index.cases), "index_dir": str(index.root), "cases_hash": index.manifest.cases_hash,
            "dense": index.dense_ready, "store": index.manifest.dense_store, "seconds": round(took, 2)}
    if args.json:
        print_json(info)
    else:
        print_markdown(f"Indexed **{info['cases']}** cases in {took:.1f} s → `{info['index_dir']}` "
                       f"({'lexical + embeddings, ' + str(info['store']) if info['dense'] else 'lexical only'}).")
    return EXIT_OK


def _list(args, settings) -> int:
    from ..kb.cases import load_cases
    from ..kb.facets import matches_filters
    from .output import print_json, print_markdown

    filters = {k: v for k, v in (("framework", args.framework), ("modality", args.modality),
                                 ("method", args.method)) if v}
    cases = [c for c in load_cases(settings.kb_dir) if matches_filters(c, filters)
             and (not args.label or args.label in c.root_causes)]
    if args.json:
        print_json({"count": len(cases), "cases": [
            {"id": c.id, "title": c.title, "framework": c.framework, "method": c.method, "modality": c.model.modality,
             "root_causes": c.root_causes, "source": c.source} for c in cases]})
        return EXIT_OK
    lines = [f"**{len(cases)} case(s)**", "", "| id | framework | method | causes | title |", "|---|---|---|---|---|"]
    lines += [f"| `{c.id}` | {c.framework} | {c.method} | {', '.join(c.root_causes[:2])} | {c.title.replace('|', '/')} |"
              for c in cases]
    print_markdown("\n".join(lines))
    return EXIT_OK


def _show(args, settings) -> int:
    from ..kb.cases import load_cases
    from ..kb.ingest import case_to_yaml
    from .output import print_json, print_markdown

    case = next((c for c in load_cases(settings.kb_dir) if c.id == args.id), None)
    if case is None:
        raise UserError(f"no case '{args.id}': see 'ask-oom kb list'")
    if args.json:
        print_json(case.model_dump(mode="json", by_alias=True, exclude_none=True))
    else:
        print_markdown(f"**{case.title}**  \nsource: {case.source}\n\n```yaml\n{case_to_yaml(case).rstrip()}\n```")
    return EXIT_OK
