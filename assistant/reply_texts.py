"""The conversation's fixed texts in English and Chinese, the help text, and what to offer or ask next."""

from __future__ import annotations

from .diagnosis import Question
from .intents import UNDERSTOOD
from .reply import Action
from .session import SessionState


def help_text(state: SessionState) -> str:
    """What the assistant understands, with examples, and what it has so far in this conversation."""
    zh = state.language == "zh"
    head = "我能理解这些（中英文都可以）：" if zh else "I understand (English or Chinese):"
    rows = [f"- {example}" for _, example in UNDERSTOOD]
    have = []
    req = state.request
    have.append(("日志" if zh else "log") + (" ✓" if req.log_text else " ✗"))
    have.append(("配置" if zh else "config") + (f" ✓ ({state.main_config})" if state.main_config else " ✗"))
    have.append(("GPU" if zh else "GPU") + (f" ✓ ({(str(req.num_gpus) + ' × ') if req.num_gpus else ''}{req.gpu or ''}"
                                            f"{(' ' + format(req.gpu_memory_gib, 'g') + ' GiB') if req.gpu_memory_gib else ''})"
                                            if (req.gpu or req.gpu_memory_gib or req.num_gpus) else " ?"))
    if req.keep:
        have.append(("约束: " if zh else "keep: ") + ", ".join(req.keep))
    status = ("目前我有：" if zh else "So far I have: ") + "; ".join(have)
    paste = ("粘贴报错日志（或上传 .log 文件）开始诊断；再粘贴训练配置（YAML/JSON/shell）就能得到修改后的配置。" if zh else
             "Paste the error log (or attach the .log file) to start; add your training config (YAML / JSON / shell script) "
             "to get it back fixed.")
    return "\n".join([paste, "", head, *rows, "", status])


_TEXTS = {
    "reset": ("Started over: the log, config, hardware and constraints of this conversation are cleared.",
              "已重新开始：本次会话的日志、配置、硬件和约束都已清空。"),
    "updated": ("Updated: ", "已更新："),
    "solved": ("Glad it works — marked **solved**. This conversation can become a knowledge-base case "
               "(`ask-oom kb ingest --session <id>`).", "太好了，已标记为**已解决**。这段对话可以整理成知识库案例（`ask-oom kb ingest --session <id>`）。"),
    "unsolved": ("Sorry it still fails — marked **not solved**. Paste the new log (its numbers show what changed) "
                 "and I will re-plan from it; say e.g. \"use QLoRA\" or \"what if cutoff_len is 2048?\" to try a stronger change.",
                 "抱歉还是不行，已标记为**未解决**。请粘贴新的日志（其中的数字能说明变化），我会据此重新规划；也可以说“用QLoRA”或“cutoff_len改成2048会怎样”。"),
    "unsolved_replanned": ("Sorry it still fails — marked **not solved**. I re-planned with more headroom below; if it "
                           "still fails, paste the new log (its numbers show what changed).",
                           "抱歉还是不行，已标记为**未解决**。下面按更保守的显存余量重新规划了；如果仍然失败，请粘贴新的日志。"),
    "nothing_yet": ("There is no diagnosis yet to explain: paste the error log first.", "还没有诊断结果可以解释：请先粘贴报错日志。"),
    "no_diff": ("No fixed config yet: paste your training config (YAML / JSON / shell script) and I will rewrite it.",
                "还没有修改后的配置：请粘贴训练配置（YAML/JSON/shell），我来改写。"),
    "no_changes": ("No config changes are planned for this diagnosis (see its notes); this is your config as it stands"
                   " in this conversation.", "这次诊断没有计划修改配置（见诊断说明）；下面是本次会话中的当前配置。"),
    "same_config": ("Your config is unchanged.", "配置没有变化。"),
    "unknown": ("I did not understand that as a request I can act on.", "我没能理解这条消息。"),
    "need_log": ("Noted. Now paste the error log (the traceback with \"out of memory\" and the lines before it).",
                 "已记录。请粘贴报错日志（包含 \"out of memory\" 的 traceback 及其前面的几行）。"),
}


def localized(state: SessionState, key: str) -> str:
    """One of the fixed texts, in the conversation's language."""
    en, zh = _TEXTS[key]
    return zh if state.language == "zh" else en


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
    if state.language == "zh":
        return f"我不认识这个按钮（`{name}`），没有做任何改动。可用的操作：{known}；也可以直接输入问题。"
    return f"I do not know the button `{name}`, so nothing was changed. Buttons I know: {known}; or type your question."


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
