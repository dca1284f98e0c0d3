"""BM25 statistics in plain JSON, scored in pure Python: the retrieval fast path needs no numpy, torch or llama-index.

Same scoring as bm25s' default (Lucene variant, k1=1.5, b=0.75), which the llama-index BM25 retriever uses
in hybrid mode, so the fast path and the hybrid path rank lexically alike.
"""

from __future__ import annotations

import math
from collections import Counter

from pydantic import BaseModel, Field

K1 = 1.5
B = 0.75


class LexicalIndex(BaseModel):
    """Per-document term frequencies plus document frequencies; a few hundred KB for 1,000 cases."""

    ids: list[str]
    doc_len: list[int]
    term_freqs: list[dict[str, int]]
    doc_freq: dict[str, int] = Field(default_factory=dict)

    @classmethod
    def build(cls, ids: list[str], docs_tokens: list[list[str]]) -> "LexicalIndex":
        tfs = [dict(Counter(tokens)) for tokens in docs_tokens]
        df: Counter[str] = Counter()
        for tf in tfs:
            df.update(tf.keys())
        return cls(ids=list(ids), doc_len=[len(t) for t in docs_tokens], term_freqs=tfs, doc_freq=dict(df))

    def scores(self, query_tokens: list[str]) -> list[float]:
        """BM25 score of every document for the query (0.0 where no term matches)."""
        n = len(self.ids)
        if n == 0:
            return []
        avgdl = (sum(self.doc_len) / n) or 1.0
        out = [0.0] * n
        for term in set(query_tokens):
            df = self.doc_freq.get(term)
            if not df:
                continue
            # Lucene idf (always positive), as in bm25s method="lucene"
            idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
            for i, tf in enumerate(self.term_freqs):
                f = tf.get(term)
                if f:
                    out[i] += idf * f / (f + K1 * (1 - B + B * self.doc_len[i] / avgdl))
        return out
