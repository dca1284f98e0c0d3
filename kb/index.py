"""`CaseIndex`: find the knowledge-base cases most like a query.

Two paths over one persisted index:
- fast (the CLI's cold path): BM25 statistics in JSON + structured facet matching, pure Python; no torch,
  no llama-index, no embedding model, so `ask-oom < log` starts in well under a second.
- hybrid (warm processes: web UI, Slack bot, `ask-oom search`): llama-index dense retrieval with the offline
  MiniLM model fused with llama-index BM25 by reciprocal rank; also "dense" and "bm25" alone for comparison.

The index persists beside the cases (or in the state dir if that folder is read-only) with a content hash
of the case files; a changed knowledge base rebuilds itself, and loading never re-embeds.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from .cases import cases_hash, default_cases_dir, load_cases
from .facets import case_facets, facet_bonus, matches_filters, query_facets
from .lexical import LexicalIndex
from .schema import Case
from .text import tokenize

INDEX_FORMAT = 4  # bump when the tokenizer, node text or file layout changes: old indexes rebuild themselves
CANDIDATES = 50  # per-retriever candidates fused by RRF
RRF_K = 60  # reciprocal rank fusion constant (Cormack et al. 2009, "RRF outperforms Condorcet")
Mode = Literal["fast", "hybrid", "dense", "bm25"]
MODES: tuple[str, ...] = ("fast", "hybrid", "dense", "bm25")


class CaseHit(BaseModel):
    """One retrieved case, its score under the mode used, and the per-retriever evidence."""

    case: Case
    score: float
    rank: int
    mode: str
    dense_score: float | None = Field(default=None, description="cosine similarity (dense / hybrid)")
    bm25_score: float | None = Field(default=None, description="BM25 score (bm25 / hybrid / fast)")
    matched_facets: list[str] = Field(default_factory=list, description="facets the query and the case share (fast)")

    @property
    def case_id(self) -> str:
        return self.case.id

    @property
    def source(self) -> str:
        return self.case.source


class IndexManifest(BaseModel):
    format: int = INDEX_FORMAT
    cases_hash: str
    n_cases: int
    built_at: float
    dense_hash: str | None = Field(default=None, description="cases_hash the dense part was built from")
    dense_store: str | None = None
    dense_build_s: float | None = None


def index_root(cases_dir: Path, index_dir: Path | None = None) -> Path:
    """Where the index lives: index_dir if given; beside the cases if writable; else the user's state dir."""
    if index_dir is not None:
        return Path(index_dir)
    folder = cases_dir if cases_dir.is_dir() else cases_dir.parent  # kb_dir may name a single case file
    beside = folder / ".ask-oom" / "index"
    probe = beside if beside.exists() else folder
    if os.access(probe, os.W_OK):
        return beside
    state = Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state")) / "ask-oom" / "index"
    return state / hashlib.sha256(str(cases_dir.resolve()).encode()).hexdigest()[:16]


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


class CaseIndex:
    """Cases + lexical statistics (always loaded) + llama-index retrievers (loaded on first dense/hybrid use)."""

    def __init__(self, cases: list[Case], lexical: LexicalIndex, root: Path, manifest: IndexManifest, *,
                 qdrant_url: str | None = None, qdrant_collection: str = "ask_oom_cases"):
        self.cases = cases
        self.by_id = {c.id: c for c in cases}
        self.lexical = lexical
        self.root = root
        self.manifest = manifest
        self.qdrant_url = qdrant_url
        self.qdrant_collection = qdrant_collection
        self._facets = [case_facets(c) for c in cases]
        self._hybrid = None

    # --- construction ------------------------------------------------------------------------------
    @classmethod
    def load_or_build(cls, settings=None, *, cases_dir: str | Path | None = None,
                      index_dir: str | Path | None = None, dense: bool = False) -> "CaseIndex":
        """The index for the current cases: loaded if its hash matches, rebuilt (lexical part: instantly) if not.

        dense=True also loads (or builds) the embedding side now instead of on the first hybrid query.
        """
        cases_dir = default_cases_dir(cases_dir if cases_dir is not None else getattr(settings, "kb_dir", None))
        index_dir = index_dir if index_dir is not None else getattr(settings, "index_dir", None)
        root = index_root(cases_dir, Path(index_dir) if index_dir else None)
        qdrant = {"qdrant_url": getattr(settings, "qdrant_url", None),
                  "qdrant_collection": getattr(settings, "qdrant_collection", "ask_oom_cases")}
        digest = cases_hash(cases_dir, extra=f"format={INDEX_FORMAT}")
        index = cls._load(root, digest, **qdrant)
        if index is None:
            index = cls._build_lexical(load_cases(cases_dir), root, digest, **qdrant)
        if dense:
            index.ensure_dense()
        return index

    @classmethod
    def build(cls, settings=None, *, cases_dir: str | Path | None = None, index_dir: str | Path | None = None,
              dense: bool = True) -> "CaseIndex":
        """Rebuild from the case files regardless of the stored hash (`ask-oom kb build`)."""
        cases_dir = default_cases_dir(cases_dir if cases_dir is not None else getattr(settings, "kb_dir", None))
        index_dir = index_dir if index_dir is not None else getattr(settings, "index_dir", None)
        root = index_root(cases_dir, Path(index_dir) if index_dir else None)
        digest = cases_hash(cases_dir, extra=f"format={INDEX_FORMAT}")
        index = cls._build_lexical(load_cases(cases_dir), root, digest,
                                   qdrant_url=getattr(settings, "qdrant_url", None),
                                   qdrant_collection=getattr(settings, "qdrant_collection", "ask_oom_cases"))
        if dense:
            index._build_dense()
        return index

    @classmethod
    def from_cases(cls, cases: list[Case], root: str | Path, *, dense: bool = False) -> "CaseIndex":
        """An index over given cases (benchmarks, tests), persisted under root."""
        digest = hashlib.sha256(json.dumps([c.model_dump(mode="json") for c in cases], sort_keys=True).encode())
        index = cls._build_lexical(cases, Path(root), digest.hexdigest())
        if dense:
            index._build_dense()
        return index

    @classmethod
    def _load(cls, root: Path, digest: str, **qdrant) -> "CaseIndex | None":
        try:
            manifest = IndexManifest.model_validate_json((root / "manifest.json").read_text(encoding="utf-8"))
            if manifest.format != INDEX_FORMAT or manifest.cases_hash != digest:
                return None
            cases = [Case.model_validate(d) for d in json.loads((root / "cases.json").read_text(encoding="utf-8"))]
            lexical = LexicalIndex.model_validate_json((root / "lexical.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None  # missing or corrupt: rebuild
        if lexical.ids != [c.id for c in cases]:
            return None
        return cls(cases, lexical, root, manifest, **qdrant)

    @classmethod
    def _build_lexical(cls, cases: list[Case], root: Path, digest: str, **qdrant) -> "CaseIndex":
        lexical = LexicalIndex.build([c.id for c in cases], [tokenize(c.search_text()) for c in cases])
        manifest = IndexManifest(cases_hash=digest, n_cases=len(cases), built_at=time.time())
        index = cls(cases, lexical, root, manifest, **qdrant)
        try:
            _write_atomic(root / "cases.json",
                          json.dumps([c.model_dump(mode="json", by_alias=True) for c in cases], ensure_ascii=False))
            _write_atomic(root / "lexical.json", lexical.model_dump_json())
            index._write_manifest()
        except OSError:
            pass  # a read-only location still answers from memory; the next run rebuilds (milliseconds)
        return index

    def _write_manifest(self) -> None:
        _write_atomic(self.root / "manifest.json", self.manifest.model_dump_json(indent=2))

    # --- the llama-index side ----------------------------------------------------------------------
    @property
    def dense_ready(self) -> bool:
        return self._hybrid is not None

    def _collection(self) -> str:
        return f"{self.qdrant_collection}_{self.manifest.cases_hash[:12]}"

    def ensure_dense(self):
        """Load the persisted llama-index retrievers (no re-embedding), building them if stale or missing."""
        if self._hybrid is not None:
            return self._hybrid
        from .hybrid import HybridRetrievers

        store = "qdrant" if self.qdrant_url else "simple"
        if self.manifest.dense_hash == self.manifest.cases_hash and self.manifest.dense_store == store:
            try:
                self._hybrid = HybridRetrievers.load(self.root, len(self.cases), qdrant_url=self.qdrant_url,
                                                     collection=self._collection())
                return self._hybrid
            except (OSError, ValueError, KeyError):
                pass  # incomplete files: rebuild below
        return self._build_dense()

    def _build_dense(self):
        from .hybrid import HybridRetrievers

        t0 = time.perf_counter()
        self._hybrid = HybridRetrievers.build(self.cases, self.root, qdrant_url=self.qdrant_url,
                                              collection=self._collection())
        self.manifest = self.manifest.model_copy(update={
            "dense_hash": self.manifest.cases_hash, "dense_store": "qdrant" if self.qdrant_url else "simple",
            "dense_build_s": round(time.perf_counter() - t0, 3)})
        try:
            self._write_manifest()
        except OSError:
            pass
        return self._hybrid

    # --- search ------------------------------------------------------------------------------------
    def search(self, query: str, k: int = 5, filters: dict | None = None, mode: str = "hybrid") -> list[CaseHit]:
        """The k cases most like `query` (best first) among those matching `filters` (framework/modality/method)."""
        if mode not in MODES:
            raise ValueError(f"unknown search mode '{mode}': use one of {', '.join(MODES)}")
        if k < 1 or not query.strip() or not self.cases:
            return []
        allowed = {c.id for c in self.cases if matches_filters(c, filters)}
        if not allowed:
            return []
        if mode == "fast":
            return self._search_fast(query, k, allowed)
        hybrid = self.ensure_dense()
        n = len(self.cases)
        # fusion looks at the top candidates of each retriever, not the whole corpus (keeps a warm query in ms);
        # BM25 filters after retrieval, so with filters it ranks everything
        depth = min(n, max(CANDIDATES, 4 * k))
        dense = [(i, s) for i, s in hybrid.dense(query, depth, filters)] if mode in ("dense", "hybrid") else []
        lexical = ([(i, s) for i, s in hybrid.lexical(query, n if filters else depth) if i in allowed]
                   if mode in ("bm25", "hybrid") else [])
        dense = [(i, s) for i, s in dense if i in allowed]
        d_score, l_score = dict(dense), dict(lexical)
        if mode == "dense":
            ranked = dense
        elif mode == "bm25":
            ranked = lexical
        else:
            fused: dict[str, float] = {}
            for results in (dense, lexical):
                for rank, (cid, _) in enumerate(results, start=1):
                    fused[cid] = fused.get(cid, 0.0) + 1.0 / (RRF_K + rank)
            ranked = sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))
        return [CaseHit(case=self.by_id[cid], score=round(score, 6), rank=r, mode=mode,
                        dense_score=d_score.get(cid), bm25_score=l_score.get(cid))
                for r, (cid, score) in enumerate(ranked[:k], start=1)]

    def _search_fast(self, query: str, k: int, allowed: set[str]) -> list[CaseHit]:
        """BM25 (normalised to [0, 1]) plus a bonus for each facet the query names and the case shares."""
        bm25 = self.lexical.scores(tokenize(query))
        top = max(bm25, default=0.0)
        if top <= 0.0:
            return []
        qf = query_facets(query)
        scored = []
        for case, facets, raw in zip(self.cases, self._facets, bm25):
            if raw <= 0.0 or case.id not in allowed:
                continue
            bonus = facet_bonus(qf, facets)
            matched = sorted(f for f, vals in qf.items() if vals & facets.get(f, set()))
            scored.append((raw / top + bonus, raw, matched, case))
        scored.sort(key=lambda t: (-t[0], t[3].id))
        return [CaseHit(case=case, score=round(score, 6), rank=r, mode="fast", bm25_score=round(raw, 6),
                        matched_facets=matched)
                for r, (score, raw, matched, case) in enumerate(scored[:k], start=1)]
