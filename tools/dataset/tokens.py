"""Tokens per sample: the model's own tokenizer when a local tokenizer.json is given, else a stated estimate.

The estimate counts characters by script and divides by a chars-per-token ratio for typical 100k+-vocabulary
byte-level BPE tokenizers (Llama-3, Qwen2); both paths add the chat template's tokens per turn (an estimate,
since the template itself is not rendered).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..errors import InputError

# ---- the estimate (no tokenizer). Sources:
# Latin / ASCII text: ~4 characters per token (OpenAI's rule of thumb for English; tokenizer-arena measures 3.8-4.4
#   chars/token on cc-100 English for 32k-250k vocabularies: huggingface.co/spaces/eson/tokenizer-arena).
# CJK: Llama-3's 128k tokenizer: 1.24 Chinese characters per token on cc-100 zh-Hans (tokenizer-arena, same page);
#   DeepSeek's API docs give ~0.6 tokens per Chinese character (1.67 chars/token) and Qwen's BPE is quoted at
#   1.5-1.8. The lowest (1.24) is used: for a memory worst case, more tokens is the safe side.
# Other scripts (Cyrillic, Arabic, Indic, Thai...): 2 chars/token, an assumption (no measured source used).
LATIN_CHARS_PER_TOKEN = 4.0
CJK_CHARS_PER_TOKEN = 1.24
OTHER_CHARS_PER_TOKEN = 2.0
# Chat template overhead (estimate): ChatML (Qwen) wraps a message in <|im_start|>role\n ... <|im_end|>\n = 5 tokens,
# Llama-3 in <|start_header_id|>role<|end_header_id|>\n\n ... <|eot_id|> = 5 tokens; plus BOS/EOS once per sample.
TEMPLATE_TOKENS_PER_TURN = 5
TEMPLATE_TOKENS_PER_SAMPLE = 2
TOKENIZE_CHUNK = 2_048          # texts per encode_batch call
MAX_TOKENIZER_BYTES = 512 * 1024**2

# CJK ideographs, kana, hangul, CJK punctuation and full-width forms
_CJK = re.compile("[\u3000-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]")
# non-ASCII characters that are neither CJK nor Latin letters with diacritics (U+00C0-U+024F count as Latin)
_OTHER = re.compile("[^\x00-\x7f\u00c0-\u024f\u3000-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]")


class TokenCounter(Protocol):
    """Counts the text tokens of a batch of texts; `method` says how (shown to the user)."""

    method: str
    exact: bool

    def count(self, texts: list[str]) -> list[int]: ...


def estimate_tokens(text: str) -> int:
    """Stated estimate: characters by script / chars-per-token (see the constants' sources)."""
    n = len(text)
    if text.isascii():
        return math.ceil(n / LATIN_CHARS_PER_TOKEN)
    cjk = len(_CJK.findall(text))
    other = len(_OTHER.findall(text))
    latin = n - cjk - other
    return math.ceil(latin / LATIN_CHARS_PER_TOKEN + cjk / CJK_CHARS_PER_TOKEN + other / OTHER_CHARS_PER_TOKEN)


@dataclass(frozen=True)
class EstimateCounter:
    """Token counts from characters by script (no tokenizer available)."""

    method: str = (f"estimate: {LATIN_CHARS_PER_TOKEN:g} chars/token for Latin text, {CJK_CHARS_PER_TOKEN:g} for CJK "
                   f"(Llama-3 on cc-100 zh), {OTHER_CHARS_PER_TOKEN:g} for other scripts (assumed)")
    exact: bool = False

    def count(self, texts: list[str]) -> list[int]:
        return [estimate_tokens(t) for t in texts]


@dataclass(frozen=True)
class TokenizerCounter:
    """Token counts from the model's tokenizer.json (the `tokenizers` library, batched)."""

    tokenizer: object
    method: str
    exact: bool = True

    def count(self, texts: list[str]) -> list[int]:
        out: list[int] = []
        for start in range(0, len(texts), TOKENIZE_CHUNK):
            encs = self.tokenizer.encode_batch(texts[start:start + TOKENIZE_CHUNK], add_special_tokens=False)
            out.extend(len(e.ids) for e in encs)
        return out


def make_counter(tokenizer_dir: str | Path | None) -> TokenCounter:
    """The tokenizer of a local model directory (or a tokenizer.json path), else the estimate."""
    if tokenizer_dir is None:
        return EstimateCounter()
    p = Path(tokenizer_dir)
    f = p / "tokenizer.json" if p.is_dir() else p
    if not f.is_file():
        raise InputError(f"no tokenizer.json in {p} (give a local model directory, or leave it out for an estimate)")
    if f.stat().st_size > MAX_TOKENIZER_BYTES:
        raise InputError(f"{f} is over {MAX_TOKENIZER_BYTES // 1024**2} MiB: not a tokenizer.json")
    from tokenizers import Tokenizer

    try:
        tok = Tokenizer.from_file(str(f))
    except Exception as exc:  # tokenizers raises a bare Exception on a malformed file
        raise InputError(f"{f} is not a tokenizers tokenizer.json ({str(exc).splitlines()[0][:120]})") from None
    return TokenizerCounter(tokenizer=tok, method=f"tokenizer: {f}")


def template_tokens(turns: int) -> int:
    """Estimated chat-template tokens for a sample with `turns` messages."""
    return TEMPLATE_TOKENS_PER_SAMPLE + TEMPLATE_TOKENS_PER_TURN * turns


TEMPLATE_NOTE = (f"chat template overhead estimated at {TEMPLATE_TOKENS_PER_TURN} tokens per message "
                 f"(ChatML / Llama-3 headers) + {TEMPLATE_TOKENS_PER_SAMPLE} per sample (BOS/EOS); "
                 "a default system prompt the template adds is not counted")
