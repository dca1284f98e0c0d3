"""Token counts: a real `tokenizers` tokenizer built in the test, and the stated estimate by script."""

from __future__ import annotations

import json

import pytest
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import Whitespace

from ask_oom.tools.dataset import profile_dataset
from ask_oom.tools.dataset.tokens import (CJK_CHARS_PER_TOKEN, LATIN_CHARS_PER_TOKEN, TEMPLATE_TOKENS_PER_SAMPLE,
                                          TEMPLATE_TOKENS_PER_TURN, TOKENIZE_CHUNK, estimate_tokens, make_counter)
from ask_oom.tools.errors import InputError


def _tokenizer_dir(tmp_path):
    vocab = {"[UNK]": 0, "hello": 1, "world": 2, "memory": 3, "batch": 4}
    tok = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = Whitespace()
    d = tmp_path / "model"
    d.mkdir()
    tok.save(str(d / "tokenizer.json"))
    return d


def test_tokenizer_counts_are_exact_and_batched(tmp_path):
    counter = make_counter(_tokenizer_dir(tmp_path))
    assert counter.exact
    texts = ["hello world", "memory batch memory unknownword", ""] * (TOKENIZE_CHUNK // 2)  # crosses a chunk edge
    counts = counter.count(texts)
    assert counts[:3] == [2, 4, 0] and len(counts) == len(texts)


def test_profile_with_tokenizer_uses_its_counts(tmp_path):
    d = _tokenizer_dir(tmp_path)
    f = tmp_path / "d.jsonl"
    f.write_text("\n".join(json.dumps({"instruction": "hello " * n, "output": "world"}) for n in (1, 50, 7)) + "\n")
    prof = profile_dataset(f, tokenizer_dir=d)
    assert prof.tokens_exact
    tmpl = TEMPLATE_TOKENS_PER_SAMPLE + 2 * TEMPLATE_TOKENS_PER_TURN
    assert prof.text.max == 51 and prof.text.min == 2
    assert prof.total.max == 51 + tmpl
    assert prof.worst[0].index == 1
    est = profile_dataset(f)
    assert not est.tokens_exact and any("estimated" in n for n in est.notes)


def test_missing_tokenizer_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="no tokenizer.json"):
        make_counter(tmp_path)


def test_estimate_by_script():
    assert estimate_tokens("a" * 400) == round(400 / LATIN_CHARS_PER_TOKEN)
    assert estimate_tokens("显" * 124) == round(124 / CJK_CHARS_PER_TOKEN)  # 100 tokens
    mixed = "a" * 40 + "显" * 124
    assert estimate_tokens(mixed) == 10 + 100
    # accented Latin counts as Latin, Cyrillic as "other" (2 chars/token)
    assert estimate_tokens("é" * 40) == 10
    assert estimate_tokens("ж" * 40) == 20
