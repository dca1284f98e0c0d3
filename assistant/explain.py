"""Answers to "why?": the diagnosis' causes with their evidence, where the memory goes and why each fix,
ordered by what the question mentions."""

from __future__ import annotations

import re

from ..tools.labels import ROOT_CAUSES
from ..tools.units import format_bytes
from .diagnosis import Diagnosis
from .markdown_text import md_escape, md_escape_outside_code
from .texts import tr


def explain(d: Diagnosis, topic: str, language: str = "en") -> str:
    """Why the diagnosis says what it says: the causes with their evidence, where the memory goes, why each fix;
    its headings in the conversation's `language` (the evidence is the tools' words)."""
    if not d.root_causes:
        return d.summary or tr(language, "ex_no_error")
    topic_words = {w for w in re.findall(r"[a-z_]{4,}", topic.lower()) if w not in _STOPWORDS} if topic else set()
    causes = sorted(d.root_causes, key=lambda c: (-_overlap(topic_words, c.label + " " + " ".join(c.why)), -c.score))
    lines = []
    top = causes[0]
    lines.append(tr(language, "ex_why", label=top.label) + f" — {md_escape(ROOT_CAUSES.get(top.label, ''))}")
    lines.extend(f"- {md_escape_outside_code(w)}" for w in top.why)
    if len(causes) > 1:
        lines.append("\n" + tr(language, "ex_also") + ", ".join(f"`{c.label}` ({c.score:.2f})" for c in causes[1:4]))
    est = d.estimate
    if est is not None:
        comps = sorted(est.breakdown.components, key=lambda c: (-_overlap(topic_words, c.name.replace("_", " ")), -c.bytes))
        head = "\n" + tr(language, "ex_where", peak=format_bytes(est.peak_bytes), phase=est.peak_phase)
        if est.budget_bytes:
            head += tr(language, "ex_budget", budget=format_bytes(est.budget_bytes), gpu=est.gpu_name or tr(language, "the_gpu"))
        lines.append(head + tr(language, "ex_where_end"))
        for c in comps[:6]:
            lines.append(f"- {c.name}: {format_bytes(c.bytes)}" + (f" — {md_escape(c.formula)}" if c.formula else ""))
    if d.fixes:
        lines.append("\n" + tr(language, "ex_changes"))
        for f in sorted(d.fixes, key=lambda f: -_overlap(topic_words, f"{f.key} {f.action} {f.rationale}")):
            what = f"`{f.key}`: {f.from_value} → {f.to_value}" if f.key else (f.action or "")
            saved = tr(language, "ex_saves", saved=format_bytes(f.bytes_saved)) if f.bytes_saved else ""
            lines.append(f"- {what}{saved} — {md_escape_outside_code(f.rationale)}")
    if d.estimate_after is not None:
        after = d.estimate_after
        verdict = tr(language, "ex_fits" if d.fits_after else "ex_not_fit")
        lines.append("\n" + tr(language, "ex_after", peak=format_bytes(after.peak_bytes))
                     + (tr(language, "ex_of", budget=format_bytes(after.budget_bytes)) if after.budget_bytes else "")
                     + tr(language, "ex_verdict", verdict=verdict))
    return "\n".join(lines)


# words too common in questions to say which cause / component / fix they are about
_STOPWORDS = {"this", "that", "what", "when", "with", "does", "doing", "many", "memory", "there", "these", "those",
              "much", "need", "have", "from", "into", "about", "still", "again", "large", "huge", "high", "take", "takes"}


def _overlap(words: set[str], text: str) -> int:
    """How many of the question's words `text` mentions (the sort key that puts the asked-about item first)."""
    low = text.lower()
    return sum(1 for w in words if w in low)
