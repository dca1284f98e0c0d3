"""The deterministic tools as llama-index FunctionTools for the optional LLM agent.

Each tool works on the session's diagnosis (the grounding) and records its output in
`ToolContext.outputs`, so the answer's numbers can be checked against what the tools returned.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..tools.units import GiB
from .diagnosis import DiagnoseRequest, Diagnosis, StatedFact

MAX_TOOL_OUTPUT_CHARS = 6000  # tool results go back into the prompt; keep them small


class ToolContext(BaseModel):
    """What the tools may read (the diagnosis, the user's inputs, the retrieval index) and what they returned."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    diagnosis: Diagnosis
    request: DiagnoseRequest | None = None
    index: Any = None
    settings: Any = None
    outputs: list[str] = Field(default_factory=list)
    calls: list[str] = Field(default_factory=list)

    def record(self, name: str, result: Any) -> str:
        text = json.dumps(result, ensure_ascii=False, default=str)[:MAX_TOOL_OUTPUT_CHARS]
        with _LOCK:
            self.outputs.append(text)
            self.calls.append(name)
        return text


_LOCK = threading.Lock()


def _gib(n: int | None) -> float | None:
    return None if n is None else round(n / GiB, 2)


def _estimate_summary(est) -> dict[str, Any]:
    return {
        "peak_gib": _gib(est.peak_bytes), "peak_phase": est.peak_phase, "budget_gib": _gib(est.budget_bytes),
        "gpu": est.gpu_name, "gpu_gib": _gib(est.gpu_bytes), "fits": est.fits, "verdict": est.verdict,
        "band_gib": [_gib(est.band_lower_bytes), _gib(est.band_upper_bytes)], "workload": est.workload,
        "max_micro_batch": est.max_micro_batch, "max_seq_len": est.max_seq_len,
        "components_gib": {c.name: _gib(c.bytes) for c in sorted(est.breakdown.components, key=lambda c: -c.bytes)},
    }


def grounding(d: Diagnosis) -> dict[str, Any]:
    """The deterministic diagnosis in the compact shape the LLM sees (GiB with two decimals, like the tools)."""
    s = d.setup
    out: dict[str, Any] = {
        "status": d.status, "summary": d.summary,
        "error": {"kind": d.report.kind, "phase": d.report.phase, "operation": d.report.operation,
                  "requested_gib": _gib(d.report.requested_bytes), "gpu_total_gib": _gib(d.report.gpu_total_bytes),
                  "free_gib": _gib(d.report.gpu_free_bytes), "allocated_gib": _gib(d.report.torch_allocated_bytes)},
        "setup": {"model": s.model_name, "method": s.method, "micro_batch": s.micro_batch, "grad_accum": s.grad_accum,
                  "seq_len": s.seq_len, "num_gpus": s.num_gpus, "zero_stage": s.zero_stage,
                  "gradient_checkpointing": s.gradient_checkpointing, "gpu": s.gpu.name if s.gpu else None},
        "root_causes": [{"label": c.label, "score": round(c.score, 2), "why": c.why} for c in d.root_causes[:4]],
        "fixes": [{"key": f.key, "from": f.from_value, "to": f.to_value, "action": f.action, "rationale": f.rationale,
                   "saves_gib": _gib(f.bytes_saved)} for f in d.fixes],
        "similar_cases": [{"id": c.id, "source": c.source, "primary_cause": c.primary_cause} for c in d.similar_cases[:3]],
        "fits_after": d.fits_after,
    }
    if d.estimate is not None:
        out["estimate_before"] = _estimate_summary(d.estimate)
    if d.estimate_after is not None:
        out["estimate_after"] = _estimate_summary(d.estimate_after)
    return out


def build_tools(ctx: ToolContext) -> list:
    """FunctionTools over the session: parse_log, estimate_memory (what-if), search_cases, plan_fixes."""
    from llama_index.core.tools import FunctionTool

    def parse_log(text: str = "") -> str:
        """Parse an error log (default: the user's log) into facts: error kind, requested/free/total GiB, phase, framework."""
        from ..tools.log_parser import parse_log as _parse

        r = _parse(text) if text.strip() else ctx.diagnosis.report
        return ctx.record("parse_log", {
            "kind": r.kind, "message": r.message, "requested_gib": _gib(r.requested_bytes), "gpu_total_gib": _gib(r.gpu_total_bytes),
            "free_gib": _gib(r.gpu_free_bytes), "allocated_gib": _gib(r.torch_allocated_bytes),
            "reserved_unallocated_gib": _gib(r.torch_reserved_unallocated_bytes), "phase": r.phase, "operation": r.operation,
            "framework": r.framework, "deepspeed_stage": r.deepspeed_stage, "model": r.model,
        })

    def estimate_memory(seq_len: int | None = None, micro_batch: int | None = None, grad_accum: int | None = None,
                        gradient_checkpointing: bool | None = None, method: str | None = None, zero_stage: int | None = None,
                        num_gpus: int | None = None, lora_rank: int | None = None) -> str:
        """Peak GPU memory (GiB) of the user's training setup, optionally with changed settings (what-if).
        method: full | lora | qlora | freeze. Returns the peak, the usable budget, whether it fits and the breakdown."""
        if ctx.diagnosis.setup.model is None:
            return ctx.record("estimate_memory", {"error": "model unknown: ask the user for the model name or config.json"})
        changes = {k: v for k, v in {"seq_len": seq_len, "micro_batch": micro_batch, "grad_accum": grad_accum,
                                     "gradient_checkpointing": gradient_checkpointing, "method": method,
                                     "zero_stage": zero_stage, "num_gpus": num_gpus, "lora_rank": lora_rank}.items() if v is not None}
        if changes.get("method") == "qlora":
            changes["quantization_bit"] = 4
        try:
            d = _rerun(facts=[StatedFact(field=k, value=v, said=f"what-if {k}={v}") for k, v in changes.items()], plan=False)
        except Exception as exc:  # noqa: BLE001 - the tool answers the LLM with the reason
            return ctx.record("estimate_memory", {"error": f"{type(exc).__name__}: {exc}"})
        if d.estimate is None:
            return ctx.record("estimate_memory", {"error": "the calculator could not size this setup", "notes": d.notes[-3:]})
        return ctx.record("estimate_memory", {"changes": changes, **_estimate_summary(d.estimate)})

    def _rerun(facts: list[StatedFact] | None = None, keep: list[str] | None = None, plan: bool = True) -> Diagnosis:
        """The pipeline again on the user's request, with what-if facts or constraints added (no retrieval)."""
        req = ctx.request
        if req is None:
            raise ValueError("the user's request is not available to re-run the pipeline")
        update: dict[str, Any] = {"retrieve": False, "plan": plan, "margin": getattr(ctx.settings, "gpu_margin", None) or req.margin}
        if facts:
            update["facts"] = [*req.facts, *facts]
        if keep is not None:
            update["keep"] = keep
        from .agent import diagnose

        return diagnose(req.model_copy(update=update), settings=ctx.settings)

    def search_cases(query: str, k: int = 3) -> str:
        """Documented OOM cases like the user's (knowledge base): id, title, source URL, primary cause, fixes."""
        try:
            index = ctx.index
            if index is None:
                from ..kb.index import CaseIndex

                index = ctx.index = CaseIndex.load_or_build(ctx.settings)
            hits = index.search(query, k=max(1, min(int(k), 5)), mode="fast")
        except Exception as exc:  # noqa: BLE001
            return ctx.record("search_cases", {"error": f"{type(exc).__name__}: {exc}"})
        return ctx.record("search_cases", [
            {"id": h.case.id, "title": h.case.title, "source": h.case.source, "primary_cause": h.case.primary_cause,
             "fixes": [f"{f.key}: {f.from_value} -> {f.to_value}" if f.key else f.action for f in h.case.fixes][:4]}
            for h in hits])

    def plan_fixes(keep_full: bool = False, keep_seq_len: bool = False, keep_batch: bool = False,
                   no_deepspeed: bool = False) -> str:
        """Plan the least invasive config changes that make the user's run fit, under constraints."""
        if ctx.diagnosis.setup.model is None:
            return ctx.record("plan_fixes", {"error": "model unknown"})
        keep = [k for k, on in (("full", keep_full), ("seq", keep_seq_len), ("batch", keep_batch),
                                ("no-deepspeed", no_deepspeed)) if on]
        try:
            d = _rerun(keep=keep)
        except Exception as exc:  # noqa: BLE001
            return ctx.record("plan_fixes", {"error": f"{type(exc).__name__}: {exc}"})
        return ctx.record("plan_fixes", {
            "fits": d.fits_after, "changes": [{"key": c.key, "from": c.from_value, "to": c.to_value, "action": c.action,
                                               "saves_gib": _gib(c.bytes_saved)} for c in d.fixes],
            "estimate_after": _estimate_summary(d.estimate_after) if d.estimate_after else None, "notes": d.notes})

    return [FunctionTool.from_defaults(fn=f) for f in (parse_log, estimate_memory, search_cases, plan_fixes)]
