"""Diagnosis → Slack messages: a short summary (primary cause, key changes, verdict), action buttons,
and what is too long for a message (fixed config, full report) as files."""

from __future__ import annotations

import re

from pydantic import BaseModel, Field

from ..tools.configs.schema import fixed_file_name
from ..tools.units import format_bytes
from .diagnosis import Diagnosis
from .reply import Action
from .summary import localized_summary
from .texts import tr

# Slack limits (api.slack.com/reference/block-kit/blocks): 3,000 chars per section text, 50 blocks per message;
# chat.postMessage truncates `text` past 40,000 chars. We stay well inside them.
SECTION_LIMIT = 2900
MAX_BLOCKS = 45
CODE_BLOCK_LIMIT = 2500  # a fixed config longer than this goes as a file, not a code block

ACTION_WHY = "ask_oom_why"
ACTION_PROBE = "ask_oom_probe"
ACTION_SOLVED = "ask_oom_solved"
ACTION_UNSOLVED = "ask_oom_unsolved"
ACTION_SHOW_DIFF = "ask_oom_show_diff"
ACTIONS: dict[str, Action] = {  # a button's action_id → the typed action the conversation performs
    ACTION_WHY: Action.WHY, ACTION_SHOW_DIFF: Action.SHOW_DIFF, ACTION_PROBE: Action.PROBE,
    ACTION_SOLVED: Action.SOLVED, ACTION_UNSOLVED: Action.STILL_OOM,
}


class SlackFile(BaseModel):
    filename: str
    content: str
    title: str


class SlackMessage(BaseModel):
    """One threaded reply: fallback text, Block Kit blocks, and files to attach in the same thread."""

    text: str
    blocks: list[dict] = Field(default_factory=list)
    files: list[SlackFile] = Field(default_factory=list)


def split_text(text: str, limit: int = SECTION_LIMIT) -> list[str]:
    """Split on line boundaries into chunks of at most `limit` characters (hard-cut overlong lines)."""
    chunks: list[str] = []
    current = ""
    for line in text.splitlines(keepends=True):
        while len(line) > limit:
            if current:
                chunks.append(current)
                current = ""
            chunks.append(line[:limit])
            line = line[limit:]
        if len(current) + len(line) > limit:
            chunks.append(current)
            current = ""
        current += line
    if current:
        chunks.append(current)
    return chunks or [""]


def _section(text: str) -> dict:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def summary_text(d: Diagnosis, language: str | None = "en") -> str:
    """Slack mrkdwn summary: what ran out, the primary cause with its first reason, the key changes, the verdict; the
    fixed words in `language` (assistant/texts.py)."""
    lang = language or "en"
    lines: list[str] = []
    r = d.report
    summary = localized_summary(d, lang)
    if d.status == "no_memory_error":
        lines.append(tr(lang, "sl_no_error", summary=summary).strip())
    else:
        what = r.kind.replace("_", " ")
        req = tr(lang, "sl_allocating", size=format_bytes(r.requested_bytes)) if r.requested_bytes else ""
        phase = tr(lang, "sl_during", phase=r.phase.replace('_', ' ')) if r.phase != "unknown" else ""
        lines.append(f"*{what}*{req}{phase}" + tr(lang, "end"))
        if summary:
            lines.append(summary)
    if d.root_causes:
        top = d.root_causes[0]
        reason = f" — {top.why[0]}" if top.why else ""
        lines.append(tr(lang, "sl_primary", label=top.label, reason=reason))
        if len(d.root_causes) > 1:
            lines.append(tr(lang, "sl_also") + ", ".join(f"`{c.label}`" for c in d.root_causes[1:3]))
    if d.fixes:
        lines.append(tr(lang, "sl_changes"))
        for ch in d.fixes[:6]:
            if ch.key:
                saved = tr(lang, "sl_saves", saved=format_bytes(ch.bytes_saved)) if ch.bytes_saved else ""
                lines.append(f"• `{ch.key}`: {ch.from_value} → {ch.to_value}{saved}")
            elif ch.action:
                lines.append(f"• {ch.action}")
    if d.estimate and d.estimate_after:
        verdict = tr(lang, "sl_fits" if d.fits_after else "sl_not_fit")
        lines.append(tr(lang, "sl_estimate", before=format_bytes(d.estimate.peak_bytes),
                        after=format_bytes(d.estimate_after.peak_bytes), verdict=verdict))
    for q in d.questions[:3]:
        lines.append(f"_{q.text}_")
    for case in d.similar_cases[:2]:
        lines.append(tr(lang, "sl_similar") + (f"<{case.source}|{case.title}>" if case.source.startswith("http")
                                               else f"{case.title} ({case.source})"))
    return "\n".join(lines)


def render_slack(d: Diagnosis, *, markdown: str = "", can_probe: bool = False, language: str | None = "en",
                 follow_up: bool = False) -> SlackMessage:
    """The threaded reply for a diagnosis. `markdown` is the full report, attached when it is long; `language` picks
    the fixed words of the summary, the buttons and the file titles. A `follow_up` that re-planned (a what-if, new
    hardware) shows what changed, the turn's own answer, instead of the whole summary again."""
    lang = language or "en"
    summary = markdown_to_mrkdwn(markdown) if follow_up and markdown else summary_text(d, lang)
    blocks = [_section(chunk) for chunk in split_text(summary)]
    files: list[SlackFile] = []
    if d.fixed_config and not follow_up:
        if len(d.fixed_config) <= CODE_BLOCK_LIMIT:
            blocks.append(_section(f"{tr(lang, 'sl_fixed_config')}\n```{d.fixed_config.rstrip()}```"))
        else:
            files.append(SlackFile(filename=fixed_file_name(d.fixed_config_format), content=d.fixed_config,
                                   title=tr(lang, "sl_fixed_config_title")))
    if d.fixed_deepspeed:
        # the name the fixed config points at, so the file is saved where the config looks for it
        files.append(SlackFile(filename=d.fixed_deepspeed_name or "ds_config.json", content=d.fixed_deepspeed,
                               title=tr(lang, "sl_fixed_deepspeed_title")))
    if markdown and len(markdown) > SECTION_LIMIT:
        files.append(SlackFile(filename="ask-oom-diagnosis.md", content=markdown, title=tr(lang, "sl_full_title")))
    buttons = [_button(tr(lang, "sl_why"), ACTION_WHY)]
    if d.diff:
        buttons.append(_button(tr(lang, "sl_show_diff"), ACTION_SHOW_DIFF))
    if can_probe:
        buttons.append(_button(tr(lang, "sl_probe"), ACTION_PROBE))
    buttons.append(_button(tr(lang, "sl_solved"), ACTION_SOLVED, style="primary"))
    buttons.append(_button(tr(lang, "sl_still_oom"), ACTION_UNSOLVED))
    blocks = blocks[:MAX_BLOCKS]
    blocks.append({"type": "actions", "block_id": "ask_oom_actions", "elements": buttons})
    return SlackMessage(text=split_text(summary, 3000)[0], blocks=blocks, files=files)


def _button(label: str, action_id: str, *, style: str | None = None) -> dict:
    """One Block Kit button; its value is the typed action its action_id maps to (see ACTIONS)."""
    button = {"type": "button", "text": {"type": "plain_text", "text": label}, "action_id": action_id,
              "value": ACTIONS[action_id].value}
    if style:
        button["style"] = style
    return button


_BOLD = re.compile(r"\*\*(.+?)\*\*")
_LINK = re.compile(r"\[([^\]\n]{1,300})\]\((https?://[^)\s]{1,500})\)")
_HEADING = re.compile(r"^#{1,6}\s+(.*)$")


def markdown_to_mrkdwn(markdown: str) -> str:
    """CommonMark → Slack mrkdwn: **bold** → *bold*, [t](u) → <u|t>, headings → bold lines;
    tables (which Slack cannot show) go into a code block; fenced code stays as is."""
    out: list[str] = []
    in_code = in_table = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            in_code = not in_code
            out.append("```")
            continue
        if in_code:
            out.append(line)
            continue
        is_table = line.lstrip().startswith("|")
        if is_table != in_table:
            out.append("```")
            in_table = is_table
        if is_table:
            out.append(line)
            continue
        heading = _HEADING.match(line)
        if heading:
            line = f"**{heading.group(1)}**"
        line = _LINK.sub(lambda m: f"<{m.group(2)}|{m.group(1)}>", _BOLD.sub(r"*\1*", line))
        out.append(line)
    if in_table or in_code:
        out.append("```")
    return "\n".join(out)


def render_slack_text(markdown: str) -> SlackMessage:
    """A plain follow-up answer (why?, show the diff): Markdown in sections, long answers as a file."""
    chunks = split_text(markdown_to_mrkdwn(markdown))
    if len(chunks) > MAX_BLOCKS:
        return SlackMessage(text=chunks[0], blocks=[_section(chunks[0])],
                            files=[SlackFile(filename="ask-oom-answer.md", content=markdown, title="Answer")])
    return SlackMessage(text=chunks[0], blocks=[_section(c) for c in chunks])
