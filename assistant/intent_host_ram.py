"""set_host_ram: the host (CPU) memory a message says the machine has ('744 GB RAM', '内存512G').

Host RAM decides whether CPU offload (ZeRO-Offload) fits, so it is its own slot, never a GPU's memory
and never a what-if value."""

from __future__ import annotations

import re

from .intent_types import Intent

_AMOUNT = r"(?P<num>\d{1,5}(?:\.\d+)?)\s*(?P<unit>t|tb|tib|g|gb|gib)(?![a-z])"
_RAM_WORDS = r"(?:(?:host|system|cpu|machine|node)\s+(?:ram|memory|mem)|\bram\b|\bdram\b|主机内存|系统内存|机器内存|cpu\s*内存|内存)"
_BEFORE = re.compile(_AMOUNT + r"\s*(?:of\s+)?(?:the\s+)?(?:ddr\d\s+)?(?:的)?\s*" + _RAM_WORDS, re.I)
_AFTER = re.compile(_RAM_WORDS + r"[^\d\n]{0,12}?" + _AMOUNT, re.I)


def host_ram_gib(text: str) -> tuple[float, tuple[int, int]] | None:
    """The host RAM a message states, in GiB, with the span of the words that state it (None: none stated)."""
    low = text.lower()
    for pattern in (_BEFORE, _AFTER):
        m = pattern.search(low)
        if m:
            value = float(m.group("num")) * (1024 if m.group("unit").startswith("t") else 1)
            if value > 0:
                return value, m.span()
    return None


def host_ram_intent(text: str) -> Intent | None:
    """set_host_ram from 'the machine has 744 GB RAM' / '机器内存744G' (the slot: host_ram_gib)."""
    found = host_ram_gib(text)
    if found is None:
        return None
    value, (start, end) = found
    return Intent(name="set_host_ram", slots={"host_ram_gib": value}, evidence=text[start:end])


def without_host_ram(text: str) -> str:
    """The message with its host-RAM statement blanked out, so that no other slot reader (what-ifs, GPU memory)
    reads '744 GB RAM' as a value of its own: host RAM wins."""
    found = host_ram_gib(text)
    if found is None:
        return text
    start, end = found[1]
    return text[:start] + " " * (end - start) + text[end:]
