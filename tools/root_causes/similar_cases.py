"""Votes of the retrieved similar cases: their labels as weak evidence, decaying with rank."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..labels import Label
from .signals import Signal, support
from .weights import THRESHOLDS, Thresholds

_MECHANISM_FACETS = {"phase", "modality"}  # kb.facets facets that tell how memory was spent


def similar_case_votes(hits: Iterable[Any], th: Thresholds = THRESHOLDS) -> list[Signal]:
    """Labels of the retrieved cases: weak evidence, decaying with rank (value 1 / rank, the first rank 1).

    A case's first label fires `similar_case_primary`, its next ones `similar_case_secondary` at a fraction of the
    value. A label that is not in the vocabulary raises (KB cases are validated when they load)."""
    out: list[Signal] = []
    for rank, hit in enumerate(list(hits)[:int(th["similar_cases_counted"])]):
        case = getattr(hit, "case", hit)
        labels = list(getattr(case, "root_causes", []) or [])
        cid = getattr(case, "id", "?")
        value = 1 / (rank + 1)
        shared = set(getattr(hit, "matched_facets", None) or [])
        if hasattr(hit, "matched_facets") and not shared & _MECHANISM_FACETS:
            # Sharing only the error kind, framework or method makes a case a neighbour in wording, not in mechanism.
            value *= th["wording_only_case_scale"]
        for i, label in enumerate(labels[:int(th["similar_case_labels_counted"])]):
            reason = f"similar documented case {cid} had {label.replace('_', ' ')}"
            if i == 0:
                out.append(support(Label(label), "similar_case_primary", reason, value))
            else:
                out.append(support(Label(label), "similar_case_secondary", reason, value / th["secondary_label_divisor"]))
    return out
