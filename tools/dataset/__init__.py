"""The dataset's worst case (`--dataset PATH`): tokens per sample, the worst batch against the GPU budget, the fix.

profile_dataset streams a JSON / JSONL / Parquet file or a LLaMA-Factory data directory into a DatasetProfile;
worst_case sizes its worst micro-batch with the memory calculator (DatasetVerdict); render_markdown shows both.
"""

from __future__ import annotations

from ..units import GiB
from .profile import DatasetProfile, Distribution, WorstSample, profile_dataset
from .worst_case import DatasetVerdict, OomTiming, Suggestion, hit_probability, oom_timing, worst_case

__all__ = ["DatasetProfile", "DatasetVerdict", "Distribution", "OomTiming", "Suggestion", "WorstSample",
           "hit_probability", "oom_timing", "profile_dataset", "render_markdown", "worst_case"]

WORST_ROWS = 5


def render_markdown(profile: DatasetProfile, verdict: DatasetVerdict | None = None) -> str:
    """A short Markdown section: the distribution, the worst samples, the verdict and the fix, with arithmetic."""
    p = profile
    lines = [f"### Dataset: {p.path}" + (f" ({', '.join(p.datasets)})" if p.datasets and p.datasets != [p.path] else ""),
             "",
             f"{p.samples} samples" + (f", {p.bad_records} unusable records" if p.bad_records else "")
             + (" (partial: a limit stopped the read)" if not p.complete else "")
             + f"; tokens: {'exact (tokenizer)' if p.tokens_exact else 'estimated'}"
             + (f"; {p.samples_with_images} with images" if p.samples_with_images else "")
             + (f"; {p.samples_with_videos} with videos" if p.samples_with_videos else ""),
             "",
             "| tokens per sample | min | p50 | p90 | p99 | max | mean |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, d in (("total", p.total), ("text", p.text), ("image/video", p.media)):
        if name == "image/video" and not d.max:
            continue
        lines.append(f"| {name} | {d.min} | {d.p50} | {d.p90} | {d.p99} | {d.max} | {d.mean:g} |")
    hist = [b for b in p.histogram if b.count]
    if hist:
        lines += ["", "Histogram (total tokens): " + ", ".join(f"{b.lower}-{b.upper}: {b.count}" for b in hist)]
    if p.cutoff_len:
        lines.append(f"cutoff_len {p.cutoff_len}: {p.truncated_samples} sample(s) truncated"
                     + (f", {p.image_cut_samples} with image tokens cut" if p.image_cut_samples else "")
                     + ("; packing: every sequence is cutoff_len long" if p.packing else ""))
    lines += ["", "Longest samples:", "", "| index | id | text | template | image/video | total |", "|---:|---|---:|---:|---:|---:|"]
    for ws in p.worst[:WORST_ROWS]:
        lines.append(f"| {ws.index} | {ws.id or ''} | {ws.text_tokens} | {ws.template_tokens} | {ws.media_tokens} | {ws.total} |")
    if verdict is not None:
        lines += ["", _verdict_line(verdict), ""]
        lines += [f"- {a}" for a in verdict.arithmetic]
        if verdict.over_budget:
            shown = ", ".join(f"#{s.index}" + (f" ({s.id})" if s.id else "") + f": {s.tokens}"
                              for s in verdict.over_budget_samples[:WORST_ROWS])
            lines.append(f"- over budget: {verdict.over_budget} sample(s) ({100 * verdict.over_budget_fraction:.3f}%), "
                         f"e.g. {shown}")
        for s in verdict.suggestions:
            mark = "**suggested**: " if s.kind == verdict.primary else ""
            lines.append(f"- {mark}{s.detail}" + ("" if s.fits else " (still over)") + (f"; caveat: {s.caveat}" if s.caveat else ""))
        if verdict.timing and verdict.timing.over_budget:
            lines += ["", "Why it can OOM after N steps:", ""] + [f"- {line}" for line in verdict.timing.lines]
        lines += [f"- note: {n}" for n in verdict.notes]
    if p.notes:
        lines += ["", "Assumptions:", ""] + [f"- {n}" for n in p.notes]
    return "\n".join(lines) + "\n"


def _verdict_line(v: DatasetVerdict) -> str:
    head = f"**Worst batch: {v.micro_batch} x {v.worst_length} tokens → {v.worst_upper_bytes / GiB:.2f} GiB**"
    if v.budget_bytes is None:
        return head + " (no budget given)"
    if v.fits:
        return head + f" fits the {v.budget_bytes / GiB:.2f} GiB budget (margin {v.margin})"
    return head + f" exceeds the {v.budget_bytes / GiB:.2f} GiB budget (margin {v.margin})"
