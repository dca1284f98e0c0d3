"""llama-index's SimpleVectorStore with a vectorised query: same data, same JSON on disk, same filters.

The stock query turns the stored lists into an array and scores them one by one in Python on every call
(~20 ms for 1,000 cases); here the normalised matrix is kept between calls and scored in one product.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from llama_index.core.vector_stores.simple import SimpleVectorStore
from llama_index.core.vector_stores.types import VectorStoreQuery, VectorStoreQueryMode, VectorStoreQueryResult
from llama_index.core.vector_stores.utils import build_metadata_filter_fn
from pydantic import PrivateAttr


class MatrixVectorStore(SimpleVectorStore):
    """SimpleVectorStore whose default (cosine, top-k) query is one matrix-vector product."""

    _matrix: Any = PrivateAttr(default=None)
    _ids: list = PrivateAttr(default_factory=list)

    def add(self, nodes, **add_kwargs):
        self._matrix = None
        return super().add(nodes, **add_kwargs)

    def delete(self, ref_doc_id: str, **delete_kwargs) -> None:
        self._matrix = None
        super().delete(ref_doc_id, **delete_kwargs)

    def delete_nodes(self, *args, **kwargs) -> None:
        self._matrix = None
        super().delete_nodes(*args, **kwargs)

    def clear(self) -> None:
        self._matrix = None
        super().clear()

    def _normalised(self) -> tuple[np.ndarray, list]:
        if self._matrix is None or len(self._ids) != len(self.data.embedding_dict):
            self._ids = list(self.data.embedding_dict)
            m = np.asarray([self.data.embedding_dict[i] for i in self._ids], dtype=np.float32).reshape(len(self._ids), -1)
            norms = np.linalg.norm(m, axis=1, keepdims=True)
            self._matrix = m / np.where(norms == 0, 1.0, norms)
        return self._matrix, self._ids

    def query(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        if query.mode != VectorStoreQueryMode.DEFAULT or query.query_embedding is None:
            return super().query(query, **kwargs)
        matrix, ids = self._normalised()
        if not ids:
            return VectorStoreQueryResult(similarities=[], ids=[])
        q = np.asarray(query.query_embedding, dtype=np.float32)
        sims = matrix @ (q / (np.linalg.norm(q) or 1.0))  # cosine, as llama-index's default similarity
        # the index's retriever passes the ids it holds (node_ids); filters select by metadata
        allowed = set(query.node_ids) if query.node_ids is not None else None
        if query.filters is not None or allowed is not None:
            keep = build_metadata_filter_fn(lambda node_id: self.data.metadata_dict[node_id], query.filters)
            mask = np.fromiter(((allowed is None or i in allowed) and keep(i) for i in ids), dtype=bool, count=len(ids))
            sims = np.where(mask, sims, -np.inf)
        k = min(query.similarity_top_k or len(ids), len(ids))
        top = np.argpartition(-sims, k - 1)[:k]
        top = top[np.argsort(-sims[top], kind="stable")]
        top = [i for i in top if np.isfinite(sims[i])]
        return VectorStoreQueryResult(similarities=[float(sims[i]) for i in top], ids=[ids[i] for i in top])
