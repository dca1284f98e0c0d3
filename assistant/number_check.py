"""Check that every number in a generated answer is one the tools produced (or the user wrote).

Numbers are compared with the precision they are written in ("16 GiB" matches 15.98 GiB, "0.7" matches
0.69), and sizes with a unit are compared in bytes, so "16384 MiB" matches 16.00 GiB; "GB" is read
both as GiB (how PyTorch prints) and as 10^9 bytes.
"""

from __future__ import annotations

import json
import re
from typing import Any, Iterable

from ..tools.units import GiB, KiB, MiB, TiB

_UNIT = {"kib": KiB, "kb": KiB, "mib": MiB, "mb": MiB, "m": MiB, "gib": GiB, "gb": GiB, "g": GiB, "tib": TiB, "tb": TiB}
_DECIMAL = {"kb": 1e3, "mb": 1e6, "gb": 1e9, "g": 1e9, "tb": 1e12}
# a number not glued to a word (A100, bf16, Qwen2.5-7B, ZeRO-3 are names, not quantities)
_NUMBER = re.compile(r"(?<![\w.])(?<![A-Za-z]-)(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"
                     r"(?:\s?(?P<unit>KiB|MiB|GiB|TiB|KB|MB|GB|TB|G|M)(?![A-Za-z]))?")
_LIST_MARKER = re.compile(r"^\s*\d{1,2}[.)]\s", re.M)
_CODE = re.compile(r"```.*?```|`[^`\n]*`", re.S)


class Quantity:
    __slots__ = ("value", "decimals", "unit", "text")

    def __init__(self, value: float, decimals: int, unit: str | None, text: str):
        self.value, self.decimals, self.unit, self.text = value, decimals, unit, text

    def bytes_candidates(self) -> list[float]:
        if not self.unit:
            return []
        u = self.unit.lower()
        out = [self.value * _UNIT[u]]
        if u in _DECIMAL:
            out.append(self.value * _DECIMAL[u])
        return out


def quantities(text: str, *, strip_code: bool = False) -> list[Quantity]:
    """The numbers in a text, with the unit written after them (if a size unit)."""
    if strip_code:
        text = _CODE.sub(" ", text)
    text = _LIST_MARKER.sub(" ", text)
    out = []
    for m in _NUMBER.finditer(text):
        if not m.group("unit") and re.match(r"[A-Za-z]", text[m.end():m.end() + 1]):
            continue  # "7B", "8x7B", "2k": part of a name or a shorthand, not a stated quantity
        raw = m.group("num").replace(",", "")
        try:
            value = float(raw)
        except ValueError:
            continue
        decimals = len(raw.split(".", 1)[1]) if "." in raw and "e" not in raw.lower() else 0
        out.append(Quantity(value, decimals, m.group("unit"), m.group(0)))
    return out


def _flatten(obj: Any) -> Iterable[str]:
    if isinstance(obj, str):
        yield obj
    elif obj is not None:
        yield json.dumps(obj, ensure_ascii=False, default=str)


def allowed_values(sources: Iterable[Any]) -> tuple[list[float], list[float]]:
    """(plain numbers, byte sizes) found in the sources: tool outputs, the diagnosis, the user's own words."""
    plain: list[float] = []
    sizes: list[float] = []
    for src in sources:
        for text in _flatten(src):
            for q in quantities(text):
                plain.append(q.value)
                sizes.extend(q.bytes_candidates())
                if q.value >= 1024 and not q.unit:
                    sizes.append(q.value)  # raw byte counts in JSON
            # GiB fields in JSON ("peak_gib": 16.0) are sizes too
            for m in re.finditer(r'"\w*_(gib|mib)"\s*:\s*(-?\d+(?:\.\d+)?)', text):
                sizes.append(float(m.group(2)) * (GiB if m.group(1) == "gib" else MiB))
            for m in re.finditer(r'"(\w*_gib)"\s*:\s*\{([^{}]*)\}', text):
                sizes.extend(float(v) * GiB for v in re.findall(r":\s*(-?\d+(?:\.\d+)?)", m.group(2)))
    return plain, sizes


def _close(a: float, b: float, tol: float) -> bool:
    return abs(a - b) <= tol


def unmatched_numbers(answer: str, sources: Iterable[Any]) -> list[str]:
    """The numbers in `answer` that match nothing in `sources` (empty: every number is grounded)."""
    plain, sizes = allowed_values(sources)
    bad: list[str] = []
    for q in quantities(answer, strip_code=False):
        step = 10.0 ** -q.decimals
        if q.unit:
            unit_bytes = _UNIT[q.unit.lower()]
            tol_bytes = max(0.5 * step * unit_bytes, 0.0)
            ok = any(_close(c, s, max(tol_bytes, 0.005 * s)) for c in q.bytes_candidates() for s in sizes)
        else:
            ok = any(_close(q.value, p, max(0.5 * step, 0.005 * abs(p)) + 1e-9) for p in plain)
        if not ok:
            bad.append(q.text.strip())
    return bad
