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
    (re.compile(r"bitsandbytes|\bload_in_(?:4|8)bit\b", re.I), ("bitsandbytes", "load_in_4bit", "load_in_8bit")),
    (re.compile(r"\d[bB]-(?:chat|it)"), ("B-", "b-")),          # a run read through a small class of literals
    (re.compile(r"\d[bB]-(?:chat|it)", re.I), ("b-",)),         # ...whose spellings fold together
    (re.compile(r"x[a-z]yz|[^q]r"), None),                      # a range or a negation ends the run
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
    yield from log_cues._LINE.patterns
    yield from described_oom._LINE.patterns


def _corpus_lines():
    """Every line of the labelled pastes, the fixtures and the examples: what the prefilters must never hide."""
    roots = [REPO / "evals" / "data", REPO / "tests" / "fixtures", REPO / "ui" / "examples", REPO / "kb" / "cases"]
    for root in roots:
        for path in sorted(root.rglob("*")):
            if path.suffix in (".yaml", ".log", ".txt", ".json", ".md", ".sh", ".py") and path.is_file():
                yield from path.read_text(encoding="utf-8", errors="replace").splitlines()


def test_every_hot_pattern_is_filtered_and_no_corpus_line_it_matches_is_skipped():
    """Each pattern log_cues searches every line with has words (else it is not worth a filter there), and on every
    line of the labelled corpus, fixtures and examples the filtered search finds what the pattern finds."""
    assert all(required_words(p) is not None for p in log_cues._LINE.patterns)
    patterns = [p for p in _hot_patterns() if required_words(p) is not None]
    filters = Prefilter(*patterns)
    checked = 0
    for line in _corpus_lines():
        line = line[:2000]
        seen = filters.line(line)
        for pattern in patterns:
            found = pattern.search(line)
            if found is not None:
                checked += 1
                assert seen.search(pattern) is not None, (pattern.pattern[:60], line[:120])
    assert checked > 1000


def test_a_line_searches_what_its_patterns_find_on_random_text():
    """Case-sensitive and case-insensitive patterns side by side, on random lines built from their words: the filtered
    search finds exactly what each pattern finds."""
    import random

    patterns = [re.compile(r"bitsandbytes|\bload_in_(?:4|8)bit\b", re.I), re.compile(r"Tried to allocate \d+"),
                re.compile(r"显存不足|OOM", re.I), re.compile(r"(?:foo|barbaz)\s+qux")]
    filters = Prefilter(*patterns)
    rng = random.Random(3)
    pieces = ["bitsandbytes", "LOAD_IN_4BIT", "load_in_8bit ", "Tried to allocate 5", "tried to allocate 5", "显存不足",
              "oom", "foo qux", "barbaz  QUX", "İ", "x", " ", "\t", "7"]
    for _ in range(3000):
        line = "".join(rng.choices(pieces, k=rng.randint(0, 6)))
        seen = filters.line(line)
        for pattern in patterns:
            assert (seen.search(pattern) is None) == (pattern.search(line) is None), (pattern.pattern, line)


def test_a_whole_text_search_finds_what_the_pattern_finds_and_skips_a_text_without_its_words():
    """search_text over a long text: the same match as the pattern's own search wherever the pattern matches, on
    random texts built from the patterns' words and a small class's spellings; a text lacking them is not searched."""
    import random

    from ask_oom.tools.prefilter import WHOLE_TEXT_MIN, may_contain, search_text

    patterns = [re.compile(r"bitsandbytes|\bload_in_(?:4|8)bit\b", re.I), re.compile(r"\d[bB]-(?:chat|it)"),
                re.compile(r"显存不足|OOM", re.I), re.compile(r"(?:foo|barbaz)\s+qux")]
    rng = random.Random(5)
    pieces = ["bitsandbytes", "LOAD_IN_4BIT", "load_in_8bit ", "7B-chat", "7b-it", "7β-it", "显存不足", "oom", "foo qux",
              "barbaz  QUX", "İ", "x", " ", "\n", "7"]
    filler = "{'loss': 1.23, 'epoch': 0.5}\n" * (WHOLE_TEXT_MIN // 20)
    for _ in range(300):
        text = filler + "".join(rng.choices(pieces, k=rng.randint(0, 6))) + filler
        for pattern in patterns:
            found, expected = search_text(pattern, text), pattern.search(text)
            assert (found and found.span()) == (expected and expected.span()), (pattern.pattern, text[len(filler):-len(filler)])
    assert not may_contain(patterns[0], filler) and may_contain(patterns[0], filler + "BitsAndBytes")


def test_a_pattern_the_prefilter_was_not_given_is_an_error_not_a_miss():
    filters = Prefilter(re.compile("abc"))
    with pytest.raises(KeyError):
        filters.line("xyz abc").search(re.compile("xyz"))
