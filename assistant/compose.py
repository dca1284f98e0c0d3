"""The rule-based answer of a turn in Markdown: what changed, feedback, what-if numbers, the diagnosis or its
explanation, the fixed config or diff, help."""

from __future__ import annotations

from ..tools.configs.schema import fence_language, format_from_filename
from .diagnosis import Diagnosis
from .explain import explain
from .intent_types import Intent
from .reply_texts import help_text, localized
from .session import SessionState
from .what_if import agent_request, what_if_from_config, what_if_markdown


def compose_markdown(state: SessionState, kind: str, intents: list[Intent], changed: list[str], notes: list[str],
                     new_diagnosis: bool, what_if: dict | None, had_diagnosis: bool) -> str:
    """The answer to a turn of `kind` from the state after it; `changed` and `notes` say what the turn did."""
    d = state.diagnosis
    out: list[str] = []
    if changed and (had_diagnosis or not new_diagnosis):
        out.append(localized(state, "updated") + "; ".join(changed) + ".")
    names = {i.name for i in intents}
    if "mark_solved" in names:
        out.append(localized(state, "solved"))
    if "mark_unsolved" in names:
        out.append(localized(state, "unsolved_replanned" if new_diagnosis else "unsolved"))
    if what_if:
        out.append(what_if_markdown(what_if))
    elif kind in ("what_if", "switch_method") and new_diagnosis and d is not None and d.estimate is not None:
        out.append(what_if_from_config(state, d))
    for n in notes:
        out.append(f"> note: {n}")
    if new_diagnosis and d is not None:
        out.append(_render(d))
    elif "explain" in names:
        out.append(explain(d, next(i for i in intents if i.name == "explain").slots.get("topic", "")) if d else localized(state, "nothing_yet"))
    if "show_diff" in names or "show_config" in names:
        out.extend(show_config(state, diff="show_diff" in names, full="show_config" in names))
    if kind == "help":
        out.append(help_text(state))
    elif kind == "unknown":
        out.append(localized(state, "unknown") + "\n\n" + help_text(state))
    elif not new_diagnosis and not (state.request.log_text or state.configs) and kind not in ("mark_solved", "mark_unsolved"):
        out.append(localized(state, "need_log"))
    return "\n\n".join(x for x in out if x)


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


def _render(d: Diagnosis) -> str:
    from .render import render_markdown

    return render_markdown(d)
