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
    (r"seq(?:uence)?[ _]?len(?:gth)?|context(?:[ _]length|[ _]window|[ _]size)?|序列长度|上下文长度|截断长度|长度", "seq_len", "cutoff_len"),
    (r"per_device_eval_batch_size|eval[ _]batch(?:[ _]size)?|评估batch|验证batch", "eval_batch", "per_device_eval_batch_size"),
    (r"per_device_train_batch_size|train_micro_batch_size_per_gpu|micro[ _-]?batch(?:[ _]size)?|batch[ _]?size|batch|bs|批大小|批次大小", "micro_batch", "per_device_train_batch_size"),
    (r"gradient_accumulation_steps|grad(?:ient)?[ _]acc(?:um(?:ulation)?)?(?:[ _]steps)?|accumulation(?: steps)?|梯度累积(?:步数)?", "grad_accum", "gradient_accumulation_steps"),
    (r"gradient_checkpointing|grad(?:ient)?[ _]checkpointing|grad[ _]ckpt|activation[ _]checkpointing|梯度检查点", "gradient_checkpointing", "gradient_checkpointing"),
    (r"lora_rank|lora[ _]r(?:ank)?", "lora_rank", "lora_rank"),
    (r"quantization_bit|quantization|quant(?:ize)?[ _]bits?", "quantization_bit", "quantization_bit"),
    (r"zero[ _]?stage|zero-?|deepspeed[ _]stage|stage", "zero_stage", "zero_stage"),
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
_ON_VERBS = r"(?:turn on|turned on|switch on|enable|enabled|activate|use|打开|开启|启用|开)"
_OFF_VERBS = r"(?:turn off|turned off|switch off|disable|disabled|deactivate|关闭|关掉|禁用|关)"
_WHATIF_TRIGGER = re.compile(
    r"what if|what about|how about|what happens|suppose|\bif\b|turn on|turn off|enable|disable|would (?:it |that |this )?fit|fits?\s*\?|够吗|能跑吗|行吗|放得下|if i|if we|would it fit|would that fit|try\b|set\b|change\b|use\b|with\b|"
    r"会怎样|会怎么样|会如何|怎么样|呢|如果|假如|假设|试试|试一下|改成|改为|设为|设成|设置为|调到|调成|调为|变成|换成", re.I)
_VALUE = r"(?P<val>(?:zero[-_ ]?[0-3])|[48][-_ ]?bits?|[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?\s*[kK]?(?![a-z0-9_.])|true|false|on|off|开启|关闭|打开|关掉|[a-z][\w.-]*)"
_LINK = r"\s*(?:=|:|：|->|→|is|are|to|of|at|was|were|becomes?|改成|改为|设为|设成|设置为|调到|调成|调为|变成|换成|为|是|of)?\s*"


def what_if_intents(text: str) -> list[Intent]:
    """Every key=value a what-if message sets ("what if cutoff_len is 4096 and batch size 2?"), one per setting."""
    low = text.lower()
    if not _WHATIF_TRIGGER.search(low):
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

    for pattern, field, key in _KEY_SYNONYMS:
        if field not in _BOOL_FIELDS:
            continue
        m = re.search(r"(?P<verb>" + _ON_VERBS + "|" + _OFF_VERBS + r")\s*(?:the\s+)?(?P<key>" + pattern + r")(?![a-z_])", low)
        if m:
            add(m, {"key": key, "field": field, "value": bool(re.fullmatch(_ON_VERBS, m.group("verb")))})
    for pattern, field, key in _KEY_SYNONYMS:
        if field in fields:
            continue
        for m in re.finditer(r"(?<![a-z_])(?P<key>" + pattern + r")(?![a-z_])" + _LINK + _VALUE, low):
            val = parse_value(m.group("val"))
            if not free(m) or not valid_value(field, val):
                continue  # "batch is the problem", "optimizer and params" are not what-ifs
            raw_key = m.group("key")
            user_key = raw_key if re.fullmatch(r"[a-z_]+", raw_key) and "_" in raw_key else key
            add(m, {"key": user_key, "field": field, "value": val})
            break
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


def switch_method_intent(text: str, keep: list[str]) -> Intent | None:
    """switch_method from 'use QLoRA instead' / '用QLoRA'; a method the `keep` constraints rule out is skipped."""
    low = text.lower()
    if not _SWITCH.search(low):
        return None
    for pattern, method in _METHODS:
        if method == "full" and "full" in keep:
            continue
        if method in ("lora", "qlora") and "full" in keep:
            continue
        m = re.search(pattern, low)
        if m:
            if re.search(r"(?:\bnot|\bno|don't|without|can't|cannot|won't|不|别)\s*"
                         r"(?:(?:use|switch to|go with|move to|do|go to|change to)\s+|用)?(?:" + pattern + ")", low):
                continue
            return Intent(name="switch_method", slots={"method": method}, evidence=m.group(0))
    return None
