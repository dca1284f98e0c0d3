"""The rule-based answer of a turn in Markdown: what changed, feedback, what-if numbers, the diagnosis or its
explanation, the fixed config or diff, help."""

from __future__ import annotations

from ..tools.configs.schema import fence_language, format_from_filename
from .diagnosis import Diagnosis
from .explain import explain
from .intent_types import Intent
from .reply_texts import help_text, localized
from .session import SessionState
from ..tools.units import format_bytes
from .markdown_text import md_escape_outside_code
from .message_parts import PASTE_TURNS
from .what_if import agent_request, verdict_text, what_if_from_config, what_if_markdown


def compose_markdown(state: SessionState, kind: str, intents: list[Intent], changed: list[str], notes: list[str],
                     new_diagnosis: bool, what_if: dict | None, had_diagnosis: bool, session_id: str = "ID") -> str:
    """The answer to a turn of `kind` from the state after it; `changed` and `notes` say what the turn did.

    A new log or config (or the first diagnosis) gets the full report; a follow-up that re-plans gets only what
    changed (the new numbers and the new diff), so a conversation does not repeat the whole report each turn;
    "show the full report" asks for it."""
    d = state.diagnosis
    out: list[str] = []
    names = {i.name for i in intents}
    if changed and (had_diagnosis or not new_diagnosis):
        out.append(localized(state, "updated") + "; ".join(md_escape_outside_code(c) for c in changed) + localized(state, "end"))
    if "mark_solved" in names:
        out.append(localized(state, "solved", session_id=session_id))
    if "mark_unsolved" in names:
        out.append(localized(state, "unsolved_replanned" if new_diagnosis else "unsolved"))
    said_peak = False  # the what-if line gives the new peak; the follow-up's summary then does not repeat it
    if what_if:
        out.append(what_if_markdown(what_if, state.language))
    elif kind in ("what_if", "switch_method") and new_diagnosis and d is not None and d.estimate is not None:
        out.append(what_if_from_config(state, d))
        said_peak = True
    for n in notes:
        out.append(localized(state, "note", note=md_escape_outside_code(n)))
    full_report = new_diagnosis and (not had_diagnosis or kind in PASTE_TURNS)
    if d is not None and (full_report or "show_report" in names):
        out.append(_render(d, state.language))
    elif new_diagnosis and d is not None:
        if kind == "snapshot":   # what the snapshots held against the prediction: the reason they were given
            from .render import evidence_sections

            out.extend(evidence_sections(d, state.language or "en"))
        out.extend(follow_up_delta(state, d, with_peak=not said_peak))
    elif "show_report" in names:
        out.append(localized(state, "nothing_yet"))
    elif "explain" in names:
        topic = next(i for i in intents if i.name == "explain").slots.get("topic", "")
        out.append(explain(d, topic, state.language) if d else localized(state, "nothing_yet"))
    if "show_diff" in names or "show_config" in names:
        out.extend(show_config(state, diff="show_diff" in names, full="show_config" in names))
    if kind == "help":
        out.append(help_text(state))
    elif kind == "unknown":
        out.append(localized(state, "unknown") + "\n\n" + help_text(state))
    elif not new_diagnosis and not (state.request.log_text or state.configs) and kind not in ("mark_solved", "mark_unsolved"):
        out.append(localized(state, "need_log"))
    return "\n\n".join(x for x in out if x)


def follow_up_delta(state: SessionState, d: Diagnosis, *, with_peak: bool = True) -> list[str]:
    """What a re-planning follow-up changed: the new peak against the budget (unless `with_peak` is False: the
    what-if line said it), the peak after the planned changes, and the new diff, in the conversation's language,
    with how to get the full report."""
    out: list[str] = []
    est = d.estimate
    if est is not None and with_peak:
        line = localized(state, "delta_peak", peak=format_bytes(est.peak_bytes))
        if est.budget_bytes:
            line += localized(state, "delta_budget", budget=format_bytes(est.budget_bytes))
            line += " — " + verdict_text(state.language, est.fits, est.verdict)
        out.append(line + localized(state, "end"))
    after = d.estimate_after
    if after is not None and d.fixes:
        out.append(localized(state, "delta_after", peak=format_bytes(after.peak_bytes),
                             verdict=verdict_text(state.language, d.fits_after, after.verdict)))
    if d.diff.strip():
        out.append(localized(state, "delta_diff") + f"\n```diff\n{d.diff.rstrip()}\n```")
    elif d.fixed_config is not None or state.main_config:
        out.append(localized(state, "delta_no_diff"))
    out.append(localized(state, "delta_hint"))
    return out


def show_config(state: SessionState, *, diff: bool, full: bool) -> list[str]:
    """The diff and/or the config to use: the fixed one; else, with what-ifs and no changes planned,
    the user's config with the what-ifs applied (against the file they gave)."""
    d = state.diagnosis
    if d is None or not state.main_config:
        return [localized(state, "no_diff")]
    out: list[str] = []
    text, fmt = d.fixed_config, d.fixed_config_format
    if not text:
        request, _ = agent_request(state)
        text = request.config_text
        fmt = format_from_filename(state.main_config) or "yaml"   # a file with no telling extension reads as YAML
        out.append(localized(state, "no_changes"))
    original = state.original_configs.get(state.main_config, "")
    if diff:
        from ..tools.configs import unified_diff

        patch = d.diff if d.fixed_config else unified_diff(original, text or "", state.main_config)
        out.append(f"```diff\n{patch}\n```" if patch.strip() else localized(state, "same_config"))
    if full and text:
        out.append(f"```{fence_language(fmt)}\n{text}\n```")
        if d.fixed_deepspeed:
            out.append(f"```json\n{d.fixed_deepspeed}\n```")
    return out


def _render(d: Diagnosis, language: str | None) -> str:
    from .render import render_markdown

    return render_markdown(d, language or "en")
