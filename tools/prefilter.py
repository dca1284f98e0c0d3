"""Cheap word checks in front of costly regexes: a line that lacks every word one of a pattern's matches must contain
is not searched. The words are read off the pattern itself (its literal runs, through groups, alternations and
repeats of at least one), so a pattern edited is a prefilter edited; the search's answer never changes, only how
often the regex engine runs. A long log's lines are mostly progress and metrics, and Python's regex engine spends
about a microsecond per character on a case-insensitive alternation of words.
"""

from __future__ import annotations

import re

try:   # Python 3.11+: the parser behind re.compile; sre_parse before it
    import re._constants as _sc
    import re._parser as _sp
except ImportError:  # pragma: no cover - Python 3.10
    import sre_constants as _sc   # type: ignore[no-redef]
    import sre_parse as _sp   # type: ignore[no-redef]

MIN_ASCII_WORD = 3     # shorter ASCII words ("b", "7b") are in nearly every line: no filter
MAX_WORDS = 32         # past this many the word checks cost what the regex does
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
    """A set of strings, one of which every match of the parsed sequence `seq` contains; the most selective found."""
    best: set[str] | None = None
    run: list[str] = []

    def consider(words: set[str] | None) -> None:
        nonlocal best
        if _useful(words) and (best is None or _selectivity(words) > _selectivity(best)):
            best = words

    def flush() -> None:
        if run:
            text = "".join(run)
            consider({fold(text) if icase else text})
            run.clear()

    for op, av in seq:
        if op is _sc.LITERAL:
            run.append(chr(av))
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
        # classes, anchors, lookarounds, backreferences: nothing they need is certain, so nothing is required
    flush()
    return best


def _selectivity(words: set[str]) -> float:
    """Fewer and longer words filter more lines."""
    return min(map(len, words)) / len(words)


class Prefilter:
    """`search(pattern, line, folded)` for the patterns given: None at once when the line lacks the pattern's words,
    else the pattern's own search. `folded` is fold(line), computed once per line by the caller."""

    def __init__(self, *patterns: re.Pattern[str]) -> None:
        # per pattern its words, and whether they are folded (then the fold is checked, else the line itself)
        self._words = {p: (required_words(p), bool(p.flags & re.IGNORECASE)) for p in patterns}

    def search(self, pattern: re.Pattern[str], line: str, folded: str) -> re.Match[str] | None:
        words, in_fold = self._words[pattern]
        if words is not None:
            haystack = folded if in_fold else line
            if not any(w in haystack for w in words):
                return None
        return pattern.search(line)
