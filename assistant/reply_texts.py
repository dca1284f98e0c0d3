"""The conversation's fixed texts in English and Chinese, the help text, and what to offer or ask next."""

from __future__ import annotations

from .diagnosis import Question
from .intents import UNDERSTOOD
from .reply import Action
from .session import SessionState
from .texts import tr


def help_text(state: SessionState) -> str:
    """What the assistant understands, with examples, and what it has so far in this conversation."""
    lang = state.language
    rows = [f"- {example}" for _, example in UNDERSTOOD]
    req = state.request
    have = [tr(lang, "help_log") + (" ✓" if req.log_text else " ✗"),
            tr(lang, "help_config") + (f" ✓ ({state.main_config})" if state.main_config else " ✗"),
            "GPU" + (f" ✓ ({(str(req.num_gpus) + ' × ') if req.num_gpus else ''}{req.gpu or ''}"
                     f"{(' ' + format(req.gpu_memory_gib, 'g') + ' GiB') if req.gpu_memory_gib else ''})"
                     if (req.gpu or req.gpu_memory_gib or req.num_gpus) else " ?")]
    if req.host_ram_gib:
        have.append(f"{tr(lang, 'help_host_ram')} ✓ ({req.host_ram_gib:g} GiB)")
    if req.keep:
        have.append(tr(lang, "help_keep") + ", ".join(req.keep))
    status = tr(lang, "help_status") + "; ".join(have)
    return "\n".join([tr(lang, "help_paste"), "", tr(lang, "help_head"), *rows, "", status])


def localized(state: SessionState, text_key: str, /, **values: object) -> str:
    """One of the fixed texts (see texts.py), in the conversation's language, formatted with `values`."""
    return tr(state.language, text_key, **values)


_ACTION_TEXTS = {
    Action.WHY: ("why?", "为什么？"),
    Action.SHOW_DIFF: ("show the diff again", "再给我看一下diff"),
    Action.SOLVED: ("it worked", "解决了"),
    Action.STILL_OOM: ("still OOM", "还是OOM"),
    Action.PROBE: ("run the live probe", "实测一下"),
}


def action_text(state: SessionState, action: Action) -> str:
    """What a button click says, in the conversation's language (its history entry and its suggestion chip)."""
    en, zh = _ACTION_TEXTS[action]
    return zh if state.language == "zh" else en


def unknown_action(state: SessionState, name: str) -> str:
    """The answer to a button this version does not know (an old message, a stray client), in the session's language."""
    name = name.replace("`", "'")[:80]
    known = ", ".join(action_text(state, a) for a in Action)
    return localized(state, "unknown_action", name=name, known=known)


def suggestions(state: SessionState) -> list[str]:
    """Follow-up prompts that make sense now (the UIs show them as buttons)."""
    return [text for text, _ in _suggested(state)]


def suggestion_actions(state: SessionState) -> dict[str, Action]:
    """The suggestions that are typed actions, by their text: a UI sends the action so no parser reads the chip."""
    return {text: action for text, action in _suggested(state) if action is not None}


def _suggested(state: SessionState) -> list[tuple[str, Action | None]]:
    """Follow-up prompts that make sense now, each with the action it performs (None: free text for the parser)."""
    zh = state.language == "zh"
    d = state.diagnosis
    req = state.request
    why = (action_text(state, Action.WHY), Action.WHY)
    help_ = ("帮助" if zh else "help", None)
    if not req.log_text and not state.configs:
        return [help_]
    if d is None or d.status == "no_memory_error":
        return [why, help_]
    out: list[tuple[str, Action | None]] = [why]
    if d.diff:
        out.append((action_text(state, Action.SHOW_DIFF), Action.SHOW_DIFF))
    if not (req.gpu or req.gpu_memory_gib) and (d.setup.gpu is None):
        out.append(("我有4张A100 40G" if zh else "I have 4x A100 40GB", None))
    if d.setup.method == "full" and "full" not in req.keep:
        out.append(("必须全量微调" if zh else "I must keep full fine-tuning", None))
        out.append(("用QLoRA" if zh else "use QLoRA instead", None))
    seq_prov = d.setup.provenance.get("seq_len")
    if d.setup.seq_len >= 1024 and seq_prov is not None and seq_prov.origin != "default":
        half = d.setup.seq_len // 2
        out.append((f"cutoff_len改成{half}会怎样" if zh else f"what if cutoff_len is {half}?", None))
    out.append((action_text(state, Action.SOLVED), Action.SOLVED))
    out.append((action_text(state, Action.STILL_OOM), Action.STILL_OOM))
    return out[:7]


def needs(state: SessionState) -> list[Question]:
    """What the assistant still needs from the user: the diagnosis' questions, or the log to start with."""
    d = state.diagnosis
    if d is not None:
        return list(d.questions)
    if not state.request.log_text and not state.configs:
        return [Question(slot="other", text="Paste the error log (the traceback with 'out of memory' and the lines before it).")]
    return []
