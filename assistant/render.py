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
from .summary import localized_summary
from .texts import tr

JSON_SCHEMA_VERSION = 1


def render_json(d: Diagnosis) -> dict[str, Any]:
    """The --json object: every Diagnosis field (README schema) plus `primary_cause` and `schema_version`."""
    out = d.model_dump(mode="json")
    out["primary_cause"] = d.primary_cause
    out["schema_version"] = JSON_SCHEMA_VERSION
    for cause in out["root_causes"]:
        cause["meaning"] = ROOT_CAUSES.get(cause["label"], "")
    return out


def render_markdown(d: Diagnosis, language: str | None = "en") -> str:
    """The answer as Markdown: summary, what ran out, ranked causes, estimate, changes, diff, fixed config, cases.

    `language` ('en' or 'zh') picks the fixed words (headings, table headers, verdicts, the summary's template) from
    assistant/texts.py; cause labels, config keys, numbers and the texts the tools wrote stay as they are. English is
    the pipeline's own summary and the report `ask-oom diagnose` prints."""
    lang = language or "en"
    parts: list[str] = [tr(lang, "rp_title"), "", md_escape_outside_code(localized_summary(d, lang) or ""), ""]
    parts += _what_ran_out(d, lang)
    parts += _causes(d, lang)
    parts += _estimates(d, lang)
    parts += evidence_sections(d, lang)
    parts += _changes(d, lang)
    if d.diff.strip():
        parts += [tr(lang, "rp_diff"), "", "```diff", d.diff.rstrip("\n"), "```", ""]
    if d.fixed_config:
        parts += [tr(lang, "rp_fixed_config"), "", f"```{fence_language(d.fixed_config_format)}", d.fixed_config.rstrip("\n"),
                  "```", ""]
    if d.fixed_deepspeed:
        parts += [tr(lang, "rp_fixed_deepspeed", name=d.fixed_deepspeed_name), "", "```json", d.fixed_deepspeed.rstrip("\n"),
                  "```", ""]
    parts += _similar(d, lang)
    parts += _reports(d, lang)
    parts += _bullets(tr(lang, "rp_assumptions"), d.assumptions)
    parts += _bullets(tr(lang, "rp_questions"), [q.text for q in d.questions])
    parts += _bullets(tr(lang, "rp_notes"), d.notes)
    return "\n".join(parts).rstrip() + "\n"


# ---------------------------------------------------------------------------------------------------


def evidence_sections(d: Diagnosis, lang: str = "en") -> list[str]:
    """What the run left behind beside the log, each as its tool renders it: the snapshots held against the
    calculator, the per-rank table, and the dataset's worst batch."""
    out: list[str] = []
    if d.reconciliation is not None:
        from ..tools.snapshot import render_markdown as render_snapshots

        out += [tr(lang, "rp_snapshots"), "", render_snapshots(d.reconciliation).rstrip("\n"), ""]
    if d.ranks is not None:
        from ..tools.snapshot import render_rank_table

        out += [tr(lang, "rp_rank_table"), ""] + render_rank_table(d.ranks) + [""]
    if d.dataset is not None:
        from ..tools.dataset import render_markdown as render_dataset

        out += [tr(lang, "rp_dataset"), "", render_dataset(d.dataset.profile, d.dataset.verdict).rstrip("\n"), ""]
    return out


def _what_ran_out(d: Diagnosis, lang: str = "en") -> list[str]:
    r = d.report
    rows: list[tuple[str, str]] = [(tr(lang, "rp_error"), r.kind)]
    if r.message:
        rows.append((tr(lang, "rp_message"), f"`{_cell(r.message[:200])}`"))
    if r.gpu_index is not None:
        rows.append((tr(lang, "rp_gpu"), str(r.gpu_index)))
    sizes = [("rp_requested", r.requested_bytes), ("rp_gpu_total", r.gpu_total_bytes), ("rp_free", r.gpu_free_bytes),
             ("rp_in_use", r.process_used_bytes), ("rp_allocated", r.torch_allocated_bytes),
             ("rp_reserved", r.torch_reserved_bytes), ("rp_reserved_unallocated", r.torch_reserved_unallocated_bytes)]
    rows += [(tr(lang, key), format_bytes(v)) for key, v in sizes if v is not None]
    for p in r.other_processes:
        rows.append((tr(lang, "rp_process", pid=p.pid), format_bytes(p.bytes)))
    if r.phase != "unknown":
        rows.append((tr(lang, "rp_phase"), r.phase.replace("_", " ")))
    for key, value in (("rp_operation", r.operation), ("rp_framework", r.framework), ("rp_launcher", r.launcher),
                       ("rp_model", r.model), ("rp_exit_signal", r.exit_signal)):
        if value:
            rows.append((tr(lang, key), str(value)))
    if r.deepspeed_stage is not None:
        rows.append((tr(lang, "rp_zero_stage"), str(r.deepspeed_stage)))
    if r.ranks:
        rows.append((tr(lang, "rp_ranks"), ", ".join(map(str, r.ranks))))
    for e in r.related_errors:
        rows.append((tr(lang, "rp_related", line=e.line), _cell(md_escape(e.message[:160]))))
    out = [tr(lang, "rp_ran_out"), "", tr(lang, "rp_fact_head"), "| --- | --- |"]
    out += [f"| {k} | {v} |" for k, v in rows]
    return out + [""]


def _causes(d: Diagnosis, lang: str = "en") -> list[str]:
    if not d.root_causes:
        return []
    out = [tr(lang, "rp_causes"), ""]
    for i, c in enumerate(d.root_causes, start=1):
        prob = tr(lang, "rp_cause_probability", p=shown_probability(c.probability)) if c.probability is not None else ""
        score = tr(lang, "rp_cause_score", score=f"{c.score:.2f}")
        out.append(f"{i}. **{md_escape(c.label)}** ({score}{prob}): {md_escape(ROOT_CAUSES.get(c.label, ''))}")
        out += [f"   - {md_escape_outside_code(w)}" for w in c.why]
    return out + [""]


def _estimates(d: Diagnosis, lang: str = "en") -> list[str]:
    before, after = d.estimate, d.estimate_after
    if before is None:
        return []
    names = [c.name for c in before.breakdown.components]
    if after is not None:
        names += [c.name for c in after.breakdown.components if c.name not in names]
    head = f"| {tr(lang, 'rp_component')} | {tr(lang, 'rp_before')} |" + (f" {tr(lang, 'rp_after')} |" if after is not None else "")
    sep = "| --- | ---: |" + (" ---: |" if after is not None else "")
    out = [tr(lang, "rp_memory"), "", head, sep]
    for name in names:
        row = f"| {name.replace('_', ' ')} | {format_bytes(before.breakdown.get(name))} |"
        if after is not None:
            row += f" {format_bytes(after.breakdown.get(name))} |"
        out.append(row)
    out.append(_total_row(tr(lang, "rp_peak"), before, after,
                          lambda e: f"**{format_bytes(e.peak_bytes)}** ({e.peak_phase.replace('_', ' ')})"))
    if before.budget_bytes is not None:
        out.append(_total_row(tr(lang, "rp_budget"), before, after, lambda e: format_bytes(e.budget_bytes)))
        out.append(_total_row(tr(lang, "rp_band"), before, after, lambda e: (
            f"{format_bytes(e.band_lower_bytes)} - {format_bytes(e.band_upper_bytes)}" if e.band_upper_bytes else "?")))
        out.append(_total_row(tr(lang, "rp_fits"), before, after, lambda e: tr(lang, "rp_yes") if e.fits
                              else tr(lang, "rp_borderline") if e.verdict == "borderline"
                              else tr(lang, "rp_no") if e.fits is False else "?"))
    if before.max_micro_batch is not None:
        out.append(_total_row(tr(lang, "rp_max_batch"), before, after, lambda e: str(e.max_micro_batch)))
    if before.host_bytes:
        out.append(_total_row(tr(lang, "rp_host_ram"), before, after, lambda e: format_bytes(e.host_bytes)))
    gpu = before.gpu_name or (d.setup.gpu.name if d.setup.gpu else None)
    params = tr(lang, "rp_params", n=f"{before.n_params:,}", trainable=f"{before.n_trainable:,}")
    out += ["", params + (tr(lang, "rp_params_gpu", gpu=gpu) if gpu else "") + tr(lang, "end")]
    return out + [""]


def _total_row(name: str, before: MemoryEstimate, after: MemoryEstimate | None, fmt) -> str:
    row = f"| {name} | {fmt(before)} |"
    if after is not None:
        row += f" {fmt(after)} |"
    return row


def _changes(d: Diagnosis, lang: str = "en") -> list[str]:
    if not d.fixes:
        return []
    out = [tr(lang, "rp_changes"), "", tr(lang, "rp_changes_head"), "| --- | --- | --- | ---: |"]
    for c in d.fixes:
        what = f"`{c.key}`" if c.key else _cell(c.action or "")
        if c.key == "__file__":   # a whole new DeepSpeed file: its text is the section below, not a cell
            what, move = tr(lang, "rp_new_file", name=d.fixed_deepspeed_name or 'ds_config.json'), tr(lang, "rp_see_deepspeed")
        elif c.key:
            move = f"{_show(c.from_value, lang)} → {_show(c.to_value, lang)}"
        else:
            move = tr(lang, "rp_action") if c.target in ("install", "env") else "—"
        why = md_escape_outside_code(c.rationale)
        if c.confirmed_by:
            why += tr(lang, "rp_worked_in", cases=", ".join(c.confirmed_by))
        if c.changes_results:
            why += tr(lang, "rp_changes_results")
        saved = format_bytes(c.bytes_saved) if c.bytes_saved else ""
        out.append(f"| {what} | {_cell(move)} | {_cell(why)} | {saved} |")
    return out + [""]


def _similar(d: Diagnosis, lang: str = "en") -> list[str]:
    if not d.similar_cases:
        return []
    out = [tr(lang, "rp_similar"), ""]
    for c in d.similar_cases:
        link = (f"[{c.title}]({c.source})" if c.source.startswith(("http://", "https://"))
                else tr(lang, "rp_source", title=c.title, source=c.source))
        line = f"- {link}" + tr(lang, "rp_case", id=c.id, cause=c.primary_cause)
        if c.why_similar:
            line += "; " + ", ".join(c.why_similar[:4])
        out.append(line)
        if c.fix_summary:
            out.append(tr(lang, "rp_fixed_by", fix=md_escape_outside_code(c.fix_summary)))
    return out + [""]


def _reports(d: Diagnosis, lang: str = "en") -> list[str]:
    """The public reports worded most like this one, with the cause each thread settled (their votes are evidence)."""
    if not d.similar_reports:
        return []
    out = [tr(lang, "rp_reports"), ""]
    for r in d.similar_reports:
        link = f"[{r.id}]({r.source})" if r.source.startswith(("http://", "https://")) else f"`{r.id}` ({r.source})"
        out.append(f"- {link}" + tr(lang, "rp_report_cause", cause=r.cause, similarity=f"{r.similarity:.2f}"))
    return out + [""]


def _bullets(title: str, items: list[str]) -> list[str]:
    if not items:
        return []
    return [f"## {title}", "", *[f"- {md_escape_outside_code(i)}" for i in items], ""]


def _show(v: Any, lang: str = "en") -> str:
    return tr(lang, "rp_unset") if v is None else f"`{v}`"


def _cell(text: str) -> str:
    """A table cell: `|` escaped (once) and on one line."""
    return re.sub(r"(?<!\\)\|", r"\\|", str(text)).replace("\n", " ")
