"""Votes of the retrieved similar cases: their labels as weak evidence, decaying with rank."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .scores import Scores

_MECHANISM_FACETS = {"phase", "modality"}  # kb.facets facets that tell how memory was spent


def similar_case_votes(hits: Iterable[Any], s: Scores) -> None:
    """Labels of the retrieved cases: weak evidence, decaying with rank."""
    for rank, hit in enumerate(list(hits)[:5]):
        case = getattr(hit, "case", hit)
        labels = list(getattr(case, "root_causes", []) or [])
        cid = getattr(case, "id", "?")
        weight = 1.2 / (rank + 1)
        shared = set(getattr(hit, "matched_facets", None) or [])
        if hasattr(hit, "matched_facets") and not shared & _MECHANISM_FACETS:
            # Sharing only the error kind, framework or method makes a case a neighbour in wording, not in mechanism.
            weight /= 2
        for i, label in enumerate(labels[:3]):
            s.add(label, weight if i == 0 else weight / 3, f"similar documented case {cid} had {label.replace('_', ' ')}")
