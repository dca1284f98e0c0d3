"""The deterministic agent: compose the tools into one grounded Diagnosis (no LLM, no network).

parse the log → load the config → assemble the setup (with provenance) → estimate memory → retrieve similar
cases → rank root causes → plan fixes and rewrite the config (the cases' fixes as hints) → verify with the
calculator. Every number comes from a tool; what the agent lacks it asks for instead of guessing.
"""

from __future__ import annotations

import os
from typing import Any

from ..tools.configs.schema import ConfigChange, ConfigDocument, Constraints, FixPlan
from ..tools.errors import InputError
from ..tools.labels import ROOT_CAUSES, RootCause
from ..tools.memory.schema import MemoryEstimate
from ..tools.report import Evidence, OOMReport
from ..tools.training_setup import TrainingSetup
from ..tools.units import format_bytes
from .diagnosis import DiagnoseRequest, Diagnosis, Question, SimilarCase

SIMILAR_K = 5          # cases retrieved; the top ones also lend their fixes to the planner as hints
HINT_CASES = 3
PLAN_MIN_SCORE = 0.2   # causes below this score are listed as alternatives but get no fix of their own
RETRIEVAL_MODE = os.environ.get("ASK_OOM_RETRIEVAL_MODE", "fast")  # fast: no torch / embeddings on the CLI path


def diagnose(request: DiagnoseRequest, *, index: Any = None, settings: Any = None, mode: str | None = None) -> Diagnosis:
    """One diagnosis for one request. Bad input raises InputError (the CLI's exit 2); nothing else is raised
    for a tool that cannot help (retrieval, planning): the answer says what is missing instead."""
    from ..tools.log_cues import log_cues
    from ..tools.log_parser import parse_log
    from ..tools.memory_trend import memory_trend
    from ..tools.root_causes import rank_root_causes
    from ..tools.setup_assembly import assemble_setup

    notes: list[str] = []
    cues = log_cues(request.log_text, request.config_text)
    report, described = _read_report(request, parse_log, notes, cues)
    doc = _load_config(request)
    report = _phase_from_config(report, doc)
    report = _phase_from_cues(report, cues)
    setup = assemble_setup(report, doc, request)
    estimate = _estimate(setup, notes, report)
    hits = _retrieve(report, setup, index, settings, mode, notes)
    trend = memory_trend(request.log_text) if report.is_memory_error else None
    said = described if described is not None else _said_growth(report, request.log_text)
    if trend is not None and said is not None and said.growth_text and not trend.growing:
        trend = trend.model_copy(update={"growing": True, "said": said.growth_text})
    causes = rank_root_causes(report, setup, estimate, hits, trend=trend, cues=cues)
    refined = _refine_attention(setup, causes)
    if refined is not None:  # the evidence says eager attention ran: size it, then rank again with that estimate
        setup = refined
        estimate = _estimate(setup, notes, report)
        causes = rank_root_causes(report, setup, estimate, hits, trend=trend, cues=cues)
    similar = [_similar_case(h, report, setup) for h in hits]
    questions = _questions(report, setup, doc)
    assumptions = _assumptions(setup)

    if not report.is_memory_error:
        return Diagnosis(status="no_memory_error", summary=_summary_no_oom(report, causes), report=report, setup=setup,
                         estimate=estimate, root_causes=causes, similar_cases=similar, assumptions=assumptions,
                         questions=[], notes=notes)

    plan = _plan(setup, doc, causes, request, settings, hits, notes, _observed_peak(report))
    fixes = plan.changes if plan is not None else _fixes_from_cases(hits)
    if plan is None and fixes:
        notes.append("fixes below come from similar documented cases and are not verified by the calculator: "
                     "answer the questions so ask-oom can size them")
    if plan is not None:
        notes.extend(n for n in plan.notes if n not in notes)
    estimate_after = plan.estimate_after if plan is not None else None
    status = "diagnosed" if estimate is not None else "needs_input"
    d = Diagnosis(
        status=status, report=report, setup=setup, estimate=estimate, root_causes=causes, similar_cases=similar,
        fixes=fixes, fixed_config=plan.fixed_config if plan is not None else None,
        fixed_config_format=doc.format if doc is not None and plan is not None and plan.fixed_config else None,
        fixed_deepspeed=plan.fixed_deepspeed if plan is not None else None, diff=plan.diff if plan is not None else "",
        estimate_after=estimate_after, fits_after=plan.fits if plan is not None else None,
        assumptions=assumptions, questions=questions, notes=notes,
    )
    return d.model_copy(update={"summary": _summary(d)})


# ---------------------------------------------------------------------------------------------------
# Stages


def _read_report(request: DiagnoseRequest, parse_log, notes: list[str], cues=None):
    """The parsed log; when it holds no error at all but the text describes one in words, that description."""
    report = parse_log(request.log_text)
    if report.kind == "not_oom" and cues is not None and cues.kv_cache is not None:
        # vLLM refusing to start because the KV cache does not fit what is left after the weights is a GPU memory
        # budget failure, printed as a ValueError rather than an out-of-memory error.
        report = report.model_copy(update={
            "kind": "cuda_oom", "framework": report.framework or "vllm",
            "phase": report.phase if report.phase != "unknown" else "generation",
            "evidence": [*report.evidence, Evidence(line=cues.kv_cache.line, text=cues.kv_cache.text, fact="kind")]})
        notes.append(f"vLLM could not fit its KV cache (line {cues.kv_cache.line}): a GPU memory budget failure")
    if request.log_truncated and not report.truncated:
        report = report.model_copy(update={"truncated": True})
    if report.truncated:
        notes.append("the log was larger than the input limit: only its end was read")
    described = _described(report, request.log_text)
    if described is not None:
        report = report.model_copy(update={
            "kind": described.kind, "phase": described.phase or report.phase, "model": report.model or described.model,
            "evidence": [*report.evidence, Evidence(line=described.line, text=described.text, fact="described_oom")]})
        notes.append(f"no error message in the text; diagnosing the memory error it describes (line {described.line})")
    return report, described


def _load_config(request: DiagnoseRequest) -> ConfigDocument | None:
    if not request.config_text or not request.config_text.strip():
        return None
    from ..tools.configs import load_config

    return load_config(request.config_text, request.config_name or "config", request.extra_configs or None)


def _estimate(setup: TrainingSetup, notes: list[str], report: OOMReport | None = None) -> MemoryEstimate | None:
    """The calculator's estimate for the step that failed: an evaluation/inference step is sized without training states."""
    if setup.model is None:
        return None
    from ..tools.memory import estimate_memory

    inference = report is not None and (report.phase in ("evaluation", "generation") or report.framework == "vllm")
    try:
        return estimate_memory(setup, mode="eval" if inference else "train")
    except InputError as exc:
        notes.append(f"memory estimate unavailable: {exc}")
        return None


def _retrieve(report: OOMReport, setup: TrainingSetup, index: Any, settings: Any, mode: str | None,
              notes: list[str]) -> list[Any]:
    try:
        from ..kb.query import build_query
        if index is None:
            from ..kb.index import CaseIndex

            index = CaseIndex.load_or_build(settings)
        query = build_query(report, setup)
        return list(index.search(query, k=SIMILAR_K, mode=mode or RETRIEVAL_MODE))
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - retrieval is an aid: the diagnosis stands without it
        if _debug():
            raise
        notes.append(f"similar cases unavailable ({type(exc).__name__}: {exc})")
        return []


def _phase_from_config(report: OOMReport, doc: ConfigDocument | None) -> OOMReport:
    """A run whose config only evaluates or predicts failed in evaluation, even when the log shows no frame of it."""
    if doc is None or not report.is_memory_error or report.phase != "unknown":
        return report
    st = doc.settings
    truthy = lambda k: str(st.get(k, "")).lower() in ("true", "1")  # noqa: E731
    if truthy("do_train") or not (truthy("do_eval") or truthy("do_predict")):
        return report
    phase = "generation" if truthy("predict_with_generate") else "evaluation"
    keys = [k for k in ("do_eval", "do_predict", "predict_with_generate") if truthy(k)]
    ev = Evidence(line=0, text=f"{doc.name}: {', '.join(keys)} without do_train", fact="phase")
    return report.model_copy(update={"phase": phase, "evidence": [*report.evidence, ev]})


# A phase cue counts only near the error: lines far before it are set-up chatter (loading, earlier steps); a
# sentence right after it is the user's explanation.
CUE_LINES_BEFORE, CUE_LINES_AFTER = 40, 10


def _phase_from_cues(report: OOMReport, cues) -> OOMReport:
    """The phase a function name or sentence near the error names, when the traceback's frames named none."""
    if not report.is_memory_error or report.phase != "unknown" or cues.phase is None or cues.phase_cue is None:
        return report
    at = next((e.line for e in report.evidence if e.fact in ("kind", "described_oom") and e.line), None)
    if at is not None and not (at - CUE_LINES_BEFORE <= cues.phase_cue.line <= at + CUE_LINES_AFTER):
        return report
    ev = Evidence(line=cues.phase_cue.line, text=cues.phase_cue.text, fact="phase")
    return report.model_copy(update={"phase": cues.phase, "evidence": [*report.evidence, ev]})


def _said_growth(report: OOMReport, text: str):
    """For a pasted error, the user's own words that memory grew ("keeps increasing every step"), if any."""
    if not report.is_memory_error:
        return None
    from ..tools.described_oom import described_oom

    return described_oom(text)


def _described(report: OOMReport, text: str):
    """A memory error stated in words, used only when the parser found no error and no other signal at all."""
    if report.kind != "not_oom" or report.exit_signal or report.related_errors:
        return None
    from ..tools.described_oom import described_oom

    return described_oom(text)


def _refine_attention(setup: TrainingSetup, causes: list[RootCause]) -> TrainingSetup | None:
    """When the ranking found eager attention from the log's own evidence (a request equal to the score matrix,
    a flash-attn warning) but the setup only assumed sdpa, record eager as a derived fact so the calculator sizes it."""
    prov = setup.provenance.get("attn_implementation")
    if setup.attn_implementation == "eager" or (prov is not None and prov.origin not in ("default",)):
        return None
    top = [c for c in causes[:2] if c.label == "eager_attention"]
    if not top or top[0].score < 0.6:
        return None
    reason = "; ".join(top[0].why[:2])
    return setup.with_fact("attn_implementation", "eager", "derived", f"from the log: {reason}"[:300])


def _observed_peak(report: OOMReport) -> int | None:
    """What the failing run really needed at the OOM: PyTorch's allocation plus the request that failed."""
    if report.kind not in ("cuda_oom", "hip_oom") or not report.requested_bytes or report.torch_allocated_bytes is None:
        return None
    return report.torch_allocated_bytes + report.requested_bytes


def _plan(setup: TrainingSetup, doc: ConfigDocument | None, causes: list[RootCause], request: DiagnoseRequest,
          settings: Any, hits: list[Any], notes: list[str], observed_peak: int | None = None) -> FixPlan | None:
    if setup.model is None:
        return None
    from ..tools.configs import plan_fixes

    keep = set(request.keep)
    constraints = Constraints(
        keep_method="full" in keep, keep_seq_len="seq" in keep, keep_batch="batch" in keep,
        no_deepspeed="no-deepspeed" in keep, num_gpus=request.num_gpus,
        margin=getattr(settings, "gpu_margin", None) or Constraints().margin,
        observed_peak_bytes=observed_peak,
    )
    # Hunches (weak causes, e.g. only a similar case's label) are shown to the user but do not drive the plan.
    planned = [c for i, c in enumerate(causes) if i == 0 or c.score >= PLAN_MIN_SCORE]
    try:
        return plan_fixes(setup, doc, planned, constraints, hints=_hints(hits))
    except InputError as exc:
        notes.append(f"no fix plan: {exc}")
        return None
    except Exception as exc:  # noqa: BLE001 - the diagnosis stands without a plan; say why
        if _debug():
            raise
        notes.append(f"fix planner failed ({type(exc).__name__}: {exc})")
        return None


def _hints(hits: list[Any]) -> list[ConfigChange]:
    """The top cases' documented fixes as typed hints for the planner (it decides and sizes them)."""
    out: list[ConfigChange] = []
    for hit in hits[:HINT_CASES]:
        case = hit.case
        for f in case.fixes:
            if not f.key and not f.action:
                continue
            out.append(ConfigChange(key=f.key, from_value=f.from_value, to_value=f.to_value,
                                    action=None if f.key else f.action, rationale=f.rationale,
                                    confirmed_by=[case.id] if f.confirmed else []))
    return out


def _fixes_from_cases(hits: list[Any]) -> list[ConfigChange]:
    """Without a model to size them, the top case's confirmed-or-documented changes, attributed to it."""
    if not hits:
        return []
    case = hits[0].case
    out = []
    for f in case.fixes[:4]:
        if f.key is None and f.action is None:
            continue
        out.append(ConfigChange(key=f.key, from_value=f.from_value, to_value=f.to_value,
                                action=f.action if f.key is None else None,
                                rationale=f"{f.rationale} (from case {case.id})",
                                confirmed_by=[case.id] if f.confirmed else []))
    return out


# ---------------------------------------------------------------------------------------------------
# What to tell the user


def _similar_case(hit: Any, report: OOMReport, setup: TrainingSetup) -> SimilarCase:
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


_SETTING_FIELDS = {"cutoff_len": "seq_len", "max_seq_length": "seq_len", "per_device_train_batch_size": "micro_batch",
                   "gradient_accumulation_steps": "grad_accum", "finetuning_type": "method"}


def _setting_value(setup: TrainingSetup, key: str) -> Any:
    field = _SETTING_FIELDS.get(key)
    if field is None or field not in setup.provenance or setup.provenance[field].origin == "default":
        return None
    return getattr(setup, field)


def _questions(report: OOMReport, setup: TrainingSetup, doc: ConfigDocument | None) -> list[Question]:
    if not report.is_memory_error:
        return []
    qs: list[Question] = []
    if doc is None:
        qs.append(Question(slot="config", text="Paste your training config (LLaMA-Factory YAML, TrainingArguments JSON or "
                                                "the launch script, plus its DeepSpeed JSON) so I can return it fixed."))
    if setup.model is None:
        named = f" '{setup.model_name}' is not in my registry:" if setup.model_name else ""
        qs.append(Question(slot="model", text=f"Which model do you train?{named} give its Hugging Face name or paste its config.json "
                                              "(--model-config) so I can size weights, activations and logits."))
    if setup.gpu is None:
        qs.append(Question(slot="gpu", text="Which GPU is it (e.g. --gpu A100-40GB, or --gpu-memory 24)? The log does not say."))
    prov = setup.provenance.get("num_gpus")
    distributed = bool(report.ranks) or report.launcher in ("torchrun", "deepspeed", "accelerate") or setup.zero_stage > 0
    if distributed and (prov is None or prov.origin == "default"):
        qs.append(Question(slot="num_gpus", text="How many GPUs does the run use (--gpus N)? ZeRO sharding divides memory by it."))
    return qs


def _assumptions(setup: TrainingSetup) -> list[str]:
    out = []
    for field, p in setup.provenance.items():
        if p.origin != "default":
            continue
        value = getattr(setup, field, None)
        shown = value.name if hasattr(value, "name") and not isinstance(value, (str, bool, int)) else value
        out.append(f"{field} = {shown} ({p.detail or 'default'})")
    return out


def _summary(d: Diagnosis) -> str:
    r = d.report
    what = _what_ran_out(r)
    parts = [what]
    if d.root_causes:
        top = d.root_causes[0]
        parts.append(f"Most likely cause: {top.label.replace('_', ' ')} — {ROOT_CAUSES.get(top.label, '')}.")
    if d.estimate is not None:
        e = d.estimate
        verdict = ""
        if e.budget_bytes:
            verdict = f" against a budget of {format_bytes(e.budget_bytes)}" + (" (does not fit)" if e.fits is False else "")
        parts.append(f"The calculator predicts a peak of {format_bytes(e.peak_bytes)} per GPU at {e.peak_phase.replace('_', ' ')}{verdict}.")
        held = _observed_peak(d.report)
        if held and held > e.peak_bytes:
            parts.append(f"The failing run needed at least {format_bytes(held)} (allocated + requested), more than predicted.")
    if d.fixes and d.fixed_config:
        after = d.estimate_after
        fit = ""
        if after is not None:
            fit = f"; predicted peak after: {format_bytes(after.peak_bytes)}" + (" — fits" if d.fits_after else " — still does not fit")
        keys = [f"{c.key} {'unset' if c.from_value is None else c.from_value}→{c.to_value}" for c in d.fixes if c.key]
        actions = sum(1 for c in d.fixes if not c.key)
        listed = ", ".join(keys) or "no key changes"
        extra = f" plus {actions} action(s)" if actions else ""
        parts.append(f"Fixed config: {listed}{extra}{fit}.")
    if d.questions:
        parts.append("To go further I need: " + ", ".join(q.slot.replace("_", " ") for q in d.questions) + ".")
    return " ".join(parts)


def _what_ran_out(r: OOMReport) -> str:
    if r.kind == "host_oom":
        return f"The host (CPU RAM) ran out of memory{f' ({r.exit_signal})' if r.exit_signal else ''}."
    where = f"GPU {r.gpu_index}" if r.gpu_index is not None else "the GPU"
    kind = {"cuda_oom": "CUDA", "hip_oom": "ROCm/HIP", "mps_oom": "MPS", "xla_oom": "XLA", "tf_oom": "TensorFlow",
            "cublas_alloc": "cuBLAS/cuDNN", "nccl_oom": "NCCL"}.get(r.kind, r.kind)
    s = f"{kind} out of memory on {where}"
    if r.gpu_total_bytes:
        s += f" ({format_bytes(r.gpu_total_bytes)})"
    if r.requested_bytes:
        s += f": a {format_bytes(r.requested_bytes)} allocation failed"
        if r.gpu_free_bytes is not None:
            s += f" with {format_bytes(r.gpu_free_bytes)} free"
    if r.phase != "unknown":
        s += f", during {r.phase.replace('_', ' ')}"
    return s + "."


def _summary_no_oom(report: OOMReport, causes: list[RootCause]) -> str:
    found = []
    if report.exit_signal:
        found.append(f"the process ended with {report.exit_signal}")
    for e in report.related_errors[:3]:
        found.append(f"{e.kind.replace('_', ' ')} (line {e.line}): {e.message[:160]}")
    head = "No out-of-memory error in this log."
    if found:
        head += " Found: " + "; ".join(found) + "."
    if causes:
        top = causes[0]
        head += f" Reading: {top.label.replace('_', ' ')} — {top.why[0] if top.why else ROOT_CAUSES.get(top.label, '')}."
    return head


def _debug() -> bool:
    return os.environ.get("ASK_OOM_DEBUG", "") not in ("", "0")
