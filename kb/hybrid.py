"""The llama-index side of retrieval: a VectorStoreIndex of case texts (MiniLM embeddings) and a BM25Retriever.

Embedded by default (SimpleVectorStore persisted as JSON, loaded without re-embedding); with Settings.qdrant_url
the same nodes live in a Qdrant collection named after the cases' content hash, so every CLI, web UI and Slack
bot pointing at that server shares one index and a changed knowledge base gets a fresh collection.
"""

from __future__ import annotations

import atexit
import logging
import uuid
from pathlib import Path

from .embedding import embed_query, load_embed_model
from .facets import FILTER_KEYS, case_facets
from .schema import Case
from .text import tokenize, translate_zh

logging.getLogger("bm25s").setLevel(logging.ERROR)


EMBED_MAX_TOKENS = 128  # MiniLM was trained on 128-token inputs; cost grows with length (1,000 cases < 60 s on 2 cores)


def embed_text(case: Case) -> str:
    """The gist of a case for the embedding model: what failed, where, why, what fixed it, without rationales.

    BM25 indexes the full Case.search_text(); the dense side needs the meaning, and every token costs build time.
    """
    s = case.symptom
    fixes = "; ".join(f.key or (f.action or "")[:60] for f in case.fixes if f.key or f.action)
    return "\n".join(p for p in (
        case.title,
        f"{case.model.name} {case.model.size or ''} {case.model.modality}, {case.framework}, {case.method}",
        f"{s.error_kind} {s.phase or ''} {s.operation or ''}: {(s.message or '')[:160]}",
        "causes: " + ", ".join(c.replace("_", " ") for c in case.root_causes),
        f"fixes: {fixes}" if fixes else "",
    ) if p.strip())


def node_id(case_id: str) -> str:
    """A stable UUID per case (Qdrant accepts only UUIDs or integers as point ids); case_id rides in metadata."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"ask-oom-case:{case_id}"))


def case_node(case: Case):
    """One TextNode per case: the text embedded is the case's gist (embed_text); facets ride along for filters."""
    from llama_index.core.schema import TextNode

    facets = case_facets(case)
    metadata = {"case_id": case.id, **{f"{k}_tags": sorted(facets[k]) for k in FILTER_KEYS}}
    return TextNode(id_=node_id(case.id), text=embed_text(case), metadata=metadata,
                    excluded_embed_metadata_keys=list(metadata), excluded_llm_metadata_keys=list(metadata))


def lexical_node(case: Case):
    """The BM25 twin of a case node: its text is the kb.text token stream, so Chinese glossary terms and
    config keys are tokenised exactly like the fast path's."""
    from llama_index.core.schema import TextNode

    return TextNode(id_=case.id, text=" ".join(tokenize(case.search_text())), metadata={"case_id": case.id},
                    excluded_embed_metadata_keys=["case_id"], excluded_llm_metadata_keys=["case_id"])


def metadata_filters(filters: dict | None, qdrant: bool = False):
    """llama-index MetadataFilters (AND of facets; a list value means any of) or None.

    Facets are lists in the metadata; "any overlap" is ANY for the simple store and IN for Qdrant (MatchAny on arrays).
    """
    from llama_index.core.vector_stores.types import FilterOperator, MetadataFilter, MetadataFilters

    items = []
    for key, want in (filters or {}).items():
        if want in (None, "", []):
            continue
        values = [str(w).lower() for w in (want if isinstance(want, (list, tuple, set)) else [want])]
        op = FilterOperator.IN if qdrant else FilterOperator.ANY
        items.append(MetadataFilter(key=f"{key}_tags", value=values, operator=op))
    return MetadataFilters(filters=items) if items else None


class HybridRetrievers:
    """Dense (VectorStoreIndex) and BM25 (llama-index-retrievers-bm25) retrievers over the same cases."""

    def __init__(self, vector_index, bm25, n_cases: int, qdrant: bool = False):
        self.qdrant = qdrant
        self.vector_index = vector_index
        self.bm25 = bm25
        self.n_cases = n_cases

    # --- building and loading -------------------------------------------------------------------------
    @classmethod
    def build(cls, cases: list[Case], root: Path, *, qdrant_url: str | None = None,
              collection: str | None = None) -> "HybridRetrievers":
        """Embed every case once and persist both retrievers under root (or the vectors in Qdrant)."""
        from llama_index.core import StorageContext, VectorStoreIndex

        embed = load_embed_model()
        nodes = [case_node(c) for c in cases]
        if qdrant_url:
            store = _qdrant_store(qdrant_url, collection, recreate=True)
            storage = StorageContext.from_defaults(vector_store=store)
            vector_index = VectorStoreIndex(nodes, storage_context=storage, embed_model=embed)
        else:
            from .vector_store import MatrixVectorStore

            storage = StorageContext.from_defaults(vector_store=MatrixVectorStore())
            vector_index = VectorStoreIndex(nodes, storage_context=storage, embed_model=embed)
            vector_index.storage_context.persist(persist_dir=str(root / "vector"))
        bm25 = _build_bm25([lexical_node(c) for c in cases])
        bm25.persist(str(root / "bm25"), show_progress=False)
        return cls(vector_index, bm25, len(cases), qdrant=bool(qdrant_url))

    @classmethod
    def load(cls, root: Path, n_cases: int, *, qdrant_url: str | None = None,
             collection: str | None = None) -> "HybridRetrievers":
        """Load the persisted retrievers; embeddings are read back, never recomputed."""
        from llama_index.core import StorageContext, VectorStoreIndex, load_index_from_storage
        from llama_index.retrievers.bm25 import BM25Retriever

        embed = load_embed_model()
        if qdrant_url:
            vector_index = VectorStoreIndex.from_vector_store(_qdrant_store(qdrant_url, collection), embed_model=embed)
        else:
            from .vector_store import MatrixVectorStore

            folder = str(root / "vector")
            storage = StorageContext.from_defaults(persist_dir=folder,
                                                   vector_store=MatrixVectorStore.from_persist_dir(folder))
            vector_index = load_index_from_storage(storage, embed_model=embed)
        bm25 = BM25Retriever.from_persist_dir(str(root / "bm25"), show_progress=False)
        return cls(vector_index, bm25, n_cases, qdrant=bool(qdrant_url))

    # --- querying -----------------------------------------------------------------------------------
    def dense(self, query: str, top_k: int, filters: dict | None = None) -> list[tuple[str, float]]:
        """(case id, cosine similarity), best first; Chinese terms are glossed into English for the English model."""
        from llama_index.core.schema import QueryBundle

        retriever = self.vector_index.as_retriever(similarity_top_k=min(top_k, self.n_cases),
                                                   filters=metadata_filters(filters, self.qdrant))
        text = translate_zh(query)
        bundle = QueryBundle(query_str=text, embedding=embed_query(text))  # embedded once, on one thread
        return [(n.node.metadata["case_id"], float(n.score or 0.0)) for n in retriever.retrieve(bundle)]

    def lexical(self, query: str, top_k: int) -> list[tuple[str, float]]:
        """(case id, BM25 score), best first; only cases sharing a term with the query."""
        from llama_index.core.schema import QueryBundle

        tokens = tokenize(query)
        if not tokens:
            return []
        self.bm25.similarity_top_k = min(top_k, self.n_cases)
        hits = self.bm25.retrieve(QueryBundle(" ".join(tokens)))
        return [(n.node.node_id, float(n.score or 0.0)) for n in hits if (n.score or 0.0) > 0.0]


def _build_bm25(nodes):
    from llama_index.retrievers.bm25 import BM25Retriever

    # Tokens are already lower-cased, stemmed and stop-word-free (kb.text): bm25s only splits on spaces.
    return BM25Retriever.from_defaults(nodes=nodes, similarity_top_k=len(nodes), skip_stemming=True,
                                       token_pattern=r"\S+", language=None)


class VectorStoreUnavailable(RuntimeError):
    """The configured vector store cannot be used (Qdrant extra missing, server unreachable)."""


_QDRANT_CLIENTS: dict[str, object] = {}  # one client per location and process (local-mode storage is locked)


def _qdrant_client(url: str):
    """A Qdrant client: http(s)://host:6333 for a server; ':memory:' or a folder path for Qdrant's local mode."""
    try:
        import qdrant_client
    except ImportError as exc:
        raise VectorStoreUnavailable("qdrant_url is set but the Qdrant extra is missing: pip install 'ask-oom[qdrant]'") from exc
    if not _QDRANT_CLIENTS:
        atexit.register(_close_qdrant_clients)
    if url not in _QDRANT_CLIENTS:
        if url.startswith(("http://", "https://")):
            _QDRANT_CLIENTS[url] = qdrant_client.QdrantClient(url=url, timeout=10)
        elif url == ":memory:":
            _QDRANT_CLIENTS[url] = qdrant_client.QdrantClient(location=":memory:")
        else:
            _QDRANT_CLIENTS[url] = qdrant_client.QdrantClient(path=url)
    return _QDRANT_CLIENTS[url]


def _close_qdrant_clients() -> None:
    for client in _QDRANT_CLIENTS.values():
        try:
            client.close()
        except Exception:  # noqa: BLE001 - closing at exit is best effort
            pass
    _QDRANT_CLIENTS.clear()


def _qdrant_store(url: str, collection: str | None, recreate: bool = False):
    """A QdrantVectorStore (optional extra `qdrant`: pip install 'ask-oom[qdrant]'); the collection is named after
    the cases' content hash, so a server shared by several machines keeps one collection per knowledge-base version."""
    client = _qdrant_client(url)
    from llama_index.vector_stores.qdrant import QdrantVectorStore

    try:
        exists = client.collection_exists(collection)
    except Exception as exc:  # noqa: BLE001 - connection refused, timeout, TLS, auth: all mean "not usable now"
        raise VectorStoreUnavailable(f"Qdrant at {url} is unreachable ({type(exc).__name__}); "
                                     "check ASK_OOM_QDRANT_URL or unset it to use the embedded index") from None
    if not recreate and not exists:
        raise ValueError(f"Qdrant collection {collection} is missing")  # → CaseIndex rebuilds it
    if recreate and exists:
        client.delete_collection(collection)
    return QdrantVectorStore(client=client, collection_name=collection)
