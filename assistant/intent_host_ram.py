"""set_host_ram: the host (CPU) memory a message says the machine has ('744 GB RAM', '内存512G').

Host RAM decides whether CPU offload (ZeRO-Offload) fits, so it is its own slot, never a GPU's memory
and never a what-if value."""

from __future__ import annotations

import re

from .intent_types import Intent

_AMOUNT = r"(?<![\d.])(?P<num>\d{1,5}(?:\.\d+)?)\s*(?P<unit>ti|t|tb|tib|gi|g|gb|gib|gigs?)(?![a-z])"
_RAM_WORDS = (r"(?:(?:host|system|cpu|machine|node|server)\s+(?:ram|memory|mem)|\bram\b|\bdram\b|主机内存|系统内存|机器内存|"
              r"cpu\s*内存|(?<!显)内存)")
_BEFORE = re.compile(_AMOUNT + r"\s*(?:of\s+)?(?:the\s+)?(?:ddr\d\s+)?(?:cpu\s+|host\s+|system\s+)?(?:的)?\s*" + _RAM_WORDS, re.I)
_AFTER = re.compile(_RAM_WORDS + r"[^\d\n]{0,12}?" + _AMOUNT, re.I)
# "how much CPU RAM does offloading need? I've got 128GB": a size the user says they have, in a message about host RAM
_HAVE = re.compile(r"(?:i've got|i have|we have|we've got|i got|there is|there's|it has|box has|machine has|server has|"
                   r"只有|有|是)\s*(?:only\s+|about\s+|around\s+|~)?" + _AMOUNT, re.I)
# "each gpu has 24gig ram": the GPU's memory, not the host's
_GPU_OWNED = re.compile(r"(?:gpus?|cards?|显卡|卡)\s*(?:has|have|with|:)?\s*(?:only\s+)?$|(?:each|per|every)\s+(?:gpu|card)\D{0,12}$", re.I)
# usage, not size: "free says 966Gi available", "used 300G"
_USAGE_AFTER = re.compile(r"^\s*(?:of\s+(?:it\s+)?)?(?:is\s+|are\s+)?(?:available|free|used|in use|left|remaining|空闲|可用|已用|剩余)", re.I)


def _value(m: re.Match) -> float:
    return float(m.group("num")) * (1024 if m.group("unit").startswith("t") else 1)


def host_ram_gib(text: str) -> tuple[float, tuple[int, int]] | None:
    """The host RAM a message states, in GiB, with the span of the words that state it (None: none stated)."""
    low = text.lower()
    for pattern in (_BEFORE, _AFTER):
        for m in pattern.finditer(low):
            amount = m.start("num")
            if _GPU_OWNED.search(low[max(0, amount - 24): amount]) or _USAGE_AFTER.search(low[m.end("unit"): m.end("unit") + 16]):
                continue
            if "显存" in low[max(0, amount - 6): amount] and pattern is _AFTER:
                continue
            value = _value(m)
            if value > 0:
                return value, m.span()
    if re.search(_RAM_WORDS, low, re.I):
        for m in _HAVE.finditer(low):
            amount = m.start("num")
            around = low[max(0, amount - 30): m.end() + 12]
            if re.search(r"显存|vram|gpu|card|卡", around) or _USAGE_AFTER.search(low[m.end(): m.end() + 16]):
                continue
            value = _value(m)
            if value >= 8:
                return value, (amount, m.end())
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
