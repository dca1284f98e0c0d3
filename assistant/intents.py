"""Follow-up understanding without an LLM: a small rule-based intent and slot parser for the chat
messages users send after a diagnosis, in English and Chinese.

`parse_followups(text)` returns every intent a message carries ("I have 4x A100 40GB and must keep
full fine-tuning" → set_hardware + keep_constraint); `parse_followup(text)` the main one.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, Field

from ..tools.gpus import lookup_gpu

IntentName = Literal[
    "set_hardware", "keep_constraint", "release_constraint", "what_if", "switch_method", "explain",
    "show_diff", "show_config", "mark_solved", "mark_unsolved", "run_probe", "undo", "reset", "help", "unknown",
]

MAX_PARSE_CHARS = 4000  # follow-ups are short; longer text is a log or a config, classified elsewhere


class Intent(BaseModel):
    """One thing the user asked for, with its slots (e.g. gpu/count/memory_gib, key/field/value)."""

    name: IntentName
    slots: dict[str, Any] = Field(default_factory=dict)
    evidence: str = Field(default="", description="the words that triggered it")


# -- numbers -----------------------------------------------------------------------------------

_ZH_DIGITS = {"零": 0, "一": 1, "二": 2, "两": 2, "俩": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_EN_NUMBERS = {"one": 1, "a": 1, "single": 1, "two": 2, "dual": 2, "three": 3, "four": 4, "five": 5, "six": 6,
               "seven": 7, "eight": 8, "sixteen": 16, "ten": 10, "twelve": 12, "thirty-two": 32, "sixty-four": 64}


def zh_number(text: str) -> int | None:
    """'四' → 4, '十六' → 16, '二十' → 20 (0-99), digits pass through."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    if not text or any(c not in _ZH_DIGITS and c != "十" for c in text):
        return None
    if "十" in text:
        tens, _, ones = text.partition("十")
        t = _ZH_DIGITS.get(tens, 1) if tens else 1
        o = _ZH_DIGITS.get(ones, 0) if ones else 0
        return t * 10 + o
    return _ZH_DIGITS.get(text) if len(text) == 1 else None


def _count(text: str) -> int | None:
    text = text.lower().strip()
    return _EN_NUMBERS.get(text) or zh_number(text)


def parse_value(raw: str) -> Any:
    """A slot value as users type it: 8192, 8k → 8192, 1e-4, true/on/开启, zero3 → 3, else the text."""
    v = raw.strip().strip("`'\"。，,.?？!！").strip()
    low = v.lower()
    if low in ("true", "yes", "on", "enable", "enabled", "开", "开启", "打开", "启用"):
        return True
    if low in ("false", "no", "off", "disable", "disabled", "关", "关闭", "关掉", "禁用"):
        return False
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*k", low)
    if m:  # "8k" context = 8192 tokens (powers of two are what people mean by 4k/8k/32k)
        return int(float(m.group(1)) * 1024)
    m = re.fullmatch(r"zero[-_ ]?([0-3])", low)
    if m:
        return int(m.group(1))
    m = re.fullmatch(r"([48])[-_ ]?bits?", low)
    if m:
        return int(m.group(1))
    if re.fullmatch(r"[-+]?\d+", v):
        return int(v)
    if re.fullmatch(r"[-+]?(\d+\.\d*|\.\d+|\d+(\.\d*)?[eE][-+]?\d+)", v):
        return float(v)
    n = zh_number(v)
    if n is not None:
        return n
    return v


# -- set_hardware ------------------------------------------------------------------------------

_GPU_NAME = (r"(?:(?<![a-z0-9])|(?<=\dx))(?:nvidia\s*)?(?:geforce\s*)?(?:tesla\s*)?(?:rtx\s*)?"
             r"(?P<name>h200|h100(?:\s*nvl)?|h800|h20|gh200|a100|a800|a6000|a40|a10g|a10|l40s|l40|l4|v100|t4|"
             r"mi300x?|mi250x?|rtx\s*6000(?:\s*ada)?|[345]0[6789]0(?:\s*ti)?)(?![0-9])(?:\s*s\b)?")
_MEM = r"(?P<mem>\d{1,3}(?:\.\d+)?)\s*(?:g|gb|gib|g显存|gb显存)(?![a-z])"
_NUM = r"(?P<count>\d{1,3}|[一二两俩三四五六七八九十]{1,3}|one|two|three|four|five|six|seven|eight|sixteen|single|dual|a)"
_CNT_BEFORE = re.compile(_NUM + r"\s*(?:x|×|\*|张|块|个|台|卡|片|pcs)?\s*(?:of\s+)?(?:the\s+)?(?:nvidia\s+)?" + _GPU_NAME, re.I)
_CNT_AFTER = re.compile(_GPU_NAME + r"[\s\-_]*(?:(?:sxm\d?|pcie|hbm\d?e?)[\s\-_]*)*(?:" + _MEM + r")?\s*(?:(?:x|×|\*)\s*(?P<count2>\d{1,3})|(?P<count3>\d{1,3}|[一二两三四五六七八九十]{1,3})\s*(?:张|块|卡|个))?", re.I)
_GPU_COUNT_ONLY = re.compile(
    r"(?:(?P<n>\d{1,3}|[一二两俩三四五六七八九十]{1,3}|one|two|three|four|five|six|seven|eight|sixteen|single|a)\s*"
    r"(?:x\s*)?(?:gpus?|cards?|devices?|张卡|块卡|张显卡|块显卡|卡(?!住))|(?P<zh>单|双)卡)", re.I)
_ZH_TOTAL = re.compile(r"(?:共|一共|总共|总计)\s*(\d{1,3}|[一二两三四五六七八九十]{1,3})\s*(?:张|块|台|卡|个)")
_MEM_ONLY = re.compile(
    r"(?:(?:显存|memory|vram)\D{0,6}" + _MEM + r"|" + _MEM.replace("?P<mem>", "?P<mem2>") + r"\s*(?:的)?\s*(?:显存|vram|cards?|gpus?|memory|of memory|卡))", re.I)


def _host_memory(low: str, m: re.Match) -> bool:
    """'256GB of RAM' / '512G内存' is the host's memory, not the GPU's."""
    window = low[max(0, m.start() - 14): m.end() + 16]
    return bool(re.search(r"\bram\b|内存|host|system memory|cpu memory|\bdram\b", window))


def _hardware(text: str) -> Intent | None:
    low = text.lower()
    slots: dict[str, Any] = {}
    ev = ""
    m = _CNT_BEFORE.search(low)
    if m:
        slots["gpu_text"] = m.group("name")
        n = _count(m.group("count"))
        if n:
            slots["count"] = n
        ev = m.group(0)
    m2 = _CNT_AFTER.search(low)
    if m2:
        slots.setdefault("gpu_text", m2.group("name"))
        if m2.group("mem"):
            slots["memory_gib"] = float(m2.group("mem"))
        c = m2.group("count2") or m2.group("count3")
        if c and "count" not in slots:
            slots["count"] = _count(c)
        ev = ev or m2.group(0)
    m3 = None
    if "count" not in slots and (mt := _ZH_TOTAL.search(low)):
        slots["count"] = _count(mt.group(1))
    if "count" not in slots:
        m3 = _GPU_COUNT_ONLY.search(low)
        if m3:
            slots["count"] = 1 if m3.group("zh") == "单" else 2 if m3.group("zh") == "双" else _count(m3.group("n"))
            ev = ev or m3.group(0)
    if "memory_gib" not in slots and m3 is not None:
        m5 = re.compile(r"(?:\s*(?:with|of|,|each|，|每张|每卡|每块))*\s*" + _MEM).match(low, m3.end())
        if m5 and not _host_memory(low, m5):
            slots["memory_gib"] = float(m5.group("mem"))
    if "memory_gib" not in slots:
        m4 = _MEM_ONLY.search(low)
        if m4 and not _host_memory(low, m4):
            slots["memory_gib"] = float(m4.group("mem") or m4.group("mem2"))
            ev = ev or m4.group(0)
    if not slots:
        return None
    if "gpu_text" in slots:
        name = slots["gpu_text"] + (f" {int(slots['memory_gib'])}GB" if slots.get("memory_gib") else "")
        spec = lookup_gpu(name)
        if spec is not None:
            slots["gpu"] = spec.name
            # a size the catalogue knows as a variant (A100 40/80) is taken from the spec; others stay explicit
            if slots.get("memory_gib") and spec.name.endswith(f"{int(slots['memory_gib'])}GB"):
                slots.pop("memory_gib")
    if slots.get("count") is None:
        slots.pop("count", None)
    if not slots:
        return None
    return Intent(name="set_hardware", slots=slots, evidence=ev.strip())


# -- constraints -------------------------------------------------------------------------------

_KEEP_EN = r"(?:must|have to|need to|needs to|has to|should|want to|wanna|keep|stay|stick|retain|preserve|required?|only|insist)"
_NOCHANGE_EN = (r"(?:can't|cannot|can not|don't|do not|mustn't|must not|won't|not allowed to|unable to|no way to|shouldn't|"
                r"i'd rather not)\s+(?:\w+\s+){0,2}?(?:change|reduce|lower|shorten|decrease|cut|touch|drop|modify|shrink|alter|go below)")
_KEEP_ZH = r"(?:必须|一定要|只能|要保持|保持|得|需要|不变|要求)"
_NOCHANGE_ZH = r"(?:不能|不可以|不要|不想|别|无法|不允许|不可)\s*(?:再)?\s*(?:改|缩短|减少|减小|降低|动|变|调小|调低|砍|截断)"
_SEQ_WORDS = (r"(?:cutoff_len|cutoff|max_seq_length|max_seq_len|max_length|model_max_length|seq(?:uence)?[ _]?len(?:gth)?|"
              r"context(?: length| window| size)?|sequence|tokens|序列长度|序列|上下文长度|上下文|长度|截断长度)")
_BATCH_WORDS = r"(?:per_device_train_batch_size|micro[ _-]?batch(?:[ _]size)?|batch[ _]?size|batch|bs|批大小|批次大小|批量)"
_FULL_WORDS = r"(?:full[ -]?(?:parameter|param)?[ -]?(?:fine[ -]?tun\w*|ft|training|finetun\w*|sft)|full\b|全量微调|全量|全参数?微调|全参数?)"
_LORA_WORDS = r"(?:q?lora|peft|adapters?)"


def _constraints(text: str) -> list[Intent]:
    low = text.lower()
    keep: list[str] = []
    release: list[str] = []

    def near(a: str, b: str, gap: int = 40) -> bool:
        return bool(re.search(a + r".{0,%d}?" % gap + b, low) or re.search(b + r".{0,%d}?" % gap + a, low)) if a and b else False

    def near_fwd(a: str, b: str, gap: int = 40) -> bool:
        return bool(re.search(a + r".{0,%d}?" % gap + b, low))

    # method: full fine-tuning must stay
    if (near_fwd(_KEEP_EN, _FULL_WORDS, 30) or near_fwd(_KEEP_ZH, _FULL_WORDS, 8)
            or near_fwd(_FULL_WORDS, r"(?:is |are )?(?:required|a must|mandatory|must stay|non-negotiable|a (?:hard |strict )?requirement)", 12)
            or re.search(r"(?:can't|cannot|can not|don't want to|do not want to|not allowed to|won't|no)\s+"
                         r"(?:(?:use|switch to|go with|move to|do|go to|change to)\s+)?" + _LORA_WORDS, low)
            or re.search(_LORA_WORDS + r"\s+(?:is|are)\s+not\s+(?:an option|allowed|ok|acceptable|possible)", low)
            or re.search(r"(?:不能|不可以|不要|不想|不允许|不用)\s*(?:用|使用)?\s*" + _LORA_WORDS, low)):
        keep.append("full")
    # sequence length must stay
    if (near_fwd(_KEEP_EN, _SEQ_WORDS, 40) or near_fwd(_NOCHANGE_EN, _SEQ_WORDS, 30) or near_fwd(_NOCHANGE_ZH, _SEQ_WORDS, 8)
            or near_fwd(_SEQ_WORDS, r"(?:must (?:stay|remain|be)|has to (?:stay|remain|be)|is fixed|stays|can't change|cannot change|"
                        r"can't be (?:reduced|changed|lowered)|cannot be (?:reduced|changed|lowered)|不能|不可以|不要|必须|保持不变|不变|固定)", 25)
            or near_fwd(_KEEP_ZH, _SEQ_WORDS, 6)):
        if not re.search(r"what if|如果|假如|会怎样", low):
            keep.append("seq")
    # batch must stay
    if (near_fwd(_KEEP_EN, _BATCH_WORDS, 30) or near_fwd(_NOCHANGE_EN, _BATCH_WORDS, 30) or near_fwd(_NOCHANGE_ZH, _BATCH_WORDS, 8)
            or near_fwd(_BATCH_WORDS, r"(?:must (?:stay|remain|be)|has to (?:stay|remain|be)|is fixed|can't change|cannot change|"
                        r"不能|不可以|不要|必须|保持不变|不变|固定)", 25)):
        if not re.search(r"what if|如果|假如|会怎样", low):
            keep.append("batch")
    # no DeepSpeed
    if re.search(r"(?:no|without|can't use|cannot use|can not use|don't use|do not use|don't want|do not want|not allowed to use|"
                 r"don't have|do not have|no access to)\s+(?:to use\s+)?deep\s?speed|deep\s?speed\s+(?:is\s+)?not\s+(?:available|allowed|an option|installed)|"
                 r"(?:不用|不能用|不要|不想用|不使用|没有|没装|不支持)\s*deep\s?speed", low):
        keep.append("no-deepspeed")
    # releases: "LoRA is fine", "you can change the batch", "可以用LoRA"
    if re.search(_LORA_WORDS + r"\s+(?:is|are)\s+(?:fine|ok|okay|acceptable|allowed)|(?<!不)(?:可以|能)\s*(?:用|使用)\s*" + _LORA_WORDS
                 + r"|don't need full|no longer need full|不需要全量|不必全量", low):
        release.append("full")
    if re.search(r"(?:can|may|could)\s+(?:change|reduce|lower|shorten)\s+(?:the\s+)?" + _SEQ_WORDS + r"|" + _SEQ_WORDS + r"\s*(?:可以|能)\s*(?:改|缩短|减少|降低)", low):
        release.append("seq")
    if re.search(r"(?:can|may|could)\s+(?:change|reduce|lower)\s+(?:the\s+)?" + _BATCH_WORDS + r"|" + _BATCH_WORDS + r"\s*(?:可以|能)\s*(?:改|减少|降低|调)", low):
        release.append("batch")
    if re.search(r"deep\s?speed\s+(?:is\s+)?(?:fine|ok|okay|allowed)|(?:can|may)\s+use\s+deep\s?speed|可以(?:用|使用)\s*deep\s?speed", low):
        release.append("no-deepspeed")
    keep = [k for k in keep if k not in release]
    out = []
    if keep:
        out.append(Intent(name="keep_constraint", slots={"keep": keep}, evidence=text[:80]))
    if release:
        out.append(Intent(name="release_constraint", slots={"release": release}, evidence=text[:80]))
    return out


# -- what_if -----------------------------------------------------------------------------------

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
    (r"zero[ _]?stage|zero|deepspeed[ _]stage|stage", "zero_stage", "zero_stage"),
    (r"image_max_pixels|max_pixels|图片分辨率|图像分辨率", "image_max_pixels", "image_max_pixels"),
    (r"video_maxlen|video[ _]frames|max_frames|视频帧数", "video_frames", "video_maxlen"),
    (r"optim(?:izer)?|优化器", "optimizer", "optim"),
    (r"flash_attn|attn_implementation|attention", "attn_implementation", "flash_attn"),
    (r"num_gpus|gpus|gpu count|卡数", "num_gpus", "num_gpus"),
]
_BOOL_FIELDS = {"gradient_checkpointing"}
_ON_VERBS = r"(?:turn on|turned on|switch on|enable|enabled|activate|use|打开|开启|启用|开)"
_OFF_VERBS = r"(?:turn off|turned off|switch off|disable|disabled|deactivate|关闭|关掉|禁用|关)"
_WHATIF_TRIGGER = re.compile(
    r"what if|what about|how about|what happens|suppose|\bif\b|turn on|turn off|enable|disable|would (?:it |that |this )?fit|fits?\s*\?|够吗|能跑吗|行吗|放得下|if i|if we|would it fit|would that fit|try\b|set\b|change\b|use\b|with\b|"
    r"会怎样|会怎么样|会如何|怎么样|呢|如果|假如|假设|试试|试一下|改成|改为|设为|设成|设置为|调到|调成|调为|变成|换成", re.I)
_VALUE = r"(?P<val>(?:zero[-_ ]?[0-3])|[48][-_ ]?bits?|[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?\s*[kK]?(?![a-z0-9_.])|true|false|on|off|开启|关闭|打开|关掉|[a-z][\w.-]*)"
_LINK = r"\s*(?:=|:|：|->|→|is|are|to|of|at|was|were|becomes?|改成|改为|设为|设成|设置为|调到|调成|调为|变成|换成|为|是|of)?\s*"


def _what_ifs(text: str) -> list[Intent]:
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
            if not free(m) or (isinstance(val, str) and field not in ("optimizer", "attn_implementation")):
                continue  # "batch is the problem" is not a what-if
            raw_key = m.group("key")
            user_key = raw_key if re.fullmatch(r"[a-z_]+", raw_key) and "_" in raw_key else key
            add(m, {"key": user_key, "field": field, "value": val})
            break
    # any other config-looking key=value ("lora_target=all", "--max_grad_norm 0.5")
    for m in re.finditer(r"(?:--)?(?P<key>[a-z][a-z0-9]*(?:_[a-z0-9]+)+)\s*(?:=|:|\s+to\s+|\s+is\s+|改成|设为|\s)\s*" + _VALUE, low):
        if free(m) and setup_field(m.group("key")) not in fields:
            add(m, {"key": m.group("key"), "field": setup_field(m.group("key")), "value": parse_value(m.group("val"))})
    return [intent for _, intent in sorted(found, key=lambda x: x[0])]


def setup_field(key: str) -> str | None:
    """The TrainingSetup field a config key (or a user's word for it) sets: 'cutoff_len' → 'seq_len'."""
    low = key.lower().strip()
    for pattern, field, _ in _KEY_SYNONYMS:
        if re.fullmatch(pattern, low):
            return field
    return None


# -- method, explain, show, feedback, reset, help ----------------------------------------------

_METHODS = [(r"q[- ]?lora|4[- ]?bit|4比特|四比特|量化", "qlora"), (r"(?<!q)(?<!q-)lora|peft|adapter", "lora"),
            (r"freeze|冻结", "freeze"), (_FULL_WORDS, "full")]
_SWITCH = re.compile(r"(?:use|using|switch(?:ing)?(?: \w+)? to|try|go with|change to|move to|instead|rather|let's do|do|prefer|"
                     r"改用|用|换成|换用|试试|切换到|切换成|改成|采用|使用)", re.I)


def _switch_method(text: str, keep: list[str]) -> Intent | None:
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


_EXPLAIN = re.compile(r"^\W*(?:why|how come|explain|reason|how so|because\?|what caused|what's the cause|what is the cause)|\bwhy\b|"
                      r"\bexplain\b|what(?:'s| is) (?:using|eating|taking|filling) (?:up )?(?:all )?(?:the |my )?(?:gpu )?memory|"
                      r"where does (?:the|all the) memory go|\bexplain\b|\bwhat(?:'s| is| was) (?:the )?(?:cause|reason)|\b(?:the|a) (?:root )?(?:cause|reason)\b|"
                      r"为什么|为啥|为何|原因|怎么回事|解释|咋回事|什么导致", re.I)
_SHOW_DIFF = re.compile(r"(?<![a-z])diff(?![a-z])|what (?!if)(?:\w+\s+){0,3}?change[ds]?\b|the changes|show.{0,20}changes|"
                        r"差异|改动|改了什么|改了哪些|修改了哪些|修改内容|对比", re.I)
_SHOW_CONFIG = re.compile(r"(?:show|give|print|send|paste|see|display|fixed|new|full|whole|complete|updated|final|corrected|download)"
                          r".{0,25}(?:config|yaml|json|script|file)|^\W*config\W*$|"
                          r"(?:给|看|发|完整|修改后|新的|修正后|最终|改好).{0,8}(?:配置|yaml|json|脚本)|^\W*配置\W*$", re.I)
_UNSOLVED = re.compile(r"still\s+(?:\w+\s+){0,2}?(?:oom|ooms|out of memory|fail\w*|crash\w*|error\w*|broken|dies|killed|the same|not working|doesn't work)|"
                       r"not (?:solved|fixed|working|resolved)|didn't (?:work|help|fix)|did not (?:work|help|fix)|doesn't (?:work|help|fit)|"
                       r"does not (?:work|help)|no luck|same (?:error|oom|problem)|no (?:change|difference)|👎|"
                       r"(?:还是|仍然|依然|仍旧|照样|还会|又)\s*.{0,6}?(?:oom|爆显存|显存不足|显存溢出|out of memory|报错|不行|溢出|崩|挂|失败)|"
                       r"没解决|没有解决|未解决|不行|没用|没有用|没效果|无效|失败了", re.I)
_SOLVED = re.compile(r"\b(?:it|that|this) (?:worked|works|fixed it|did it|helped|solved it)|\b(?:it's|it is|that's|all|now) fixed\b|works now|working now|runs now|solved|resolved|"
                     r"fixed it|problem fixed|that fixed|training (?:runs|works|started|is running)|no more oom|no longer ooms?|👍|"
                     r"解决了|可以了|跑通了|跑起来了|成功了|好了|搞定|没问题了|有效了|不再oom|不oom了|能跑了|正常了", re.I)
_PROBE = re.compile(r"\b(?:run|start|do|try)\s+(?:the\s+|a\s+)?(?:live\s+)?probe|\bprobe\s+(?:it|this|that|the (?:fixed )?config)|"
                    r"measure (?:it|this|the peak) on (?:the|this|a|your) gpu|实测|跑一下\s*probe|在\s*gpu\s*上(?:测|跑)", re.I)
_UNDO = re.compile(r"^\W*(?:undo|revert|(?:drop|forget|clear|remove) (?:the |all |my )*what[- ]?ifs?|back to my (?:own |original )?config|"
                   r"use my (?:original|own) config(?: again)?|撤销|撤回|恢复原(?:来的)?配置|回到原(?:来的)?配置)\W*(?:please|pls|吧)?\W*$", re.I)
_RESET = re.compile(r"^\W*(?:(?:please|pls|ok|okay|let's|lets|请)\W*)?(?:reset|start over|restart|clear(?: (?:everything|all|it|the session|this))?|new (?:problem|issue|session|conversation|question)|forget (?:it|everything|that)|"
                    r"重新开始|重置|清空|新问题|从头开始|重来)\W*(?:please|pls|吧)?\W*$", re.I)
_HELP = re.compile(r"^\W*(?:help(?: me| please| pls)?|\?|what can you do|how does (?:this|it) work|commands|usage|how do i use (?:this|you)|"
                   r"帮助|你能做什么|怎么用|使用说明|能干什么|你会什么)\W*$", re.I)


def parse_followups(text: str) -> list[Intent]:
    """Every intent in a follow-up message, most specific first; [unknown] when none is recognised."""
    text = (text or "").strip()[:MAX_PARSE_CHARS]
    if not text:
        return [Intent(name="unknown")]
    if _RESET.search(text):
        return [Intent(name="reset", evidence=text)]
    if _HELP.search(text):
        return [Intent(name="help", evidence=text)]
    if _UNDO.search(text):
        return [Intent(name="undo", evidence=text)]
    out: list[Intent] = []
    if _PROBE.search(text):
        out.append(Intent(name="run_probe", evidence=_PROBE.search(text).group(0)))
    unsolved = _UNSOLVED.search(text)
    if unsolved and not re.search(r"(?:no|不)\s*(?:再|more|longer)", text[max(0, unsolved.start() - 8): unsolved.start()], re.I):
        out.append(Intent(name="mark_unsolved", slots={"note": text[:500]}, evidence=unsolved.group(0)))
    elif (solved := _SOLVED.search(text)) and not re.search(r"[?？]\s*$", text):
        out.append(Intent(name="mark_solved", slots={"note": text[:500]}, evidence=solved.group(0)))
    constraints = _constraints(text)
    keep = next((i.slots["keep"] for i in constraints if i.name == "keep_constraint"), [])
    hw = _hardware(text)
    # "what if I use 8 A100s" is a hardware change, not a config key
    what_ifs = [w for w in _what_ifs(text) if not (hw and w.slots.get("field") in (None, "num_gpus"))]
    out.extend(what_ifs)
    switch = _switch_method(text, keep)
    if switch and not any(w.slots.get("field") == "quantization_bit" for w in what_ifs):
        out.append(switch)
    out.extend(constraints)
    if hw:
        out.append(hw)
    if _SHOW_DIFF.search(text):
        out.append(Intent(name="show_diff", evidence=text[:80]))
    elif _SHOW_CONFIG.search(text):
        out.append(Intent(name="show_config", evidence=text[:80]))
    if _EXPLAIN.search(text):
        m = re.search(r"(?:why|explain|为什么|为啥|解释)\s*(?:is|are|does|do|did|the|一下)?\s*(.*)", text, re.I)
        topic = (m.group(1).strip(" ?？。.") if m else "")[:200]
        out.append(Intent(name="explain", slots={"topic": topic}, evidence=text[:80]))
    return out or [Intent(name="unknown", evidence=text[:80])]


def parse_followup(text: str) -> Intent:
    """The main intent of a follow-up message (see `parse_followups` for all of them)."""
    return parse_followups(text)[0]


UNDERSTOOD = [
    ("set_hardware", "I have 4x A100 40GB / 我有4张A100 40G"),
    ("keep_constraint", "I must keep full fine-tuning / 必须全量微调 / cutoff_len can't change / no DeepSpeed"),
    ("what_if", "what if cutoff_len is 8192? / cutoff_len改成8192会怎样"),
    ("switch_method", "use QLoRA instead / 用QLoRA"),
    ("explain", "why? / 为什么"),
    ("show_diff", "show the diff again / 再给我看一下diff"),
    ("show_config", "show the fixed config / 给我完整配置"),
    ("mark_solved", "it worked / 解决了"),
    ("mark_unsolved", "still OOM / 还是OOM"),
    ("run_probe", "run the live probe (on a GPU host) / 实测一下"),
    ("undo", "undo (drop the what-ifs, back to my config) / 撤销"),
    ("reset", "start over / 重新开始"),
]
