"""A solved conversation becomes a draft knowledge-base case, so the knowledge base grows from real use.

The draft holds the facts the session established (model, hardware, framework, settings before the
fix, the error, the ranked causes, the fixes the user confirmed by saying it worked); a maintainer
reviews it before it joins kb/cases (`ask-oom kb ingest --session ID`).
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timezone
from typing import Any

from ..kb.schema import Case, CaseFix, CaseHardware, CaseModel, CaseSymptom
from ..tools.errors import InputError
from ..tools.frameworks import case_framework
from ..tools.units import GiB
from .diagnosis import Diagnosis
from .session import SessionState, SessionStore

_METHODS = {"full", "freeze", "lora", "qlora"}
MIN_CONTRIBUTOR_SCORE = 0.5


def draft_case_from_session(store: SessionStore, session_id: str, *, require_solved: bool = True) -> Case:
    """The draft Case for one session. Raises InputError when the session is unknown, has no diagnosis
    of a memory error, or (with require_solved) was not marked solved by the user."""
    session = store.get(session_id)
    if session is None:
        raise InputError(f"no session {session_id!r} (unknown or expired): list sessions with the store's list_ids()")
    state = session.state
    d = state.diagnosis
    if d is None:
        raise InputError(f"session {session_id!r} has no diagnosis yet: nothing to turn into a case")
    if d.status == "no_memory_error" or not d.root_causes:
        raise InputError(f"session {session_id!r} found no memory error: only diagnosed OOMs become cases")
    if require_solved and state.solved is not True:
        raise InputError(f"session {session_id!r} is not marked solved: the user must confirm the fix worked first")
    return _case(session_id, session.created_at, state, d)


def _case(session_id: str, created_at: float, state: SessionState, d: Diagnosis) -> Case:
    setup, report = d.setup, d.report
    solved = state.solved is True
    day = datetime.fromtimestamp(created_at, tz=timezone.utc).strftime("%Y%m%d")
    digest = hashlib.sha1(session_id.encode()).hexdigest()[:8]
    model_name = setup.model_name or report.model or (setup.model.name if setup.model else None) or "unknown model"
    short_model = re.sub(r"[^a-z0-9]+", "-", model_name.lower().rsplit("/", 1)[-1]).strip("-")[:30] or "model"
    # the primary cause and the strong contributors only: weak candidates would mislabel the case
    ranked = [c for c in d.root_causes if c.label != "not_oom"]
    labels = [c.label for i, c in enumerate(ranked) if i == 0 or c.score >= MIN_CONTRIBUTOR_SCORE][:3] or ["not_oom"]
    gpu = setup.gpu
    hardware = CaseHardware(
        gpu=gpu.name if gpu else None,
        count=setup.num_gpus if setup.provenance.get("num_gpus") or setup.num_gpus > 1 else None,
        memory_gib=round(gpu.memory_bytes / GiB, 2) if gpu and gpu.memory_bytes else None,
        host_ram_gib=round(setup.host_ram_bytes / GiB, 1) if setup.host_ram_bytes else None,
    )
    numbers = {k: round(v / GiB, 2) for k, v in (
        ("requested_gib", report.requested_bytes), ("total_gib", report.gpu_total_bytes), ("free_gib", report.gpu_free_bytes),
        ("allocated_gib", report.torch_allocated_bytes), ("reserved_unallocated_gib", report.torch_reserved_unallocated_bytes),
    ) if v}
    symptom = CaseSymptom(error_kind=report.kind, phase=report.phase if report.phase != "unknown" else None,
                          operation=report.operation, message=(report.message or "")[:300] or None, numbers=numbers)
    fixes = [CaseFix(key=f.key, from_value=f.from_value, to_value=f.to_value, action=f.action,
                     rationale=f.rationale or "planned by ask-oom", confirmed=solved) for f in d.fixes]
    user_notes = [fb.note for fb in state.feedback if fb.note]
    outcome = ("The user confirmed the fixed config ran" if solved else "Not confirmed by the user") + (
        f" (feedback: {user_notes[-1][:200]!r})" if user_notes else "") + "."
    if d.estimate is not None and d.estimate_after is not None:
        outcome += (f" Calculator: peak {d.estimate.peak_bytes / GiB:.2f} GiB before, {d.estimate_after.peak_bytes / GiB:.2f} GiB after"
                    + (f" of {d.estimate_after.budget_bytes / GiB:.2f} GiB usable." if d.estimate_after.budget_bytes else "."))
    return Case(
        id=f"session-{day}-{short_model}-{digest}",
        title=f"{model_name}: {d.summary.splitlines()[0][:120] if d.summary else labels[0].replace('_', ' ')}",
        source=f"ask-oom session {session_id} ({datetime.fromtimestamp(created_at, tz=timezone.utc):%Y-%m-%d})",
        language="zh" if state.language == "zh" else "en",
        model=CaseModel(name=model_name, size=_size(d), modality=_modality(d)),
        hardware=hardware,
        framework=case_framework(setup.framework) if setup.provenance.get("framework") or not report.framework
        else report.framework,
        launcher=report.launcher,
        versions=dict(report.versions),
        method=setup.method if setup.method in _METHODS else "other",
        settings=_settings_before(state, d),
        symptom=symptom,
        root_causes=labels,
        fixes=fixes,
        outcome=outcome,
        related_errors=[e.message[:200] for e in report.related_errors],
        tags=["from-session", "draft"] + (["solved"] if solved else []),
    )


def _settings_before(state: SessionState, d: Diagnosis) -> dict[str, Any]:
    """The settings a reviewer needs: every key the fixes changed (old values) plus the setup's key facts."""
    s = d.setup
    out: dict[str, Any] = {}
    for f in d.fixes:
        if f.key and f.from_value is not None:
            out[f.key] = f.from_value
    facts = {"per_device_train_batch_size": s.micro_batch, "gradient_accumulation_steps": s.grad_accum, "seq_len": s.seq_len,
             "zero_stage": s.zero_stage, "gradient_checkpointing": s.gradient_checkpointing, "precision": s.precision,
             "attn_implementation": s.attn_implementation}
    for k, v in facts.items():
        field = {"per_device_train_batch_size": "micro_batch", "gradient_accumulation_steps": "grad_accum"}.get(k, k)
        if s.provenance.get(field) and s.provenance[field].origin != "default":
            out.setdefault(k, v)
    if state.request.keep:
        out["constraints"] = list(state.request.keep)
    return out


def _size(d: Diagnosis) -> str | None:
    est = d.estimate
    if est is None or not est.n_params:
        return None
    return f"{est.n_params / 1e9:.1f}B"


def _modality(d: Diagnosis) -> str:
    arch = d.setup.model
    if arch is None:
        return "text"
    if arch.vision is not None and arch.is_moe:
        return "vision-language-moe"
    if arch.vision is not None:
        return "vision-language"
    return "moe" if arch.is_moe else "text"
