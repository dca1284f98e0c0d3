"""How one turn changes the session state: a pasted log / config joins it, and each follow-up intent
(hardware, constraints, what-ifs, method, undo, feedback) updates the request the agent re-plans from."""

from __future__ import annotations

from ..tools.errors import InputError
from ..tools.gpus import gpu_family, sized_variant
from .diagnosis import StatedFact
from .intent_types import Intent
from .intent_what_if import public_key, setup_field
from .message_parts import MessagePart, config_name_for, is_deepspeed_config, referenced_deepspeed
from .session import Feedback, SessionState
from .texts import tr
from .what_if import what_if_values


MAX_LOG_CHARS = 4 * 1024 * 1024   # the stored log keeps its last 4 MiB (the error is at the end)
MAX_CONFIG_CHARS = 2 * 1024 * 1024  # same limit as the CLI's config reader
MAX_CONFIGS = 8
MARGIN_STEP = 0.10   # each "still OOM" leaves 10% more of the GPU unplanned (the estimate was optimistic)
MIN_MARGIN = 0.60
_VALID_KEEP = ("full", "seq", "batch", "no-deepspeed", "effective_batch", "model")


def absorb_part(state: SessionState, part: MessagePart) -> str:
    """Put a log / config / model config.json into the state; returns what changed, in words."""
    req = state.request
    if part.kind == "model_config":
        req.model_config_json = part.text[:MAX_CONFIG_CHARS]
        return tr(state.language, "ch_model_config")
    if part.kind == "log":
        text = part.text
        if req.log_text and not (_has_memory_error(text) and _has_memory_error(req.log_text)):
            # a continuation (split paste, an nvidia-smi table) joins the log; a new OOM replaces it
            text = req.log_text + "\n" + text
        req.log_truncated = part.truncated or len(text) > MAX_LOG_CHARS
        req.log_text = text[-MAX_LOG_CHARS:]
        return tr(state.language, "ch_log")
    text = part.text
    if len(text) > MAX_CONFIG_CHARS or part.truncated:
        raise InputError(f"config too large: {len(text) / 2**20:.1f} MiB (limit {MAX_CONFIG_CHARS / 2**20:.0f} MiB); "
                         "attach the training config itself, not a data file")
    name = part.name or config_name_for(text)
    if is_deepspeed_config(name, text) and part.name is None:
        main = state.configs.get(state.main_config or "")
        ref = referenced_deepspeed(main) if main else None
        name = ref or name
    state.configs[name] = text
    state.original_configs[name] = text
    while len(state.configs) > MAX_CONFIGS:
        oldest = next(iter(state.configs))
        state.configs.pop(oldest)
        state.original_configs.pop(oldest, None)
    if not is_deepspeed_config(name, text) or state.main_config is None:
        state.main_config = name
        state.overrides.clear()
        state.margin = None  # a new config starts a new plan; what-ifs were about the old one
    return tr(state.language, "ch_config", name=name)


def apply_intent(state: SessionState, intent: Intent, *, default_margin: float, new_log: bool = False) -> str | None:
    """Apply one follow-up intent to the state; returns what changed, in words (None: nothing to say).
    `default_margin` is the planning margin a "still OOM" tightens when the session has none of its own."""
    req = state.request
    s = intent.slots
    lang = state.language
    if intent.name == "set_hardware":
        said = []
        if s.get("gpu") or s.get("gpu_text"):
            name = s.get("gpu") or s.get("gpu_text")
            if s.get("bare") and req.gpu and gpu_family(req.gpu) == gpu_family(name):
                name = req.gpu   # a bare "A100" never overrides the A100 variant already known
            elif s.get("bare") and not req.gpu and req.gpu_memory_gib and (v := sized_variant(name, req.gpu_memory_gib)):
                name = v.name    # "A100" after "each card has 80GB": the variant with that memory
            if name != req.gpu:
                req.gpu = name
                req.gpu_memory_gib = s.get("memory_gib")
            elif s.get("memory_gib"):
                req.gpu_memory_gib = s["memory_gib"]
            said.append(req.gpu + (f" ({s['memory_gib']:g} GiB)" if s.get("memory_gib") else ""))
        elif s.get("memory_gib"):
            variant = sized_variant(req.gpu, s["memory_gib"]) if req.gpu else None
            if variant is not None:
                req.gpu, req.gpu_memory_gib = variant.name, None   # "the 80G ones" of a known A100 → A100-80GB
            else:
                req.gpu_memory_gib = s["memory_gib"]
            said.append(tr(lang, "ch_per_gpu", gib=f"{s['memory_gib']:g}"))
        if s.get("count"):
            req.num_gpus = int(s["count"])
            said.insert(0, f"{req.num_gpus} ×")
        if s.get("nodes"):
            said.append(f"× {int(s['nodes'])} nodes")
        _set_nodes(req, s.get("nodes"))
        return tr(lang, "ch_hardware", what=" ".join(said))
    if intent.name == "set_host_ram":
        req.host_ram_gib = float(s["host_ram_gib"])
        return tr(lang, "ch_host_ram", gib=f"{req.host_ram_gib:g}")
    if intent.name == "keep_constraint":
        for k in s.get("keep", []):
            if k in _VALID_KEEP and k not in req.keep:
                req.keep.append(k)
            if k == "full" and state.method not in (None, "full"):
                state.method = None
        return tr(lang, "ch_keep", keep=", ".join(req.keep))
    if intent.name == "release_constraint":
        req.keep = [k for k in req.keep if k not in s.get("release", [])]
        return tr(lang, "ch_released", released=", ".join(s.get("release", [])))
    if intent.name == "what_if":
        key = public_key(s["key"])
        field = setup_field(key)
        for other in [k for k in state.overrides if k != key and field is not None and setup_field(k) == field]:
            state.overrides.pop(other)   # "max_seq_length" said before "cutoff_len": one setting, one what-if
        state.overrides[key] = s["value"]
        return tr(lang, "ch_what_if", key=key, value=s["value"])
    if intent.name == "undo":
        dropped = what_if_values(state)
        state.overrides.clear()
        state.method = None
        state.margin = None
        return tr(lang, "ch_undo") + (tr(lang, "ch_dropped", dropped=", ".join(dropped)) if dropped else "")
    if intent.name == "switch_method":
        state.method = s["method"]
        if s["method"] != "full" and "full" in req.keep:
            req.keep.remove("full")
        return tr(lang, "ch_method", method=s["method"])
    if intent.name in ("mark_solved", "mark_unsolved"):
        state.feedback.append(Feedback(solved=intent.name == "mark_solved", note=s.get("note", "")))
        if intent.name == "mark_unsolved" and not new_log and state.diagnosis is not None and state.diagnosis.fixes:
            # the plan fit on paper but not on the GPU: re-plan with more headroom (a new log instead
            # brings the real numbers of the new failure, which the agent reads)
            current = state.margin or default_margin
            state.margin = round(max(MIN_MARGIN, current - MARGIN_STEP), 2)
            if state.margin < current:
                return tr(lang, "ch_margin", before=f"{current:.0%}", after=f"{state.margin:.0%}")
        return None
    return None


def _set_nodes(req, nodes: int | None) -> None:
    """Record a stated node count (a `num_nodes` fact); with nodes known, the data-parallel world is the GPUs per node
    (`num_gpus`, as the user says it) times the nodes, stated as a `num_gpus` fact the setup applies last."""
    if nodes:
        req.facts = [f for f in req.facts if f.field != "num_nodes"]
        req.facts.append(StatedFact(field="num_nodes", value=int(nodes), said="nodes stated in the conversation"))
    stated = next((f for f in reversed(req.facts) if f.field == "num_nodes"), None)
    req.facts = [f for f in req.facts if not (f.field == "num_gpus" and f.said == _WORLD_SAID)]
    if stated is not None and req.num_gpus:
        req.facts.append(StatedFact(field="num_gpus", value=int(req.num_gpus) * int(stated.value), said=_WORLD_SAID))


_WORLD_SAID = "GPUs per node x nodes stated in the conversation"


def _has_memory_error(text: str) -> bool:
    from ..tools.log_parser import parse_log

    return parse_log(text).is_memory_error
