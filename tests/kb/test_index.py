"""CaseIndex with the real llama-index retrievers and the packaged MiniLM model: persistence by content hash,
no re-embedding on load, the torch-free fast path, fusion, filters."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ask_oom.kb.index import RRF_K, CaseIndex
from ask_oom.kb.cases import CASES_DIR
from ask_oom.kb.text import tokenize

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def kb_copy(tmp_path_factory) -> Path:
    """A copy of the packaged cases (tests edit it)."""
    dst = tmp_path_factory.mktemp("kb") / "cases"
    shutil.copytree(CASES_DIR, dst, ignore=shutil.ignore_patterns(".ask-oom"))
    return dst


@pytest.fixture(scope="module")
def index(kb_copy) -> CaseIndex:
    return CaseIndex.load_or_build(cases_dir=kb_copy, dense=True)


def test_index_persists_beside_the_cases(index, kb_copy):
    root = kb_copy / ".ask-oom" / "index"
    assert index.root == root
    for name in ("manifest.json", "cases.json", "lexical.json", "vector/default__vector_store.json", "bm25/params.index.json"):
        assert (root / name).is_file(), name
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["dense_hash"] == manifest["cases_hash"] and manifest["n_cases"] == len(index.cases)


def test_loading_does_not_re_embed(index, kb_copy, monkeypatch):
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    calls = []
    original = HuggingFaceEmbedding._get_text_embeddings
    monkeypatch.setattr(HuggingFaceEmbedding, "_get_text_embeddings",
                        lambda self, texts: calls.append(len(texts)) or original(self, texts))
    again = CaseIndex.load_or_build(cases_dir=kb_copy, dense=True)
    assert again.manifest.built_at == index.manifest.built_at  # loaded, not rebuilt
    assert calls == []  # embeddings read back from disk
    hits = again.search("evaluation predictions accumulate on the GPU", k=3, mode="dense")
    assert hits and calls == []  # a query embeds the query only


def test_changed_cases_rebuild_themselves(index, kb_copy):
    new = kb_copy / "zz-test-added-case.yaml"
    new.write_text("""id: zz-test-added-case
title: Whisper-large-v3 fine-tuning on a T4 runs out of memory in the log-mel feature extractor
source: https://example.org/test-only
model: {name: openai/whisper-large-v3, size: 1.5B}
framework: hf_trainer
symptom: {error_kind: cuda_oom, phase: forward, message: OOM in feature extractor on T4}
root_causes: [batch_too_large]
""", encoding="utf-8")
    try:
        rebuilt = CaseIndex.load_or_build(cases_dir=kb_copy)
        assert rebuilt.manifest.cases_hash != index.manifest.cases_hash
        assert len(rebuilt.cases) == len(index.cases) + 1
        assert rebuilt.search("whisper log-mel feature extractor T4", k=1, mode="fast")[0].case.id == new.stem
        assert rebuilt.manifest.dense_hash != rebuilt.manifest.cases_hash  # dense part is stale → rebuilt on use
        assert rebuilt.search("whisper log-mel feature extractor T4", k=1, mode="hybrid")[0].case.id == new.stem
    finally:
        new.unlink()


def test_fast_path_imports_no_torch_or_llama_index(index, kb_copy):
    code = (
        "import sys, json\n"
        "from ask_oom.kb.index import CaseIndex\n"
        f"idx = CaseIndex.load_or_build(cases_dir={str(kb_copy)!r})\n"
        "hits = idx.search('Qwen2.5-VL 全量微调 显存逐渐增加', k=3, mode='fast')\n"
        "heavy = [m for m in ('torch', 'llama_index.core', 'transformers', 'sentence_transformers', 'numpy') if m in sys.modules]\n"
        "print(json.dumps({'ids': [h.case.id for h in hits], 'heavy': heavy}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    result = json.loads(out.stdout)
    assert result["heavy"] == []
    assert "seed-qwen2.5-vl-7b-full-memory-growth" in result["ids"][:3]


@pytest.mark.parametrize("mode", ["hybrid", "dense", "bm25", "fast"])
def test_modes_find_the_case(index, mode):
    hits = index.search("Trainer evaluate OOM because all predictions and logits are kept on the GPU", k=3, mode=mode)
    assert "eval_accumulation" in hits[0].case.root_causes
    assert [h.rank for h in hits] == [1, 2, 3] and all(h.mode == mode for h in hits)
    assert hits[0].score >= hits[-1].score


def test_hybrid_is_reciprocal_rank_fusion(index):
    q = "QLoRA 4-bit bitsandbytes model loading OOM"
    n = len(index.cases)
    dense = [cid for cid, _ in index.ensure_dense().dense(q, n)]
    lexical = [cid for cid, _ in index.ensure_dense().lexical(q, n)]
    for hit in index.search(q, k=5, mode="hybrid"):
        expect = sum(1.0 / (RRF_K + ranks.index(hit.case.id) + 1) for ranks in (dense, lexical) if hit.case.id in ranks)
        assert hit.score == pytest.approx(expect, abs=1e-6)
        assert hit.dense_score is not None


def test_fast_bm25_ranks_like_llama_index_bm25(index):
    """The pure-Python BM25 of the fast path and bm25s under llama-index score the same documents alike."""
    for q in ("cutoff_len 16384 ZeRO-3 flash attention", "vLLM gpu_memory_utilization KV cache", "显存碎片 expandable_segments"):
        li = index.ensure_dense().lexical(q, len(index.cases))
        ours = dict(zip(index.lexical.ids, index.lexical.scores(tokenize(q))))
        for cid, score in li[:5]:
            assert ours[cid] == pytest.approx(score, rel=1e-3), (q, cid)


@pytest.mark.parametrize("mode", ["hybrid", "dense", "bm25", "fast"])
def test_filters(index, mode):
    hits = index.search("out of memory during training", k=10, filters={"framework": "llamafactory"}, mode=mode)
    assert hits and all(h.case.framework == "llamafactory" for h in hits)
    hits = index.search("out of memory", k=10, filters={"modality": "moe", "method": "full"}, mode=mode)
    assert all("moe" in h.case.model.modality and h.case.method == "full" for h in hits)
    assert index.search("out of memory", filters={"framework": "no-such-framework"}, mode=mode) == []


def test_bad_queries(index):
    assert index.search("   ", mode="fast") == []
    assert index.search("zzzzqqq", mode="fast") == []
    with pytest.raises(ValueError, match="unknown search mode"):
        index.search("oom", mode="semantic")
    with pytest.raises(ValueError, match="unknown filter"):
        index.search("oom", filters={"gpu": "A100"}, mode="fast")


def test_explicit_index_dir_and_corrupt_files_rebuild(kb_copy, tmp_path):
    idx = CaseIndex.load_or_build(cases_dir=kb_copy, index_dir=tmp_path / "idx")
    assert idx.root == tmp_path / "idx"
    (tmp_path / "idx" / "lexical.json").write_text("{corrupt")
    again = CaseIndex.load_or_build(cases_dir=kb_copy, index_dir=tmp_path / "idx")
    assert len(again.cases) == len(idx.cases) and again.search("OOM", mode="fast")


def test_qdrant_vector_store_path(kb_copy, tmp_path):
    """The same index code against Qdrant (local mode here; a server URL in production): build, reload, filter."""
    pytest.importorskip("llama_index.vector_stores.qdrant")
    from ask_oom.assistant.settings import Settings

    settings = Settings(kb_dir=kb_copy, index_dir=tmp_path / "idx", qdrant_url=str(tmp_path / "qdrant"),
                        qdrant_collection="test_cases")
    built = CaseIndex.load_or_build(settings, dense=True)
    assert built.manifest.dense_store == "qdrant"
    assert not (tmp_path / "idx" / "vector").exists()  # vectors live in Qdrant, not in the JSON store
    again = CaseIndex.load_or_build(settings)
    hits = again.search("Trainer evaluation OOM, predictions accumulated on the GPU", k=3, mode="dense")
    assert again.manifest.built_at == built.manifest.built_at
    assert "eval_accumulation" in hits[0].case.root_causes
    hits = again.search("out of memory", k=5, filters={"framework": "llamafactory"}, mode="hybrid")
    assert hits and all(h.case.framework == "llamafactory" for h in hits)


def test_matrix_vector_store_ranks_like_simple_vector_store(index):
    """The vectorised query returns what llama-index's own SimpleVectorStore returns, filters included."""
    from llama_index.core.vector_stores.simple import SimpleVectorStore
    from llama_index.core.vector_stores.types import VectorStoreQuery

    from ask_oom.kb.embedding import embed_query
    from ask_oom.kb.hybrid import metadata_filters
    from ask_oom.kb.vector_store import MatrixVectorStore

    store = index.ensure_dense().vector_index.vector_store
    assert isinstance(store, MatrixVectorStore)
    plain = SimpleVectorStore(data=store.data)
    for text, filters in (("QLoRA 4-bit OOM while loading", None), ("evaluation OOM", {"framework": "hf_trainer"}),
                          ("vision tower OOM", {"modality": ["vision-language", "moe"], "method": "lora"})):
        some = list(store.data.embedding_dict)[::2]
        for node_ids in (None, some):
            q = VectorStoreQuery(query_embedding=embed_query(text), similarity_top_k=7,
                                 filters=metadata_filters(filters), node_ids=node_ids)
            ours, theirs = store.query(q), plain.query(q)
            assert ours.ids == theirs.ids
            assert ours.similarities == pytest.approx(theirs.similarities, abs=1e-5)
