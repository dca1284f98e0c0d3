"""The paste's sentence embedding: the numpy forward pass is the packaged MiniLM's own (as sentence-transformers
computes it), a paste is read at its head and its tail, and the labelled reports' stored embeddings are those of
their pastes."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from ask_oom.kb.embedding import EmbeddingUnavailable, model_path
from ask_oom.kb.paste_embedding import (HEAD_TAIL_CHARS, MAX_TOKENS, dump_report_embeddings, load_encoder,
                                        load_report_embeddings, paste_embedding, paste_parts, read_safetensors)

REPO = Path(__file__).resolve().parents[2]

TEXTS = [
    "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.15 GiB",
    "只在评估的时候显存溢出，训练的时候没问题 (OOM only during eval)",
    "gradient checkpointing does not work with this model " * 40,   # past MAX_TOKENS: cut as sentence-transformers cuts
    "",
]


@pytest.fixture(scope="module")
def reference():
    """sentence-transformers' own embedding of TEXTS with the packaged model (torch), at MAX_TOKENS."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(model_path()), device="cpu")
    model.max_seq_length = MAX_TOKENS
    return model.encode(TEXTS, normalize_embeddings=True)


def test_the_numpy_forward_pass_is_the_models_own(reference):
    encoder = load_encoder()
    for text, expected in zip(TEXTS, reference):
        got = encoder.encode(text)
        assert got.shape == expected.shape and np.abs(got - expected).max() < 1e-5, text[:40]
        assert abs(float(np.linalg.norm(got)) - 1) < 1e-5


def test_the_weights_are_read_as_safetensors_reads_them(tmp_path):
    from safetensors.numpy import load_file

    path = model_path() / "model.safetensors"
    ours, theirs = read_safetensors(path), load_file(str(path))
    assert set(ours) == set(theirs)
    assert all(ours[k].dtype == theirs[k].dtype and np.array_equal(ours[k], theirs[k]) for k in theirs)
    for bad in (b"", b"\xff" * 8 + b"{}", (5).to_bytes(8, "little") + b"{oops"):
        (tmp_path / "bad.safetensors").write_bytes(bad)
        with pytest.raises(EmbeddingUnavailable):
            read_safetensors(tmp_path / "bad.safetensors")


def test_a_long_paste_is_read_at_its_head_and_its_tail():
    short = "CUDA out of memory"
    assert paste_parts(short) == [short]
    long = "words above the log\n" + "step\n" * HEAD_TAIL_CHARS + "CUDA out of memory at the end"
    head, tail = paste_parts(long)
    assert head == long[:HEAD_TAIL_CHARS] and tail == long[-HEAD_TAIL_CHARS:]
    encoder = load_encoder()
    expected = (encoder.encode(head) + encoder.encode(tail)) / 2
    assert np.abs(np.asarray(paste_embedding(long)) - expected).max() < 1e-5
    # a paste of what the model reads as one thing and one of another are told apart
    a, b = (np.asarray(paste_embedding(t)) for t in ("vllm kv cache out of memory while serving",
                                                      "deepspeed zero3 optimizer states full fine-tuning"))
    assert float(a @ b) < 0.9 * float(a @ a)


def test_stored_embeddings_read_back_as_written(tmp_path):
    path = tmp_path / "embeddings.npz"
    dump_report_embeddings({"b": [0.5, -0.25], "a": [0.125, 1.0]}, path)
    assert path.is_file() and load_report_embeddings(path) == {"a": [0.125, 1.0], "b": [0.5, -0.25]}
    assert load_report_embeddings(tmp_path / "absent.npz") == {}


def test_the_shipped_report_embeddings_are_those_of_their_pastes():
    """A sample of the dev reports embedded afresh agrees with kb/report_embeddings.npz (evals/build_reports.py
    --check compares all of them)."""
    sys.path.insert(0, str(REPO / "evals"))
    from build_reports import EMBEDDING_TOLERANCE, embed, embeddings_differ
    from diagnosis_benchmark import DEV_SETS, load_cases

    stored = load_report_embeddings()
    cases = [c for c in load_cases(DEV_SETS) if c["expected"].get("primary_any_of")]
    assert len(stored) == len(cases)
    sample = cases[:: max(1, len(cases) // 12)]
    fresh = embed(sample)
    assert embeddings_differ({i: stored[i] for i in fresh}, fresh) <= EMBEDDING_TOLERANCE
