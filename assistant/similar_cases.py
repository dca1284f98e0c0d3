"""A retrieved case as the user sees it: why it is similar (shared facets, model family, phase, error, settings)
and the fixes it documents, with its source."""

from __future__ import annotations

from typing import Any

from ..tools.report import OOMReport
from ..tools.training_setup import TrainingSetup
from .diagnosis import SimilarCase

# Case settings keys that map onto a setup field, so "same cutoff_len=4096" compares like with like.
_SETTING_FIELDS = {"cutoff_len": "seq_len", "max_seq_length": "seq_len", "per_device_train_batch_size": "micro_batch",
                   "gradient_accumulation_steps": "grad_accum", "finetuning_type": "method"}


def similar_case(hit: Any, report: OOMReport, setup: TrainingSetup) -> SimilarCase:
    """One retrieval hit (`.case`, `.score`, optional `.matched_facets`) explained against this report and setup."""
    case = hit.case
    why = [f"same {f.replace('_', ' ')}" for f in getattr(hit, "matched_facets", [])]
    family = (setup.model.model_type if setup.model else None) or ""
    if family and family.split("_")[0] in case.model.name.lower().replace(".", "").replace("-", ""):
        why.append(f"same model family ({family})")
    if report.phase != "unknown" and case.symptom.phase == report.phase:
        why.append(f"same phase ({report.phase.replace('_', ' ')})")
    if case.symptom.error_kind == report.kind:
        why.append(f"same error ({report.kind})")
    for key, value in case.settings.items():
        mine = _setting_value(setup, key)
        if mine is not None and str(mine).lower() == str(value).lower():
            why.append(f"same {key}={value}")
    fixes = []
    for f in case.fixes[:3]:
        if f.key and f.to_value is not None:
            fixes.append(f"{f.key}: {f.from_value if f.from_value is not None else '…'} → {f.to_value}")
        elif f.action:
            fixes.append(f.action)
    return SimilarCase(id=case.id, title=case.title, source=case.source, score=float(hit.score),
                       primary_cause=case.primary_cause, why_similar=list(dict.fromkeys(why)),
                       fix_summary="; ".join(fixes))


def _setting_value(setup: TrainingSetup, key: str) -> Any:
    field = _SETTING_FIELDS.get(key)
    if field is None or field not in setup.provenance or setup.provenance[field].origin == "default":
        return None
    return getattr(setup, field)
