"""Sizes as OOM messages print them ("23.64 GiB", "704.00 KiB", "0 bytes", a unit cut short "22.25 Gi", a comma
decimal "39,39 GiB") turned into integer bytes. Binary units throughout: PyTorch, DeepSpeed and nvidia-smi print GiB
even when they write "GB" (see tools/units.py)."""

from __future__ import annotations

from ..units import UNIT_BYTES, decimal_number


# Regex fragments shared by the message patterns: bounded repetitions only (no backtracking blow-ups).
NUM = r"(\d{1,15}(?:[.,]\d{1,12})?)"   # "39.39", or a comma decimal "39,39" (see units.decimal_number)
# ... case-blind where a pattern is compiled with re.IGNORECASE ("78.88 mib" in a paste lower-cased as a whole), except a
# bare cut-off prefix ("22.25 Gi"), which must stay upper-case so "4 each" never reads as exabytes
UNIT = r"(bytes|byte|[KMGTPE]i?B|(?-i:[KMGTPE]i?)|B)"
SP = r"\s{0,4}"


def to_bytes(number: str, unit: str | None) -> int | None:
    """'23.64', 'GiB' → 25383074365; None when the unit is missing or unknown (a cut-off message)."""
    if unit is None:
        return None
    scale = UNIT_BYTES.get(unit.lower())
    if scale is None:
        return None
    try:
        return int(round(decimal_number(number) * scale))
    except (ValueError, OverflowError):
        return None
