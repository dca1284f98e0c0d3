"""The per-line prefilter: does a lower-cased line hold any word that a detector or fact extractor looks for?

Most lines of a long log (loss dicts, progress bars, random text) hold none; those only enter the context
windows. The word list is built from the extractors' own vocabularies, so it is a superset of every gate they
apply (tests check that reports are identical with and without the prefilter). One multi-pattern search per
line: Aho-Corasick (pyahocorasick, C) when installed, else one regex compiled as a trie.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from ..prefilter import trie_pattern
from .arguments import BANNER_WORDS, TRAINING_KEYS
from .facts import CPU_ADAM_WORDS, FRAMEWORK_TOKENS
from .messages import HOST_LIMIT_PHRASES
from .related import OFFLOADED_PHRASES
from .versions import VERSION_WORDS

# Substrings the detectors and gates test for (parser._may_report_memory, messages.detect, related.detect_related,
# the evaluation banner, FactCollector._feed and its extractors, attention and host-RAM facts). Where a gate is a
# short word ("oom", "sig") the words its detectors go on to require stand in for it: random text is full of
# three-letter words.
_GATE_WORDS = (
    "memory", "alloc", "oom when", "oom-kill", "killed", "workspace", "code", "sigkill", "sigbus", "sigfpe", "sigsegv",
    "sigabrt", "signal", "status", "pinned", "kwarg",
    "not implemented for", "flash", "watchdog", "nccl", "assert", "bus error", "floating point", "running evaluation",
    "running prediction", "batch size", "zero", "stage", "model", "loading", "mib", "nvidia", "gpu", "tesla", "amd",
    "size", "nproc", "cuda_visible", "include", "num_processes", "==", "attn", "attention", "sdpa", "vllm", "_name_or_path",
)


def _minimal(words: Iterable[str]) -> list[str]:
    """Drop words that contain another word of the set: the shorter one already fires."""
    ws = {w for w in words if w}
    return sorted(w for w in ws if not any(o != w and o in w for o in ws))


TRIGGER_WORDS: tuple[str, ...] = tuple(_minimal(
    [*_GATE_WORDS, *CPU_ADAM_WORDS, *TRAINING_KEYS, *BANNER_WORDS, *(w.decode() for w in VERSION_WORDS),
     *(w.decode() for w in FRAMEWORK_TOKENS), *HOST_LIMIT_PHRASES, *OFFLOADED_PHRASES]))


def _build() -> Callable[[str], bool]:
    try:
        import ahocorasick  # optional accelerator; the regex below gives the same answers
    except ImportError:
        ahocorasick = None
    if ahocorasick is not None and getattr(ahocorasick, "unicode", 0):
        automaton = ahocorasick.Automaton()
        for w in TRIGGER_WORDS:
            automaton.add_word(w, w)
        automaton.make_automaton()
        search = automaton.iter

        def has_trigger(low: str) -> bool:
            return next(search(low), None) is not None

        return has_trigger
    return regex_has_trigger


_TRIGGER_RE = re.compile(trie_pattern(TRIGGER_WORDS))


def regex_has_trigger(low: str) -> bool:
    """The pure-Python form of `has_trigger` (also the fallback when pyahocorasick is missing)."""
    return _TRIGGER_RE.search(low) is not None


has_trigger: Callable[[str], bool] = _build()
