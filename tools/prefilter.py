"""Cheap word checks in front of costly regexes: a line that lacks every word one of a pattern's matches must contain
is not searched. The words are read off the pattern itself (its literal runs, through groups, alternations and
repeats of at least one), so a pattern edited is a prefilter edited; the search's answer never changes, only how
often the regex engine runs. A long log's lines are mostly progress and metrics, and Python's regex engine spends
about a microsecond per character on a case-insensitive alternation of words.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

try:   # Python 3.11+: the parser behind re.compile; sre_parse before it
    import re._constants as _sc
    import re._parser as _sp
except ImportError:  # pragma: no cover - Python 3.10
    import sre_constants as _sc   # type: ignore[no-redef]
    import sre_parse as _sp   # type: ignore[no-redef]

MIN_ASCII_WORD = 2     # a single ASCII letter or digit is in nearly every line: no filter
MAX_SPELLINGS = 4      # a run of literals read through small classes: at most this many spellings of it
MAX_WORDS = 256        # past this many the word checks of a line (once for all its patterns) cost what a regex does
_CASE_FLAG_GROUP = re.compile(r"\(\?[a-zA-Z]*-?[a-zA-Z]*i")   # an inline group that sets or clears IGNORECASE


def fold(text: str) -> str:
    """`text` as the case-insensitive regex engine compares it: case folded, and the two letters it also takes for an
    ASCII one ("İ" and "ı" for "i": the combining dot of İ's fold dropped, dotless ı made i)."""
    return text.casefold().replace("\u0307", "").replace("\u0131", "i")


def required_words(pattern: re.Pattern[str]) -> tuple[str, ...] | None:
    """Words one of which every match of `pattern` contains (folded when the pattern ignores case), or None when the
    pattern has no such set worth checking (a bare class like \\d, short or too many words)."""
    if _CASE_FLAG_GROUP.search(pattern.pattern):
        return None   # case turned on or off inside: its words would need both the line and its fold checked
    words = _required(_sp.parse(pattern.pattern, pattern.flags), bool(pattern.flags & re.IGNORECASE))
    return tuple(sorted(words)) if _useful(words) else None


def _useful(words: set[str] | None) -> bool:
    return bool(words) and len(words) <= MAX_WORDS and all(len(w) >= MIN_ASCII_WORD or not w.isascii() for w in words)


def _required(seq, icase: bool) -> set[str] | None:
    """A set of strings, one of which every match of the parsed sequence `seq` contains; the most selective found. A
    run of literals is read through small classes of literals ("[bB]-it" requires "b-it" or "B-it")."""
    best: set[str] | None = None
    run: list[str] = [""]   # the spellings of the current run of literals, one per choice its small classes allow

    def consider(words: set[str] | None) -> None:
        nonlocal best
        if _useful(words) and (best is None or _selectivity(words) > _selectivity(best)):
            best = words

    def flush() -> None:
        if run[0]:
            consider({fold(text) if icase else text for text in run})
        run[:] = [""]

    for op, av in seq:
        if op is _sc.LITERAL:
            run[:] = [text + chr(av) for text in run]
            continue
        chars = _literal_class(av) if op is _sc.IN else None
        if chars is not None and len(run) * len(chars) <= MAX_SPELLINGS:
            run[:] = [text + ch for text in run for ch in chars]
            continue
        flush()   # any other item ends a run of literals: what is around it need not be adjacent
        if op is _sc.SUBPATTERN:
            consider(_required(av[3], icase))
        elif op is _sc.BRANCH:
            parts = [_required(branch, icase) for branch in av[1]]
            if all(_useful(p) for p in parts):
                consider(set().union(*parts))
        elif op in (_sc.MAX_REPEAT, _sc.MIN_REPEAT) and av[0] >= 1:
            consider(_required(av[2], icase))
        # other classes, anchors, lookarounds, backreferences: nothing they need is certain, so nothing is required
    flush()
    return best


def _literal_class(items) -> list[str] | None:
    """The characters of a class made of a few literals only ([bB], [-_]), else None (a range, a category, a negation)."""
    if len(items) > MAX_SPELLINGS or any(op is not _sc.LITERAL for op, _ in items):
        return None
    return [chr(av) for _, av in items]


def _selectivity(words: set[str]) -> float:
    """Fewer and longer words filter more lines."""
    return min(map(len, words)) / len(words)


def trie_pattern(words: Iterable[str]) -> str:
    """One regex for many literals, with shared prefixes factored out (sre tries far fewer branches)."""
    root: dict = {}
    for w in words:
        node = root
        for ch in w:
            node = node.setdefault(ch, {})
        node[""] = {}

    def emit(node: dict) -> str:
        alts = [re.escape(ch) + emit(child) for ch, child in sorted(node.items()) if ch]
        if not alts:
            return ""
        body = alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"
        return f"(?:{body})?" if "" in node else body

    return emit(root)


WHOLE_TEXT_MIN = 4096   # characters from which search_text checks a text's words first (below, the regex is as quick)


@lru_cache(maxsize=256)
def _words_of(pattern: re.Pattern[str]) -> tuple[tuple[str, ...] | None, bool]:
    return required_words(pattern), bool(pattern.flags & re.IGNORECASE)


@lru_cache(maxsize=4)
def _folded(text: str) -> str:
    return fold(text)


def may_contain(pattern: re.Pattern[str], text: str) -> bool:
    """False only when `text` holds none of the words every match of `pattern` needs: a whole log searched for a cue
    it lacks costs the regex engine a pass over every character, a word check a pass of str.find per word."""
    words, icase = _words_of(pattern)
    if words is None or len(text) < WHOLE_TEXT_MIN:
        return True
    haystack = _folded(text) if icase else text
    return any(w in haystack for w in words)


def search_text(pattern: re.Pattern[str], text: str) -> re.Match[str] | None:
    """`pattern.search(text)` over a whole text, skipped when the text lacks the pattern's words (may_contain)."""
    return pattern.search(text) if may_contain(pattern, text) else None


class Prefilter:
    """The patterns a log's lines are searched with, each behind the words its matches must contain. `line(text)`
    finds the words of all the patterns in one pass over the line (a few microseconds, where a check per pattern and
    line cost a call each time) and gives the `Line` to search in: only the patterns whose words it holds run."""

    def __init__(self, *patterns: re.Pattern[str]) -> None:
        self.patterns = tuple(patterns)
        # patterns are known by id: a compiled pattern's hash is computed over its code at every call
        self._known = frozenset(map(id, patterns))
        self._unfiltered = frozenset(id(p) for p in patterns if required_words(p) is None)
        by_word: dict[tuple[str, bool], set[int]] = {}   # (word, in the fold) -> ids of the patterns requiring it
        for p in patterns:
            for w in required_words(p) or ():
                by_word.setdefault((w, bool(p.flags & re.IGNORECASE)), set()).add(id(p))
        self._folded = _WordFinder({w: ps for (w, in_fold), ps in by_word.items() if in_fold})
        self._plain = _WordFinder({w: ps for (w, in_fold), ps in by_word.items() if not in_fold})

    def line(self, text: str) -> Line:
        """`text` with the patterns whose words it holds (the case-insensitive ones' in its fold)."""
        possible = set(self._unfiltered)
        self._folded.add_patterns(fold(text), possible)
        self._plain.add_patterns(text, possible)
        return Line(text, possible, self._known)

    def search(self, pattern: re.Pattern[str], text: str) -> re.Match[str] | None:
        """`pattern.search(text)`, skipped when `text` lacks the pattern's words (one pattern on one line)."""
        return self.line(text).search(pattern)


class _WordFinder:
    """Which patterns' words a text holds, in one pass of the regex engine: at each position the longest word that
    starts there (a trie pattern inside a lookahead, so overlapping words are all seen); every shorter word starting
    there is a prefix of it, so each word stands for the patterns of all its prefixes among the words."""

    def __init__(self, by_word: dict[str, set[int]]) -> None:
        self._finder = re.compile("(?=(" + trie_pattern(by_word) + "))") if by_word else None
        self._ids = {w: frozenset().union(*(ps for v, ps in by_word.items() if w.startswith(v))) for w in by_word}

    def add_patterns(self, text: str, possible: set[int]) -> None:
        if self._finder is not None:
            for m in self._finder.finditer(text):
                possible |= self._ids[m.group(1)]


class Line:
    """One line and the patterns of its Prefilter that may match it: `search` runs only those."""

    __slots__ = ("text", "_possible", "_known")

    def __init__(self, text: str, possible: set[int], known: frozenset[int]) -> None:
        self.text = text
        self._possible = possible
        self._known = known

    @property
    def may_match(self) -> bool:
        """Whether any pattern of its prefilter may match the line: a line that holds none of their words is done."""
        return bool(self._possible)

    def search(self, pattern: re.Pattern[str]) -> re.Match[str] | None:
        if id(pattern) in self._possible:
            return pattern.search(self.text)
        if id(pattern) not in self._known:
            raise KeyError(f"pattern not in this prefilter: {pattern.pattern[:60]!r}")
        return None
