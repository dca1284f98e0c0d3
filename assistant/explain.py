"""Answers to "why?": the diagnosis' causes with their evidence, where the memory goes and why each fix,
ordered by what the question mentions."""

from __future__ import annotations

import re

from ..tools.labels import ROOT_CAUSES
from ..tools.units import format_bytes
from .diagnosis import Diagnosis


def explain(d: Diagnosis, topic: str) -> str:
    """Why the diagnosis says what it says: the causes with their evidence, where the memory goes, why each fix."""
    if not d.root_causes:
        return d.summary or "No memory error was found in the log, so there is nothing to explain yet."
    topic_words = {w for w in re.findall(r"[a-z_]{4,}", topic.lower()) if w not in _STOPWORDS} if topic else set()
    causes = sorted(d.root_causes, key=lambda c: (-_overlap(topic_words, c.label + " " + " ".join(c.why)), -c.score))
    lines = []
    top = causes[0]
    lines.append(f"**Why: `{top.label}`** — {ROOT_CAUSES.get(top.label, '')}")
    lines.extend(f"- {w}" for w in top.why)
    if len(causes) > 1:
        lines.append("\nAlso contributing: " + ", ".join(f"`{c.label}` ({c.score:.2f})" for c in causes[1:4]))
    est = d.estimate
    if est is not None:
        comps = sorted(est.breakdown.components, key=lambda c: (-_overlap(topic_words, c.name.replace("_", " ")), -c.bytes))
        head = f"\n**Where the memory goes** (estimated peak {format_bytes(est.peak_bytes)} at {est.peak_phase}"
        if est.budget_bytes:
            head += f"; usable budget {format_bytes(est.budget_bytes)} on {est.gpu_name or 'the GPU'}"
        lines.append(head + "):")
        for c in comps[:6]:
            lines.append(f"- {c.name}: {format_bytes(c.bytes)}" + (f" — {c.formula}" if c.formula else ""))
    if d.fixes:
        lines.append("\n**Why these changes**:")
        for f in sorted(d.fixes, key=lambda f: -_overlap(topic_words, f"{f.key} {f.action} {f.rationale}")):
            what = f"`{f.key}`: {f.from_value} → {f.to_value}" if f.key else (f.action or "")
            saved = f" (saves {format_bytes(f.bytes_saved)})" if f.bytes_saved else ""
            lines.append(f"- {what}{saved} — {f.rationale}")
    if d.estimate_after is not None:
        after = d.estimate_after
        verdict = "fits" if d.fits_after else "does not fit"
        lines.append(f"\nAfter the changes the calculator estimates {format_bytes(after.peak_bytes)}"
                     + (f" of {format_bytes(after.budget_bytes)} usable" if after.budget_bytes else "") + f": it {verdict}.")
    return "\n".join(lines)


# words too common in questions to say which cause / component / fix they are about
_STOPWORDS = {"this", "that", "what", "when", "with", "does", "doing", "many", "memory", "there", "these", "those",
              "much", "need", "have", "from", "into", "about", "still", "again", "large", "huge", "high", "take", "takes"}


def _overlap(words: set[str], text: str) -> int:
    """How many of the question's words `text` mentions (the sort key that puts the asked-about item first)."""
    low = text.lower()
    return sum(1 for w in words if w in low)
