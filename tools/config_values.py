"""Config values as people write them (YAML, JSON, shell flags, Python literals): a flag's truth, an integer, a
positive count. Shared by the config mapping and the model resolver, so both read a setting the same way."""

from __future__ import annotations

from typing import Any

MAX_COUNT = 1 << 32   # batches, steps, tokens, pixels: anything larger is a typo, not a setting


def truthy(v: Any) -> bool:
    """A flag as set: True, "true", "1", "yes", "on" (any case)."""
    if isinstance(v, str):
        return v.strip().lower() in ("true", "1", "yes", "on")
    return bool(v)


def int_any(v: Any) -> int | None:
    """An integer written as one (8, 8.0, "8"); booleans and anything else are None."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, str) and v.strip().isascii() and v.strip().isdigit():
        return int(v.strip())
    return None


def count(v: Any) -> int | None:
    """A positive count (batch, steps, tokens, ranks); anything else is 'not set'."""
    n = int_any(v)
    return n if n is not None and 1 <= n <= MAX_COUNT else None
