"""Byte sizes as logs print them: parse "23.64 GiB" / "704.00 KiB" / "62.5GB" into integer bytes, format back."""

from __future__ import annotations

import re

KiB = 1024
MiB = 1024**2
GiB = 1024**3
TiB = 1024**4

# PyTorch, DeepSpeed and nvidia-smi all print binary units even when they write "GB"/"MB"
# (DeepSpeed's see_memory_usage divides by 1024**3; nvidia-smi's MiB are 2**20), so "GB" is read as GiB. A unit cut
# short ("22.25 Gi") is the binary one. Petabytes and exabytes appear only in sizes computed wrong (an overflowed or
# negative size read as unsigned), which must still be read to be told apart.
UNIT_BYTES = {"b": 1, "byte": 1, "bytes": 1,
              **{f"{prefix}{suffix}": 1024 ** power for power, prefix in enumerate("kmgtpe", start=1)
                 for suffix in ("", "i", "b", "ib")}}

_SIZE_RE = re.compile(r"^\s*([0-9]{1,15}(?:[.,][0-9]{1,12})?)\s{0,3}([A-Za-z]{1,5})\s*$")
_THOUSANDS = re.compile(r"[0-9]{1,3}(?:,[0-9]{3})+")


def decimal_number(number: str) -> float:
    """A number as logs and pastes write it: "39.39", a comma decimal "39,39" (a localised print or paste), or
    thousands separators "1,024" (exactly three digits after each comma; PyTorch prints two decimals, so a
    localised size never has three). ValueError when it is not a number."""
    if "," in number:
        number = number.replace(",", "") if _THOUSANDS.fullmatch(number) else number.replace(",", ".", 1)
    return float(number)


# a "k" said with a count of tokens: context lengths are powers of two ("8k" is 8192, "32k" 32768)
TOKENS_PER_K = 1024


def count_said(number: str, k: str | bool | None = None) -> int:
    """A count as people write it beside a knob or a token count: "8192", "21,000", "1.5k" (a "k" is TOKENS_PER_K)."""
    return int(decimal_number(number) * (TOKENS_PER_K if k else 1))


def parse_size(text: str) -> int | None:
    """Bytes for a size such as '2.00 MiB' or '79.18GiB'; None if it is not a size."""
    m = _SIZE_RE.match(text)
    if not m:
        return None
    unit = UNIT_BYTES.get(m.group(2).lower())
    if unit is None:
        return None
    return int(round(decimal_number(m.group(1)) * unit))


def gib(n_bytes: int | float) -> float:
    """Bytes → GiB as a float (for display and comparisons with printed figures)."""
    return n_bytes / GiB


def format_bytes(n_bytes: int | float | None, digits: int = 2) -> str:
    """Human-readable binary size: 1.50 GiB, 704.00 KiB. None → 'unknown'."""
    if n_bytes is None:
        return "unknown"
    n = float(n_bytes)
    sign = "-" if n < 0 else ""
    n = abs(n)
    for unit, size in (("TiB", TiB), ("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if n >= size:
            return f"{sign}{n / size:.{digits}f} {unit}"
    return f"{sign}{int(n)} B"
