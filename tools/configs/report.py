"""`ask-oom fix`'s view of a diagnosis as Markdown: verdict, before/after peaks, each change with its reason and bytes saved,
actions outside the config, notes, and the diff."""

from __future__ import annotations

from typing import Any

from ..labels import RootCause
from ..memory.schema import MemoryEstimate
from ..training_setup import TrainingSetup
from ..units import format_bytes


def _estimate_line(label: str, est: MemoryEstimate | None) -> str:
    if est is None:
        return f"- {label}: not estimated"
    if est.serving is not None:   # a vLLM server: what it reserves, and whether its KV-cache pool holds one sequence
        z = est.serving
        verdict = "" if est.verdict is None else f" ({est.verdict.replace('_', ' ')})"
        return (f"- {label}: vLLM reserves {format_bytes(z.requested)} per GPU; its KV-cache pool of "
                f"{format_bytes(max(z.kv_available, 0))} against {format_bytes(z.kv_needed)} for one "
                f"{z.max_model_len}-token sequence (band {format_bytes(est.band_lower_bytes)}-"
                f"{format_bytes(est.band_upper_bytes)} of {format_bytes(est.budget_bytes)} needed in all){verdict}")
    budget = f" of a {format_bytes(est.budget_bytes)} budget" if est.budget_bytes else ""
    verdict = "" if est.fits is None else (" (fits)" if est.fits else " (borderline: probe it)" if est.verdict == "borderline"
                                           else " (does not fit)")
    band = (f" (band {format_bytes(est.band_lower_bytes)}-{format_bytes(est.band_upper_bytes)})"
            if est.band_upper_bytes else "")
    host = f"; host RAM {format_bytes(est.host_bytes)}" if est.host_bytes else ""
    return f"- {label}: peak {format_bytes(est.peak_bytes)}{band} per GPU{budget}{verdict}, at {est.peak_phase}{host}"


def _value(v) -> str:
    return "unset" if v is None else f"`{v}`"


def render_plan(d: Any, written: list[str] | None = None) -> str:
    """`ask-oom fix`'s view of a Diagnosis (assistant.diagnosis): verdict, causes, before/after, changes, diff."""
    lines: list[str] = []
    setup: TrainingSetup = d.setup
    causes: list[RootCause] = d.root_causes
    before: MemoryEstimate | None = d.estimate
    gpu = setup.gpu.name if setup.gpu is not None else "unknown GPU"
    model = setup.model.name if setup.model is not None and setup.model.name else setup.model_name or "unknown model"
    has_edits = any(c.key is not None for c in d.fixes)
    if before is None:
        head = ("Fix planned (not verified by the calculator)" if has_edits
                else "No verified plan: the calculator needs the model architecture and the GPU")
    elif d.fits_after is not False and not has_edits and before.fits is not False:
        head = "Already fits"
    elif not has_edits and getattr(d, "dataset", None) is not None and d.dataset.verdict is not None \
            and d.dataset.verdict.verdict == "fits":
        head = "Already fits this dataset: its worst batch fits (see Notes)"
    else:
        head = "Fixed: the changed config fits" if d.fits_after else "Nothing fits: closest option below"
    lines.append(f"# {head}")
    lines.append("")
    where = f"{d.config.name} ({d.config.format}), " if d.config is not None else ""
    if d.sized == "serve":
        step = (f"vLLM serving (max_model_len {setup.max_model_len or 'the model context'}, max_num_seqs "
                f"{setup.max_num_seqs or 'default'}, gpu_memory_utilization {setup.gpu_memory_utilization or 'default'})")
    elif setup.workload == "train":
        step = f"method {setup.method}, micro-batch {setup.micro_batch} x accumulation {setup.grad_accum}"
    else:
        step = {"eval": "evaluation only", "predict": "prediction", "generate": "prediction with generation"}[setup.workload]
        step += f", eval batch {setup.eval_batch or setup.micro_batch}"
    lines.append(f"{where}{model}, {setup.num_gpus} x {gpu}, {step}" + ("" if d.sized == "serve" else f", sequence {setup.seq_len}"))
    if causes:
        lines.append("")
        lines.append("## Causes")
        for c in causes[:4]:
            why = f": {c.why[0]}" if c.why else ""
            lines.append(f"- `{c.label}` ({c.score:.2f}){why}")
    lines.append("")
    lines.append("## Memory")
    lines.append(_estimate_line("before", before))
    lines.append(_estimate_line("after", d.estimate_after))
    edits = [c for c in d.fixes if c.key is not None and c.key != "__file__"]
    actions = [c for c in d.fixes if c.key is None and c.action]
    if edits:
        lines.append("")
        lines.append("## Changes")
        for c in edits:
            saved = f", saves {format_bytes(c.bytes_saved)}" if c.bytes_saved else ""
            where = " (DeepSpeed file)" if c.target == "deepspeed" else ""
            flag = " — changes the data/results" if c.changes_results else ""
            lines.append(f"- `{c.key}`{where}: {_value(c.from_value)} → {_value(c.to_value)}{saved}{flag}. {c.rationale}")
    if actions:
        lines.append("")
        lines.append("## Also do")
        for c in actions:
            saved = f" (saves {format_bytes(c.bytes_saved)})" if c.bytes_saved else ""
            lines.append(f"- `{c.action}`{saved}: {c.rationale}")
    notes = d.notes
    if notes:
        lines.append("")
        lines.append("## Notes")
        lines.extend(f"- {n}" for n in notes)
    if d.diff:
        lines.append("")
        lines.append("## Diff")
        lines.append("```diff")
        lines.append(d.diff.rstrip("\n"))
        lines.append("```")
    if written:
        lines.append("")
        lines.append("Written: " + ", ".join(written))
    return "\n".join(lines) + "\n"
