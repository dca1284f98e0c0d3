"""tools/prefilter.py: the words read off a pattern are a necessary condition of its matches, so a line that lacks
them is skipped without changing any answer."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ask_oom.tools import described_oom, log_cues
from ask_oom.tools.prefilter import Prefilter, fold, required_words

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("pattern, words", [
    (re.compile(r"bitsandbytes|\bload_in_(?:4|8)bit\b", re.I), ("bitsandbytes", "load_in_")),
    (re.compile(r"(?:foo|barbaz)\s+qux"), ("qux",)),            # the most selective run: one word over two
    (re.compile(r"abc(?:def)?"), ("abc",)),                      # an optional group requires nothing
    (re.compile(r"x{0,3}yyy|zzz"), ("yyy", "zzz")),
    (re.compile(r"显存不足|OOM", re.I), ("oom", "显存不足")),
    (re.compile(r"\d+b"), None),                                 # a class and one letter: nothing worth checking
    (re.compile(r"(?i:abc)DEF"), None),                          # case switched inside: not filtered
])
def test_the_words_a_pattern_requires(pattern, words):
    assert required_words(pattern) == words


def test_fold_is_how_the_case_insensitive_engine_compares():
    """"İ" and "ı" match "i" case-insensitively, "ſ" matches "s", the Kelvin sign "k": the fold keeps the words."""
    pattern = re.compile(r"image|stuff|kill", re.I)
    for text in ("İMAGE", "ımage", "ſtuff", "\u212aill"):
        assert pattern.search(text) and any(w in fold(text) for w in required_words(pattern)), text


def _hot_patterns():
    yield from log_cues._LINE._words
    yield from described_oom._LINE._words


def _corpus_lines():
    """Every line of the labelled pastes, the fixtures and the examples: what the prefilters must never hide."""
    roots = [REPO / "evals" / "data", REPO / "tests" / "fixtures", REPO / "ui" / "examples", REPO / "kb" / "cases"]
    for root in roots:
        for path in sorted(root.rglob("*")):
            if path.suffix in (".yaml", ".log", ".txt", ".json", ".md", ".sh", ".py") and path.is_file():
                yield from path.read_text(encoding="utf-8", errors="replace").splitlines()


def test_every_hot_pattern_is_filtered_and_no_corpus_line_it_matches_is_skipped():
    """Each pattern the log's lines are searched with has words (else it is not worth a filter there), and on every
    line of the labelled corpus, fixtures and examples the filtered search finds what the pattern finds."""
    patterns = list(_hot_patterns())
    assert all(required_words(p) is not None for p in patterns)
    filters = Prefilter(*patterns)
    checked = 0
    for line in _corpus_lines():
        line = line[:2000]
        folded = fold(line)
        for pattern in patterns:
            found = pattern.search(line)
            if found is not None:
                checked += 1
                assert filters.search(pattern, line, folded) is not None, (pattern.pattern[:60], line[:120])
    assert checked > 1000
