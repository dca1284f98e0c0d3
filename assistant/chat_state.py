"""The conversation's state as scripts and evaluations see it: one mapping from the internal SessionState (the
request's hardware, the what-if overrides, the constraints) and the internal intent names to a small public
vocabulary, so `ask-oom chat --json` and an evaluation of follow-up messages read the same words.

The vocabularies are data: change a public name here and every reader follows."""

from __future__ import annotations

import re
from typing import Any, Iterable

from .session import Session, SessionState

# The keys of the public state object, in order.
STATE_KEYS: tuple[str, ...] = ("gpus", "nodes", "gpu_memory_gib", "gpu_name", "host_ram_gib", "what_if", "keep", "last_intent")

# What the user said must stay, in public words.
KEEP_VOCABULARY: tuple[str, ...] = ("seq_len", "batch", "effective_batch", "full_finetuning", "deepspeed", "model")
# internal constraint (DiagnoseRequest.keep) → public word; effective_batch and model have no internal constraint yet
KEEP_PUBLIC: dict[str, str] = {"seq": "seq_len", "batch": "batch", "full": "full_finetuning", "no-deepspeed": "deepspeed"}

# What the last turn was, in public words.
INTENT_VOCABULARY: tuple[str, ...] = ("hardware", "host_ram", "constraint", "what_if", "why", "still_oom", "solved", "show",
                                      "probe", "other")
# internal intent name (assistant/intent_types.IntentName) → public word; anything else (a log, a config, help, reset,
# an unknown message) is "other"
INTENT_PUBLIC: dict[str, str] = {
    "set_hardware": "hardware", "set_host_ram": "host_ram",
    "keep_constraint": "constraint", "release_constraint": "constraint",
    "what_if": "what_if", "switch_method": "what_if", "undo": "what_if",
    "explain": "why", "mark_unsolved": "still_oom", "mark_solved": "solved",
    "show_diff": "show", "show_config": "show", "show_report": "show",
    "run_probe": "probe",
}
OTHER_INTENT = "other"

# What-if keys in public words: one canonical key per setting (the intent reader's own keys otherwise, LLaMA-Factory /
# HF names; a ZeRO stage is zero_stage), and a method switch as the LLaMA-Factory keys that make it.
WHAT_IF_PUBLIC: dict[str, str] = {"max_seq_length": "cutoff_len"}
METHOD_PUBLIC: dict[str, dict[str, Any]] = {
    "qlora": {"finetuning_type": "lora", "quantization_bit": 4},
    "lora": {"finetuning_type": "lora"},
    "full": {"finetuning_type": "full"},
    "freeze": {"finetuning_type": "freeze"},
}

_NOMINAL_GIB = re.compile(r"(\d{2,3})\s*GB\b", re.IGNORECASE)  # "A100-40GB" → 40: the size the card is sold as


def public_intent(name: str | None) -> str:
    """The public word for one internal intent name ('other' for anything not in INTENT_PUBLIC)."""
    return INTENT_PUBLIC.get(name or "", OTHER_INTENT)


def public_what_if(overrides: dict[str, Any], method: str | None = None) -> dict[str, Any]:
    """The what-ifs in public words (WHAT_IF_PUBLIC), a method switch as its config keys (METHOD_PUBLIC; an unknown
    method as `finetuning_type`); a what-if the user gave wins over the method's key."""
    out: dict[str, Any] = dict(METHOD_PUBLIC.get(method, {"finetuning_type": method})) if method else {}
    for key, value in overrides.items():
        out[WHAT_IF_PUBLIC.get(key, key)] = value
    return out


def public_keep(keep: Iterable[str]) -> list[str]:
    """The public words for internal constraints, in the order given, without duplicates."""
    out: list[str] = []
    for k in keep:
        word = KEEP_PUBLIC.get(k, k if k in KEEP_VOCABULARY else None)
        if word and word not in out:
            out.append(word)
    return out


def public_state(session_or_state: Session | SessionState, last_intents: Iterable[Any] | None = None) -> dict[str, Any]:
    """The public state of a conversation: {gpus, nodes, gpu_memory_gib, gpu_name, host_ram_gib, what_if, keep,
    last_intent} (STATE_KEYS).

    Hardware is what the user stated in the conversation (None when unsaid; the diagnosis has what the log and the
    config show); `gpu_memory_gib` is the stated memory, else the size in the named card's name ("A100-40GB" → 40);
    `nodes` is a stated node count ("2 nodes x 8", "2机16卡"; None when unsaid); `what_if` maps config keys to the values asked
    for (public_what_if: a ZeRO stage as `zero_stage`, "use QLoRA" as finetuning_type lora + quantization_bit 4);
    `keep` uses KEEP_VOCABULARY. `last_intents` are
    the last turn's intents (Intent objects or names; the first that maps to a public word other than 'other' wins);
    None reads the last user turn of the history."""
    state = session_or_state.state if isinstance(session_or_state, Session) else session_or_state
    req = state.request
    what_if = public_what_if(state.overrides, state.method)
    return {
        "gpus": req.num_gpus,
        "nodes": _stated_nodes(state),
        "gpu_memory_gib": _gpu_memory_gib(req.gpu, req.gpu_memory_gib),
        "gpu_name": req.gpu,
        "host_ram_gib": req.host_ram_gib,
        "what_if": what_if,
        "keep": public_keep(req.keep),
        "last_intent": _last_intent(state, last_intents),
    }


def _last_intent(state: SessionState, last_intents: Iterable[Any] | None) -> str:
    if last_intents is None:
        turn = next((t for t in reversed(state.history) if t.role == "user"), None)
        names = [turn.intent] if turn is not None else []
    else:
        names = [getattr(i, "name", i) for i in last_intents]
    words = [public_intent(n) for n in names]
    return next((w for w in words if w != OTHER_INTENT), OTHER_INTENT)


def _gpu_memory_gib(gpu: str | None, stated: float | None) -> float | None:
    if stated:
        return float(stated)
    if not gpu:
        return None
    m = _NOMINAL_GIB.search(gpu)
    if m:
        return float(m.group(1))
    from ..tools.gpus import lookup_gpu
    from ..tools.units import GiB

    spec = lookup_gpu(gpu)
    return round(spec.memory_bytes / GiB, 2) if spec is not None and spec.memory_bytes else None


def _stated_nodes(state: SessionState) -> int | None:
    fact = next((f for f in reversed(state.request.facts) if f.field == "num_nodes"), None)
    return int(fact.value) if fact is not None and isinstance(fact.value, (int, float)) else None


__all__ = ["INTENT_PUBLIC", "INTENT_VOCABULARY", "KEEP_PUBLIC", "KEEP_VOCABULARY", "METHOD_PUBLIC", "OTHER_INTENT",
           "STATE_KEYS", "WHAT_IF_PUBLIC", "public_intent", "public_keep", "public_state", "public_what_if"]
