"""Complete the parsed report with what the rest of the input says: vLLM's KV-cache refusal is a memory failure, a
failure stated in words stands for a missing traceback, and the phase comes from the config or from cues near the
error when the frames name none. Also what the report says about the failing step itself (its mode, its real peak).
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, Field

from .configs.schema import ConfigDocument
from .described_oom import DescribedOOM, capacity_question, memory_question, model_named
from .log_cues import AFTERMATH_KINDS, Cue, LogCues, is_aftermath, runtime_oom_kind, startup_free_numbers
from .report import TORCH_ALLOCATOR_KINDS, Evidence, OOMReport
from .units import format_bytes

# A phase cue counts only near the error: lines far before it are set-up chatter (loading, earlier steps); a
# sentence right after it is the user's explanation.
CUE_LINES_BEFORE, CUE_LINES_AFTER = 40, 10
MAX_STAGE_SCAN = 4 * 1024 * 1024   # vLLM's start-up lines sit at the top of a log


class RefinedReport(BaseModel):
    """The report completed from the input, the prose description it used (if any), and what was changed."""

    report: OOMReport
    described: DescribedOOM | None = None
    notes: list[str] = Field(default_factory=list, description="one sentence per change, for the user")


def refine_report(report: OOMReport, log_text: str, *, cues: LogCues, doc: ConfigDocument | None = None,
                  truncated: bool = False) -> RefinedReport:
    """The parsed `report` completed from the log's cues, its prose and the user's config. Never raises."""
    notes: list[str] = []
    if report.kind == "not_oom" and cues.kv_cache is not None:
        report = _kv_cache_failure(report, cues)
        notes.append(f"the engine could not fit its KV cache (line {cues.kv_cache.line}): a memory budget failure")
    elif report.kind == "not_oom" and cues.startup_free is not None:
        report = _startup_short(report, cues.startup_free)
        notes.append(f"vLLM found less free GPU memory at start-up than it wants (line {cues.startup_free.line}): "
                     "a GPU memory budget failure before anything was loaded")
    elif report.kind == "not_oom" and cues.runtime_oom is not None:
        kind = runtime_oom_kind(cues.runtime_oom, log_text)
        report = report.model_copy(update={"kind": kind, "evidence": [
            *report.evidence, Evidence(line=cues.runtime_oom.line, text=cues.runtime_oom.text, fact="kind")]})
        notes.append(f"an allocation failure the runtime printed (line {cues.runtime_oom.line}): read as {kind}")
    if truncated and not report.truncated:
        report = report.model_copy(update={"truncated": True})
    if report.truncated:
        notes.append("the log was larger than the input limit: only its end was read")
    notes.extend(impossible_numbers(report))
    described = _described(report, cues)
    if described is not None:
        report = report.model_copy(update={
            "kind": described.kind, "phase": described.phase or report.phase, "model": report.model or described.model,
            "evidence": [*report.evidence, Evidence(line=described.line, text=described.text, fact="described_oom")]})
        notes.append(f"no error message in the text; diagnosing the memory error it describes (line {described.line})")
    elif doc is not None and _unexplained(report) and (asked := memory_question(log_text)) is not None:
        report = report.model_copy(update={
            "kind": asked.kind, "phase": asked.phase or report.phase, "model": report.model or asked.model,
            "evidence": [*report.evidence, Evidence(line=asked.line, text=asked.text or doc.name, fact="described_oom")]})
        notes.append("no error in the text, only a config: read as the question whether this run fits in GPU memory "
                     "(paste the error to confirm)")
    elif _unexplained(report) and not _failure_shown(cues) and (asked := capacity_question(log_text)) is not None:
        report = report.model_copy(update={
            "kind": asked.kind, "phase": asked.phase or report.phase, "model": report.model or asked.model,
            "evidence": [*report.evidence, Evidence(line=asked.line, text=asked.text, fact="described_oom")]})
        notes.append(f"no error in the text: read as the question it asks, whether the run fits in memory (line "
                     f"{asked.line}; paste the error to confirm)")
    if report.model is None:
        named = model_named(log_text)
        if named is not None:   # the user's words name the model the traceback does not ("I followed Qwen2-VL-7B-...")
            report = report.model_copy(update={"model": named})
            notes.append(f"the model is taken from the text: {named}")
    report = _phase_from_config(report, doc)
    report = _engine_named(report, cues)
    report = _vllm_stage(report, log_text)
    report = _phase_from_cues(report, cues)
    report = _serving_phase(report, cues)
    return RefinedReport(report=report, described=described, notes=notes)


def impossible_numbers(report: OOMReport) -> list[str]:
    """The allocator's numbers that cannot all be true (more free, used or allocated than the GPU holds, more allocated
    than reserved): an edited or mistyped paste. Said in the notes, with the numbers; the diagnosis keeps them, since
    which one is wrong cannot be told."""
    total = report.gpu_total_bytes
    out: list[str] = []
    for name, value in (("free", report.gpu_free_bytes), ("in use by this process", report.process_used_bytes),
                        ("allocated by PyTorch", report.torch_allocated_bytes), ("reserved by PyTorch", report.torch_reserved_bytes)):
        if total and value is not None and value > total:
            out.append(f"the error's numbers cannot all be true: {format_bytes(value)} {name} on a GPU of "
                       f"{format_bytes(total)}; check that the paste is unedited (sizes below are read as printed)")
    allocated, reserved = report.torch_allocated_bytes, report.torch_reserved_bytes
    if allocated is not None and reserved is not None and allocated > reserved:
        out.append(f"the error's numbers cannot all be true: {format_bytes(allocated)} allocated but only "
                   f"{format_bytes(reserved)} reserved by PyTorch; check that the paste is unedited")
    return out


def estimate_mode(report: OOMReport) -> Literal["train", "eval"]:
    """How the calculator should size the failing step: evaluation, generation and vLLM carry no training states."""
    inference = report.phase in ("evaluation", "generation") or report.framework in ("vllm", "llama.cpp")
    return "eval" if inference else "train"


def observed_peak(report: OOMReport) -> int | None:
    """What the failing run really needed at the OOM: PyTorch's allocation plus the request that failed."""
    if report.kind not in TORCH_ALLOCATOR_KINDS or not report.requested_bytes or report.torch_allocated_bytes is None:
        return None
    return report.torch_allocated_bytes + report.requested_bytes


def _kv_cache_failure(report: OOMReport, cues: LogCues) -> OOMReport:
    # vLLM refusing to start because the KV cache does not fit what is left after the weights is a GPU memory
    # budget failure, printed as a ValueError rather than an out-of-memory error.
    """vLLM's KV-cache refusal as the GPU memory failure it is."""
    return report.model_copy(update={
        "kind": "cuda_oom", "framework": report.framework or "vllm",
        "phase": report.phase if report.phase != "unknown" else "generation",
        "evidence": [*report.evidence, Evidence(line=cues.kv_cache.line, text=cues.kv_cache.text, fact="kind")]})


def _startup_short(report: OOMReport, cue: Cue) -> OOMReport:
    """vLLM's start-up check as the GPU memory failure it is: the free and total memory it printed, before loading."""
    from .units import GiB

    numbers = startup_free_numbers(cue)
    update: dict = {"kind": "cuda_oom", "framework": report.framework or "vllm", "phase": "model_loading",
                    "evidence": [*report.evidence, Evidence(line=cue.line, text=cue.text, fact="kind"),
                                 Evidence(line=cue.line, text=cue.text, fact="startup_free")]}
    if numbers is not None:
        free, total, _, _ = numbers
        update.update(gpu_free_bytes=int(free * GiB), gpu_total_bytes=int(total * GiB))
    return report.model_copy(update=update)


def _unexplained(report: OOMReport) -> bool:
    """The parser found no error and no other signal at all, beyond what a dead rank leaves behind."""
    return report.kind == "not_oom" and not report.exit_signal and all(
        e.kind in AFTERMATH_KINDS for e in report.related_errors)


def _described(report: OOMReport, cues: LogCues) -> DescribedOOM | None:
    """A memory error stated in words, used only when the parser found no error and no other signal at all, and the
    log shows no other failure (a shown exception or CUDA error outranks an OOM the words only suspect; a dead rank's
    aftermath does not). The cues hold what the words state (LogCues.oom_said), read once for the log."""
    return cues.oom_said if _unexplained(report) and not _failure_shown(cues) else None


def _failure_shown(cues: LogCues) -> bool:
    """The log shows a failure other than memory (an exception, a CUDA error), beyond a dead rank's aftermath."""
    return cues.failure is not None and not is_aftermath(cues.failure)


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


_VLLM_WEIGHTS_DONE = re.compile(r"(?:Loading (?:model )?weights|Model loading) took\s{0,2}[\d.]+\s{0,2}G", re.IGNORECASE)
_VLLM_ENGINE_INIT = re.compile(r"Initializing an? (?:LLM|V1 LLM) engine", re.IGNORECASE)


def _vllm_stage(report: OOMReport, text: str) -> OOMReport:
    """vLLM logs its start-up steps: weights loaded ("Loading model weights took 17.98 GB"), then a profiling run and
    the KV cache. With no frame naming the phase, the last step logged says where it failed."""
    framed = any(e.fact == "phase" for e in report.evidence)   # a frame or log line named it (prose does not count)
    if report.framework != "vllm" or not report.is_memory_error or framed:
        return report
    head = text[:MAX_STAGE_SCAN]
    done = _VLLM_WEIGHTS_DONE.search(head)
    if done is not None:
        phase, line = "generation", head.count("\n", 0, done.start()) + 1   # profiling + KV cache come next
    else:
        init = _VLLM_ENGINE_INIT.search(head)
        if init is None:
            return report
        phase, line = "model_loading", head.count("\n", 0, init.start()) + 1
    ev = Evidence(line=line, text=head.splitlines()[line - 1].strip()[:300], fact="phase")
    return report.model_copy(update={"phase": phase, "evidence": [*report.evidence, ev]})


def _phase_from_cues(report: OOMReport, cues: LogCues) -> OOMReport:
    """The phase a function name or sentence near the error names, when the traceback's frames named none."""
    if not report.is_memory_error or report.phase != "unknown" or cues.phase is None or cues.phase_cue is None:
        return report
    at = next((e.line for e in report.evidence if e.fact in ("kind", "described_oom") and e.line), None)
    if at is not None and not (at - CUE_LINES_BEFORE <= cues.phase_cue.line <= at + CUE_LINES_AFTER):
        return report
    ev = Evidence(line=cues.phase_cue.line, text=cues.phase_cue.text, fact="phase")
    return report.model_copy(update={"phase": cues.phase, "evidence": [*report.evidence, ev]})


def _engine_named(report: OOMReport, cues: LogCues) -> OOMReport:
    """The inference engine the user's words or commands name ("Using vLLM 0.7.2 server ..."), when no log line did."""
    if not report.is_memory_error or report.framework is not None or cues.engine is None or cues.serving is None:
        return report
    ev = Evidence(line=cues.serving.line, text=cues.serving.text, fact="framework")
    return report.model_copy(update={"framework": cues.engine, "evidence": [*report.evidence, ev]})


def _serving_phase(report: OOMReport, cues: LogCues) -> OOMReport:
    """A model served by an inference engine, in a text that speaks of no training, fails while generating, unless a
    frame or line named another phase. vLLM's own start-up lines say more (_vllm_stage); without them its phase stays
    open: it may still be placing the weights."""
    if (not report.is_memory_error or report.phase != "unknown" or cues.serving is None
            or report.framework == "vllm"):
        return report
    ev = Evidence(line=cues.serving.line, text=cues.serving.text, fact="phase")
    return report.model_copy(update={"phase": "generation", "evidence": [*report.evidence, ev]})
