"""The diagnosis in one paragraph: what ran out, the most likely cause, the calculator's peak against the budget,
the fixed config and what is still needed. Every number is one a tool produced."""

from __future__ import annotations

from ..tools.labels import ROOT_CAUSES, RootCause
from ..tools.report import OOMReport
from ..tools.report_refinement import observed_peak
from ..tools.units import format_bytes
from .deciding_facts import is_confident, shown_probability
from .diagnosis import Diagnosis

NOT_SURE_LISTED = 0.1   # a hypothesis below this probability is not named beside the leading ones


def summary(d: Diagnosis) -> str:
    """The summary of a diagnosed memory error."""
    parts = [_what_ran_out(d.report)]
    if d.root_causes and is_confident(d.root_causes):
        top = d.root_causes[0]
        sure = f" (probability {shown_probability(top.probability)})" if top.probability is not None else ""
        parts.append(f"Most likely cause{sure}: {top.label.replace('_', ' ')} — {ROOT_CAUSES.get(top.label, '')}.")
    elif d.root_causes:
        parts.append(_not_sure(d))
    return " ".join(parts + _verdict_and_fix(d))


def _not_sure(d: Diagnosis) -> str:
    """The leading hypotheses with their probabilities, and the one fact that would separate them."""
    leading = [c for c in d.root_causes[:3] if c.probability is None or c.probability >= NOT_SURE_LISTED]
    names = [f"{c.label.replace('_', ' ')} ({c.probability:.0%})" if c.probability is not None else c.label.replace('_', ' ')
             for c in leading or d.root_causes[:1]]
    said = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
    decide = next((q.text for q in d.questions if q.slot == "decide"), None)
    return f"Not sure yet: {said}." + (f" What would decide it: {decide}" if decide else "")


def _verdict_and_fix(d: Diagnosis) -> list[str]:
    """The calculator's peak against the budget (and against what the failing run held), the fixed config, and
    what is still needed; the first item is the peak sentence ('' without an estimate)."""
    parts = [""]
    if d.estimate is not None:
        e = d.estimate
        verdict = ""
        if e.budget_bytes:
            fit = ("borderline: the budget is inside the error band" if e.verdict == "borderline"
                   else "does not fit" if e.fits is False else "")
            verdict = f" against a budget of {format_bytes(e.budget_bytes)}" + (f" ({fit})" if fit else "")
        parts[0] = f"The calculator predicts a peak of {format_bytes(e.peak_bytes)} per GPU at {e.peak_phase.replace('_', ' ')}{verdict}."
        held = observed_peak(d.report)
        if held and held > e.peak_bytes:
            parts.append(f"The failing run needed at least {format_bytes(held)} (allocated + requested), more than predicted.")
    if d.fixes and d.fixed_config:
        after = d.estimate_after
        fit = ""
        if after is not None:
            fit = f"; predicted peak after: {format_bytes(after.peak_bytes)}" + (" — fits" if d.fits_after else " — still does not fit")
        keys = [f"{c.key} {'unset' if c.from_value is None else c.from_value}→{c.to_value}" if c.key != "__file__"
                else f"new {d.fixed_deepspeed_name or 'DeepSpeed file'}" for c in d.fixes if c.key]
        actions = sum(1 for c in d.fixes if not c.key)
        listed = ", ".join(keys) or "no key changes"
        extra = f" plus {actions} action(s)" if actions else ""
        parts.append(f"Fixed config: {listed}{extra}{fit}.")
    if d.questions:
        parts.append("To go further I need: " + ", ".join("the deciding fact" if q.slot == "decide" else q.slot.replace("_", " ")
                                                          for q in d.questions) + ".")
    return [p for p in parts if p]


def summary_config_only(d: Diagnosis) -> str:
    """The summary of a config checked without a log: the calculator's verdict and the fix, if one is needed."""
    what = f"No log given: the calculator sized {d.config.name}" if d.config is not None else "No log given: the calculator sized the setup"
    parts = [what + "."]
    if d.estimate is None:
        parts.append("It could not size the model.")
    if d.root_causes:
        top = d.root_causes[0]
        parts.append(f"Over the budget: {top.label.replace('_', ' ')} — {ROOT_CAUSES.get(top.label, '')}.")
    return " ".join(parts + _verdict_and_fix(d))


def summary_no_oom(report: OOMReport, causes: list[RootCause]) -> str:
    """The summary of a log without a memory error: what it shows instead."""
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


def _what_ran_out(r: OOMReport) -> str:
    """The first sentence: which memory ran out, where, and the allocation that failed."""
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
