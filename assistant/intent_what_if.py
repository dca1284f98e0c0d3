"""what_if and switch_method: the config changes a message proposes ("what if cutoff_len is 4096 and batch
size 2?", "use QLoRA"), with the TrainingSetup field each config key sets."""

from __future__ import annotations

import re
from typing import Any

from .intent_constraints import FULL_WORDS
from .intent_types import Intent
from .intent_values import parse_value


# user words → (setup field, canonical config key in LLaMA-Factory / HF naming)
_KEY_SYNONYMS: list[tuple[str, str, str]] = [
    (r"cutoff_len|cutoff[ _]length|cutoff", "seq_len", "cutoff_len"),
    (r"max_seq_length|max_seq_len|model_max_length|max_length|max[ _]len", "seq_len", "max_seq_length"),
    (r"seq(?:uence)?[ _]?len(?:gth)?|context(?:[ _]len(?:gth)?|[ _]window|[ _]size)?|ctx(?:[ _]len)?|序列长度|上下文长度|截断长度|序列|长度", "seq_len", "cutoff_len"),
    (r"per_device_eval_batch_size|eval[ _]batch(?:[ _]size)?|评估batch|验证batch", "eval_batch", "per_device_eval_batch_size"),
    (r"per_device_train_batch_size|train_micro_batch_size_per_gpu|device_train_microbatch_size|micro_batch_size|per_device_batch_size|"
     r"micro[ _-]?batch(?:[ _]size)?|per[ _-]?device(?:[ _]batch(?:[ _]size)?)?|batch[ _]?size|batch|bs|mbs|批大小|批次大小", "micro_batch", "per_device_train_batch_size"),
    (r"gradient_accumulation_steps|grad(?:ient)?[ _]acc(?:um(?:ulation)?)?(?:[ _]steps)?|accumulation(?: steps)?|ga|gas|"
     r"梯度累[积加](?:步数)?|累[积加](?:步数)?", "grad_accum", "gradient_accumulation_steps"),
    (r"gradient_checkpointing|grad(?:ient)?[ _]checkpointing|grad[ _]ckpt|activation[ _]checkpointing|梯度检查点", "gradient_checkpointing", "gradient_checkpointing"),
    (r"lora_rank|lora[ _]r(?:ank)?|rank", "lora_rank", "lora_rank"),
    (r"quantization_bit|quantization|quant(?:ize)?[ _]bits?", "quantization_bit", "quantization_bit"),
    (r"zero[ _]?stage|zero-?|deepspeed[ _]stage|stage|ds|z", "zero_stage", "zero_stage"),
    (r"offload", "offload", "offload"),
    (r"image_max_pixels|max_pixels|图片分辨率|图像分辨率", "image_max_pixels", "image_max_pixels"),
    (r"video_maxlen|video[ _]frames|max_frames|视频帧数", "video_frames", "video_maxlen"),
    (r"optim(?:izer)?|优化器", "optimizer", "optim"),
    (r"flash_attn|attn_implementation|attention", "attn_implementation", "flash_attn"),
    (r"num_gpus|gpus|gpu count|卡数", "num_gpus", "num_gpus"),
]
_BOOL_FIELDS = {"gradient_checkpointing"}
_TEXT_FIELDS = {  # the fields whose value is a name, with what such a name looks like ("and" is not an optimizer)
    "optimizer": re.compile(r"[a-z_]*(?:adam|sgd|lion|adafactor|galore|apollo|muon|lomo|adalomo|badam|rmsprop|"
                            r"lamb|8bit|paged|fused)[\w.-]*"),
    "attn_implementation": re.compile(r"fa2|fa3|flash[\w-]*|sdpa|eager|auto|disabled?|xformers"),
}
_ON_VERBS = r"(?:turn on|turned on|switch on|enable|enabled|activate|use|using|used|tried|try|with|added|add|打开|开启|启用|开了|加了|用了|加上|开)"
_OFF_VERBS = r"(?:turn off|turned off|switch off|disable|disabled|deactivate|关闭|关掉|禁用|关)"
_WHATIF_TRIGGER = re.compile(
    r"what if|what about|how about|what happens|suppose|\bif\b|turn on|turn off|enable|disable|would (?:it |that |this )?fit|fits?\s*\?|够吗|能跑吗|行吗|放得下|if i|if we|would it fit|would that fit|try\b|set\b|change\b|use\b|with\b|"
    r"\bwould\b|\bcould\b|\bwill\b|\bshould i\b|\bcan i\b|\binstead\b|\blower\b|\braise\b|\bdrop\b|\bgo with\b|\bhelp\b|\?\s*$|"
    r"会怎样|会怎么样|会如何|怎么样|呢|如果|假如|假设|要是|试试|试一下|改成|改为|设为|设成|设置为|调到|调成|调为|变成|换成|降到|减到|砍到|缩到|改到|"
    r"会不会|能不能|能否|可以吗|行不行|能省|省多少|会爆|够不够|[?？]\s*$", re.I)
_VALUE = r"(?P<val>(?:zero[-_ ]?[0-3])|[48][-_ ]?bits?|[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?\s*[kK]?(?![a-z0-9_.])|true|false|on|off|开启|关闭|打开|关掉|[a-z][\w.-]*)"
_LINK = (r"\s*(?:=|:|：|->|→|is|are|to|of|at|was|were|becomes?|down to|up to|改成|改为|设为|设成|设置为|调到|调成|调为|变成|换成|"
         r"降到|减到|砍到|缩到|改到|提到|降为|减为|为|是|of)?\s*")


# ZeRO stages as people write them: zero3, z3, stage3, ZeRO-2, ds3, zero3.json, ds_z3_offload_config.json
_STAGE = re.compile(r"(?<![a-z0-9])(?:deepspeed[\s_-]*)?(?:zero|z|ds|stage)[\s_-]*(?:stage[\s_-]*)?(?P<n>[0-3])(?![0-9])|"
                    r"ds_z(?P<n2>[0-3])(?![0-9])", re.I)
_NOT_THIS = re.compile(r"(?:instead of|rather than|\bnot|\bfrom|\bthan|不是|而不是|比|从|不用)\s*(?:the\s+|用)?$", re.I)
_CHANGE_TO = re.compile(r"(?:换成|改成|改为|换为|切到|切换到|升到|\bto|->|→|\bthen|\bswitch(?:ing)? to|\bgo(?:ing)? to|\bmove to)\s*(?:the\s+)?$", re.I)
# offload as people say it → the what-if's value: optimizer (ZeRO-Offload), all (optimizer and parameters), none
_OFFLOAD_NONE = re.compile(r"\bno\s+(?:cpu\s+)?offload|without\s+(?:any\s+)?(?:cpu\s+)?offload|offload(?:ing)?\s+(?:off|disabled)|"
                           r"(?:don't|do not|not)\s+offload|(?:不开|不用|关闭|关掉|不要|不做|不|没开|取消)\s*(?:cpu\s*)?offload", re.I)
_OFFLOAD_OPTIMIZER = re.compile(r"offload(?:ing)?\s+(?:just\s+|only\s+)?(?:the\s+)?optim\w*|optim\w*(?:\s+state)?s?\s+offload|offload_optimizer|"
                                r"(?:只|仅)\s*offload\s*(?:了)?\s*优化器|offload\s*优化器|优化器\s*offload", re.I)
_OFFLOAD_ALL = re.compile(r"offload(?:ing)?\s+(?:everything|all|both|(?:the\s+)?param(?:eter)?s?|(?:optimizer|optim)\s+and\s+param\w*)|"
                          r"param(?:eter)?s?\s+(?:too\s+|also\s+)?offload|offload_param|全开|全部\s*offload|offload\s*全部|参数\s*[也都]?\s*offload|offload\s*参数|"
                          r"\bz(?:ero)?[-_ ]?3[\w-]*\s*(?:\+\s*)?(?:with\s+)?(?:cpu\s+)?offload|ds_z3_offload", re.I)
_OFFLOAD = re.compile(r"offload", re.I)
# "8bit", "int8", "8-bit quantization" (not an 8-bit optimizer)
_EIGHT_BIT = re.compile(r"(?<![a-z0-9_.])(?:8[-_ ]?bits?|int8|8比特)(?![a-z0-9_])(?!\s*(?:adam|optim|优化器))", re.I)
_FROM_TO = re.compile(r"from\s+(\d+(?:\.\d+)?\s*k?)\s+(?:down\s+|up\s+)?to\s+(?=\d)|"
                      r"从\s*(\d+(?:\.\d+)?\s*k?)\s*(?:降到|减到|改到|调到|改成|改为|降为|减为|缩到|砍到|提到|到)\s*(?=\d)", re.I)


def _stage_said(low: str) -> tuple[int, re.Match] | None:
    """The ZeRO stage a message proposes: 'zero2换成zero3' and 'from zero2 to zero3' → 3, 'zero3 instead of zero2' → 3."""
    kept = [m for m in _STAGE.finditer(low) if not _NOT_THIS.search(low[max(0, m.start() - 14): m.start()])]
    if not kept:
        return None
    changed = [m for m in kept if _CHANGE_TO.search(low[max(0, m.start() - 14): m.start()])]
    m = (changed or kept)[0]
    return int(m.group("n") or m.group("n2")), m


def _offload_said(low: str, stage: int | None) -> tuple[str, re.Match] | None:
    """The offload a message proposes: 'none', 'optimizer' or 'all' ('zero3 offload' → all, 'ZeRO-2 offload' → optimizer)."""
    for pattern, value in ((_OFFLOAD_NONE, "none"), (_OFFLOAD_OPTIMIZER, "optimizer"), (_OFFLOAD_ALL, "all")):
        m = pattern.search(low)
        if m:
            return value, m
    m = _OFFLOAD.search(low)
    if m:
        return ("all" if stage == 3 else "optimizer"), m
    return None


def what_if_intents(text: str, *, force: bool = False) -> list[Intent]:
    """Every key=value a what-if message sets ("what if cutoff_len is 4096 and batch size 2?"), one per setting.
    `force`: read the settings even without a what-if word (a still-OOM / solved report naming what it now runs)."""
    low = _FROM_TO.sub(" to ", text.lower())
    if not force and not _WHATIF_TRIGGER.search(low):
        return []
    found: list[tuple[int, Intent]] = []
    taken: list[tuple[int, int]] = []
    fields: set[str] = set()

    def add(m: re.Match, slots: dict[str, Any]) -> None:
        found.append((m.start(), Intent(name="what_if", slots=slots, evidence=m.group(0))))
        taken.append(m.span())
        if slots["field"]:
            fields.add(slots["field"])

    def free(m: re.Match) -> bool:
        return all(m.end() <= a or m.start() >= b for a, b in taken)

    stage = _stage_said(low)
    if stage is not None:
        add(stage[1], {"key": "zero_stage", "field": "zero_stage", "value": stage[0]})
    offload = _offload_said(low, stage[0] if stage else None)
    if offload is not None:
        add(offload[1], {"key": "offload", "field": "offload", "value": offload[0]})
    eight = _EIGHT_BIT.search(low)
    if eight is not None and free(eight):
        add(eight, {"key": "quantization_bit", "field": "quantization_bit", "value": 8})
    for pattern, field, key in _KEY_SYNONYMS:
        if field not in _BOOL_FIELDS:
            continue
        m = re.search(r"(?P<verb>" + _OFF_VERBS + "|" + _ON_VERBS + r")\s*(?:the\s+)?(?P<key>" + pattern + r")(?![a-z_])", low)
        if m:
            on = bool(re.fullmatch(_ON_VERBS, m.group("verb")))
            said = re.match(r"\s*(?:=|:|is|to)?\s*(?P<v>on|off|true|false|enabled|disabled|开启|关闭|打开|关掉)", low[m.end():])
            if said:
                on = said.group("v") in ("on", "true", "enabled", "开启", "打开")
            add(m, {"key": key, "field": field, "value": on})
    for pattern, field, key in _KEY_SYNONYMS:
        if field in fields or field == "offload":
            continue
        for m in re.finditer(r"(?<![a-z_])(?P<key>" + pattern + r")(?![a-z_])" + _LINK + _VALUE, low):
            val = parse_value(m.group("val"))
            if not free(m) or not valid_value(field, val):
                continue  # "batch is the problem", "optimizer and params" are not what-ifs
            raw_key = m.group("key")
            user_key = raw_key if re.fullmatch(r"[a-z_]+", raw_key) and "_" in raw_key else key
            add(m, {"key": user_key, "field": field, "value": val})
            break
    # a length said before its word: "16k ctx", "to 4k context", "2048 tokens"
    if "seq_len" not in fields:
        m = re.search(r"(?<![\w.])(?P<val>\d+(?:\.\d+)?\s*k?)\s*(?:tokens?\s*)?(?:ctx|context(?:[ _]len(?:gth)?)?|seq(?:uence)?[ _]?len(?:gth)?|上下文|的?长度)(?![a-z])", low)
        if m and free(m) and valid_value("seq_len", parse_value(m.group("val"))):
            add(m, {"key": "cutoff_len", "field": "seq_len", "value": parse_value(m.group("val"))})
    # any other config-looking key=value ("lora_target=all", "--max_grad_norm 0.5")
    for m in re.finditer(r"(?:--)?(?P<key>[a-z][a-z0-9]*(?:_[a-z0-9]+)+)\s*(?:=|:|\s+to\s+|\s+is\s+|改成|设为|\s)\s*" + _VALUE, low):
        if free(m) and setup_field(m.group("key")) not in fields and valid_value(setup_field(m.group("key")), parse_value(m.group("val"))):
            add(m, {"key": m.group("key"), "field": setup_field(m.group("key")), "value": parse_value(m.group("val"))})
    return [intent for _, intent in sorted(found, key=lambda x: x[0])]


def valid_value(field: str | None, value: Any) -> bool:
    """Whether `value` can be a what-if's value for `field`: never negative, a ZeRO stage is 0-3, a name field
    (optimizer, attention) holds a name of its kind, other known fields hold numbers or booleans."""
    if isinstance(value, bool):
        return field not in _TEXT_FIELDS
    if isinstance(value, (int, float)):
        if value < 0 or value != value:  # negative or NaN
            return False
        return not (field == "zero_stage" and value not in (0, 1, 2, 3)) and field not in _TEXT_FIELDS
    if field in _TEXT_FIELDS:
        return bool(_TEXT_FIELDS[field].fullmatch(str(value)))
    return field is None and bool(re.fullmatch(r"[a-z][\w.-]*", str(value))) and str(value) not in _NOT_VALUES


_NOT_VALUES = {"and", "or", "the", "a", "an", "to", "of", "is", "it", "with", "on", "in", "for", "but", "then", "so"}


# The public name of each what-if setting (LLaMA-Factory / Hugging Face keys): whatever the user called it
# ("max_seq_length", "ctx", "bs", "ga", "z3"), the conversation's state records it under this one key.
PUBLIC_KEYS: dict[str, str] = {
    "seq_len": "cutoff_len", "micro_batch": "per_device_train_batch_size", "grad_accum": "gradient_accumulation_steps",
    "zero_stage": "zero_stage", "gradient_checkpointing": "gradient_checkpointing", "lora_rank": "lora_rank",
    "quantization_bit": "quantization_bit", "offload": "offload", "eval_batch": "per_device_eval_batch_size",
}


def public_key(key: str) -> str:
    """The key a what-if is recorded under: 'max_seq_length' → 'cutoff_len', 'bs' → 'per_device_train_batch_size'
    (a key of no known setting stays as the user wrote it)."""
    return PUBLIC_KEYS.get(setup_field(key) or "", key)


def setup_field(key: str) -> str | None:
    """The TrainingSetup field a config key (or a user's word for it) sets: 'cutoff_len' → 'seq_len'."""
    low = key.lower().strip()
    for pattern, field, _ in _KEY_SYNONYMS:
        if re.fullmatch(pattern, low):
            return field
    return None


# -- switch_method ------------------------------------------------------------------------------


_METHODS = [(r"q[- ]?lora|4[- ]?bit|4比特|四比特|量化", "qlora"), (r"(?<!q)(?<!q-)lora|peft|adapter", "lora"),
            (r"freeze|冻结", "freeze"), (FULL_WORDS, "full")]
_SWITCH = re.compile(r"(?:use|using|switch(?:ing)?(?: \w+)? to|try|go with|change to|move to|instead|rather|let's do|do|prefer|"
                     r"改用|用|换成|换用|试试|切换到|切换成|改成|采用|使用)", re.I)


# a method word that names a setting, not a method: "lora rank", "lora_r", "lora_alpha", "lora target"
_METHOD_AS_KEY = re.compile(r"^[\s_-]*(?:rank|r(?![a-z])|alpha|target|dropout|modules|module|秩|层)", re.I)
_METHOD_NEGATED = re.compile(r"(?:\bnot|\bno|don't|without|can't|cannot|won't|instead of|rather than|from|不|别|而不是|不是|从)\s*"
                             r"(?:(?:use|using|switch to|go with|move to|do|go to|change to)\s+|用|做)?$", re.I)


def switch_method_intent(text: str, keep: list[str]) -> Intent | None:
    """switch_method from 'use QLoRA instead' / '用QLoRA'; a method the `keep` constraints rule out is skipped, and so
    is a negated one ('full finetuning instead of lora' → full) and a method word naming a setting ('lora rank')."""
    low = text.lower()
    if not _SWITCH.search(low):
        return None
    mentions: list[tuple[int, str, re.Match]] = []
    for pattern, method in _METHODS:
        if method in ("full", "lora", "qlora") and "full" in keep:
            continue
        for m in re.finditer(pattern, low):
            if _METHOD_AS_KEY.match(low[m.end():]) or _METHOD_NEGATED.search(low[max(0, m.start() - 16): m.start()]):
                continue
            mentions.append((m.start(), method, m))
            break
    if not mentions:
        return None
    # the first method said ("qlora 4bit" is one method: QLoRA)
    start, method, m = min(mentions, key=lambda x: (x[0], x[1] != "qlora"))
    if method == "lora" and any(x[1] == "qlora" for x in mentions):
        method = "qlora"
    return Intent(name="switch_method", slots={"method": method}, evidence=m.group(0))
