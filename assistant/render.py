"""Render a Diagnosis as terminal-readable Markdown or as the documented JSON object.

Renderers only format what the tools computed: every number printed here is a field of the Diagnosis.
"""

from __future__ import annotations

import re
from typing import Any

from ..tools.configs.schema import fence_language
from ..tools.labels import ROOT_CAUSES
from ..tools.memory.schema import MemoryEstimate
from ..tools.units import format_bytes
from .diagnosis import Diagnosis
from .deciding_facts import shown_probability
from .markdown_text import md_escape, md_escape_outside_code

JSON_SCHEMA_VERSION = 1


def render_json(d: Diagnosis) -> dict[str, Any]:
    """The --json object: every Diagnosis field (README schema) plus `primary_cause` and `schema_version`."""
    out = d.model_dump(mode="json")
    out["primary_cause"] = d.primary_cause
    out["schema_version"] = JSON_SCHEMA_VERSION
    for cause in out["root_causes"]:
        cause["meaning"] = ROOT_CAUSES.get(cause["label"], "")
    return out


def render_markdown(d: Diagnosis) -> str:
    """The answer as Markdown: summary, what ran out, ranked causes, estimate, changes, diff, fixed config, cases."""
    parts: list[str] = ["# ask-oom diagnosis", "", md_escape_outside_code(d.summary or ""), ""]
    parts += _what_ran_out(d)
    parts += _causes(d)
    parts += _estimates(d)
    parts += _changes(d)
    if d.diff.strip():
        parts += ["## Diff", "", "```diff", d.diff.rstrip("\n"), "```", ""]
    if d.fixed_config:
        parts += ["## Fixed config", "", f"```{fence_language(d.fixed_config_format)}", d.fixed_config.rstrip("\n"), "```", ""]
    if d.fixed_deepspeed:
        parts += [f"## Fixed DeepSpeed config (`{d.fixed_deepspeed_name}`)", "", "```json", d.fixed_deepspeed.rstrip("\n"),
                  "```", ""]
    parts += _similar(d)
    parts += _bullets("Assumptions", d.assumptions)
    parts += _bullets("Questions", [q.text for q in d.questions])
    parts += _bullets("Notes", d.notes)
    return "\n".join(parts).rstrip() + "\n"


# ---------------------------------------------------------------------------------------------------


def _what_ran_out(d: Diagnosis) -> list[str]:
    r = d.report
    rows: list[tuple[str, str]] = [("error", r.kind)]
    if r.message:
        rows.append(("message", f"`{_cell(r.message[:200])}`"))
    if r.gpu_index is not None:
        rows.append(("GPU", str(r.gpu_index)))
    sizes = [("requested", r.requested_bytes), ("GPU total", r.gpu_total_bytes), ("free", r.gpu_free_bytes),
             ("in use by this process", r.process_used_bytes), ("allocated by PyTorch", r.torch_allocated_bytes),
             ("reserved by PyTorch", r.torch_reserved_bytes),
             ("reserved but unallocated", r.torch_reserved_unallocated_bytes)]
    rows += [(name, format_bytes(v)) for name, v in sizes if v is not None]
    for p in r.other_processes:
        rows.append((f"process {p.pid}", format_bytes(p.bytes)))
    if r.phase != "unknown":
        rows.append(("phase", r.phase.replace("_", " ")))
    for name, value in (("operation", r.operation), ("framework", r.framework), ("launcher", r.launcher),
                        ("model", r.model), ("exit signal", r.exit_signal)):
        if value:
            rows.append((name, str(value)))
    if r.deepspeed_stage is not None:
        rows.append(("DeepSpeed ZeRO stage", str(r.deepspeed_stage)))
    if r.ranks:
        rows.append(("ranks", ", ".join(map(str, r.ranks))))
    for e in r.related_errors:
        rows.append((f"related (line {e.line})", _cell(md_escape(e.message[:160]))))
    out = ["## What ran out of memory", "", "| fact | value |", "| --- | --- |"]
    out += [f"| {k} | {v} |" for k, v in rows]
    return out + [""]


def _causes(d: Diagnosis) -> list[str]:
    if not d.root_causes:
        return []
    out = ["## Why (ranked causes)", ""]
    for i, c in enumerate(d.root_causes, start=1):
        prob = f", probability {shown_probability(c.probability)}" if c.probability is not None else ""
        out.append(f"{i}. **{md_escape(c.label)}** (score {c.score:.2f}{prob}): {md_escape(ROOT_CAUSES.get(c.label, ''))}")
        out += [f"   - {md_escape_outside_code(w)}" for w in c.why]
    return out + [""]


def _estimates(d: Diagnosis) -> list[str]:
    before, after = d.estimate, d.estimate_after
    if before is None:
        return []
    names = [c.name for c in before.breakdown.components]
    if after is not None:
        names += [c.name for c in after.breakdown.components if c.name not in names]
    head = "| component | before |" + (" after |" if after is not None else "")
    sep = "| --- | ---: |" + (" ---: |" if after is not None else "")
    out = ["## Memory per GPU (calculator)", "", head, sep]
    for name in names:
        row = f"| {name.replace('_', ' ')} | {format_bytes(before.breakdown.get(name))} |"
        if after is not None:
            row += f" {format_bytes(after.breakdown.get(name))} |"
        out.append(row)
    out.append(_total_row("**peak**", before, after, lambda e: f"**{format_bytes(e.peak_bytes)}** ({e.peak_phase.replace('_', ' ')})"))
    if before.budget_bytes is not None:
        out.append(_total_row("budget", before, after, lambda e: format_bytes(e.budget_bytes)))
        out.append(_total_row("error band", before, after, lambda e: (
            f"{format_bytes(e.band_lower_bytes)} - {format_bytes(e.band_upper_bytes)}" if e.band_upper_bytes else "?")))
        out.append(_total_row("fits", before, after, lambda e: "yes" if e.fits else "borderline" if e.verdict == "borderline"
                              else "no" if e.fits is False else "?"))
    if before.max_micro_batch is not None:
        out.append(_total_row("largest micro-batch that fits", before, after, lambda e: str(e.max_micro_batch)))
    if before.host_bytes:
        out.append(_total_row("host RAM", before, after, lambda e: format_bytes(e.host_bytes)))
    gpu = before.gpu_name or (d.setup.gpu.name if d.setup.gpu else None)
    out += ["", f"Parameters: {before.n_params:,} ({before.n_trainable:,} trainable)" + (f"; GPU: {gpu}" if gpu else "") + "."]
    return out + [""]


def _total_row(name: str, before: MemoryEstimate, after: MemoryEstimate | None, fmt) -> str:
    row = f"| {name} | {fmt(before)} |"
    if after is not None:
        row += f" {fmt(after)} |"
    return row


def _changes(d: Diagnosis) -> list[str]:
    if not d.fixes:
        return []
    out = ["## Changes", "", "| change | from → to | why | saves |", "| --- | --- | --- | ---: |"]
    for c in d.fixes:
        what = f"`{c.key}`" if c.key else _cell(c.action or "")
        if c.key == "__file__":   # a whole new DeepSpeed file: its text is the section below, not a cell
            what, move = f"new file `{d.fixed_deepspeed_name or 'ds_config.json'}`", "see Fixed DeepSpeed config"
        elif c.key:
            move = f"{_show(c.from_value)} → {_show(c.to_value)}"
        else:
            move = "(action)" if c.target in ("install", "env") else "—"
        why = md_escape_outside_code(c.rationale)
        if c.confirmed_by:
            why += f" (worked in {', '.join(c.confirmed_by)})"
        if c.changes_results:
            why += " ⚠ changes the data or the trained model"
        saved = format_bytes(c.bytes_saved) if c.bytes_saved else ""
        out.append(f"| {what} | {_cell(move)} | {_cell(why)} | {saved} |")
    return out + [""]


def _similar(d: Diagnosis) -> list[str]:
    if not d.similar_cases:
        return []
    out = ["## Similar documented cases", ""]
    for c in d.similar_cases:
        link = f"[{c.title}]({c.source})" if c.source.startswith(("http://", "https://")) else f"{c.title} (source: {c.source})"
        line = f"- {link}: `{c.id}`, primary cause **{c.primary_cause}**"
        if c.why_similar:
            line += "; " + ", ".join(c.why_similar[:4])
        out.append(line)
        if c.fix_summary:
            out.append(f"  - fixed by: {md_escape_outside_code(c.fix_summary)}")
    return out + [""]


def _bullets(title: str, items: list[str]) -> list[str]:
    if not items:
        return []
    return [f"## {title}", "", *[f"- {md_escape_outside_code(i)}" for i in items], ""]


def _show(v: Any) -> str:
    return "unset" if v is None else f"`{v}`"


def _cell(text: str) -> str:
    """A table cell: `|` escaped (once) and on one line."""
    return re.sub(r"(?<!\\)\|", r"\\|", str(text)).replace("\n", " ")
