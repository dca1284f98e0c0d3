"""The documented fixes of retrieved cases as typed config changes: hints for the planner, which decides and sizes
them, or, when nothing can be sized, the top case's own fixes attributed to it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .configs.schema import ConfigChange

HINT_CASES = 3  # the top cases lend their fixes to the planner


def planner_hints(hits: Sequence[Any], limit: int = HINT_CASES) -> list[ConfigChange]:
    """The top cases' documented fixes (hits: objects with `.case`) as hints for the planner."""
    out: list[ConfigChange] = []
    for hit in hits[:limit]:
        case = hit.case
        for f in case.fixes:
            if not f.key and not f.action:
                continue
            out.append(_as_change(f, case.id, f.rationale, action=None if f.key else f.action))
    return out


def fixes_from_top_case(hits: Sequence[Any]) -> list[ConfigChange]:
    """Without a model to size them, the top case's confirmed-or-documented changes, attributed to it."""
    if not hits:
        return []
    case = hits[0].case
    out = []
    for f in case.fixes[:4]:
        if f.key is None and f.action is None:
            continue
        out.append(_as_change(f, case.id, f"{f.rationale} (from case {case.id})", action=f.action if f.key is None else None))
    return out


def _as_change(fix: Any, case_id: str, rationale: str, *, action: str | None) -> ConfigChange:
    """One documented fix as a typed change, confirmed by its case when the source says it worked."""
    return ConfigChange(key=fix.key, from_value=fix.from_value, to_value=fix.to_value, action=action,
                        rationale=rationale, confirmed_by=[case_id] if fix.confirmed else [])
