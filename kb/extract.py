"""Deterministic extraction of case facts from a cleaned document: model, hardware, framework, settings and
their before/after values, error lines and numbers, and root-cause labels (kb/extract_rules.py).

Works on Chinese and English text alike: keys, numbers and model names are ASCII in both.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, Field

from ..tools.configs.keys import SEQ_LEN_KEYS
from ..tools.gpus import DATACENTER_GPU_PATTERN
from ..tools.units import GiB, parse_size
from .extract_rules import (
    ADVICE_HEADINGS, COMPILED_LABEL_RULES, COMPILED_PHRASE_FIXES, CONFIRMED, FIX_HEADINGS, KEY_LABELS, PROBLEM_HEADINGS,
)

MODEL_FAMILIES = (
    r"MoE-LLaVA|LLaVA(?:-NeXT|-OneVision)?|Qwen\d?(?:\.\d)?(?:-?VL)?|Llama\s?\d?(?:\.\d)?|LLaMA\s?\d?|Code[Ll]lama|Mistral|Mixtral|"
    r"Phi-?\d?(?:\.\d)?|Gemma\s?\d?|Baichuan\d?|ChatGLM\d?|GLM-?\d?|InternLM\d?|InternVL\d?(?:\.\d)?|Yi|DeepSeek(?:-V\d|-R\d|-Coder)?|"
    r"Kimi(?:-VL|-K\d)?|MiniCPM(?:-V)?|Falcon|BLOOM|OPT|GPT-?J|GPT-?NeoX|GPT-?2|StarCoder\d?|Vicuna|ERNIE|Pythia|"
    r"T5|Flan-T5|BERT|RoBERTa|Whisper|SigLIP|CLIP"
)
MODEL_RE = re.compile(rf"(?<![\w/-])((?:[\w.-]+/)?(?:{MODEL_FAMILIES})(?:[\w.]*)(?:-[A-Za-z0-9.]+)*)", re.IGNORECASE | re.ASCII)
NOT_MODELS = re.compile(r"llama[-_ ]?factory|llava[-_ ]?(project|repo)", re.IGNORECASE)
SIZE_RE = re.compile(r"(?<![\w.])(\d{1,4}(?:\.\d)?)\s?[Bb](?![\w])", re.ASCII)
GPU_RE = re.compile(rf"(?<![\w])({DATACENTER_GPU_PATTERN}|"
                    r"RTX\s?\d{4}(?:\s?Ti)?|\d{4}\s?Ti|(?:RTX\s?)?(?:3090|4090|4080|5090)|MI\d{3}X?|TPU\s?v\d)(?![\w])",
                    re.IGNORECASE | re.ASCII)
COUNT_RE = re.compile(r"(\d{1,4})\s*(?:块|张|个|台|x|×|\*)\s*(?:\d+(?:\.\d+)?\s*G(?:i?B)?\s*(?:显存)?\s*的?\s*)?"
                      r"(?:[A-Za-z]+\d*\s*)?(?:GPU|显卡|卡)?|(\d{1,4})\s*(?:GPUs|cards|gpus)\b|(?:x|×)\s*(\d{1,3})\b", re.IGNORECASE | re.ASCII)
MEM_RE = re.compile(r"(\d{1,3}(?:\.\d{1,2})?)\s*G(?:i?B)?\b(?!\s*(?:被占用|already|in use|free|可用|allocated|reserved))",
                    re.IGNORECASE | re.ASCII)
HOST_RAM_RE = re.compile(r"(?:CPU|主机|系统|host)\s*(?:内存|RAM|memory)\s*[(（]?\s*(\d{2,5})\s*G|"
                         r"(\d{2,5})\s*G(?:i?B)?\s*(?:of\s*)?(?:host|CPU|system)?\s*(?:RAM)\b", re.IGNORECASE)

# A config key as frameworks write it: snake_case (cutoff_len) or a known flag word.
KEY = r"(?<![A-Za-z0-9_=:,])(?:--)?([A-Za-z][A-Za-z0-9]*(?:_[A-Za-z0-9]+)+|bits|bf16|fp16|deepspeed|optim|gradient_checkpointing)"
VAL = r"(\d+(?:\.\d+)?(?:e-?\d+)?(?!\d|\.\d)|true|false|True|False|[A-Za-z][A-Za-z0-9_.\-/]*[A-Za-z0-9])"
PAREN = r"\s*(?:[(（][^()（）\n]{0,20}[)）])?\s*"
_DOWN = r"降低|降至|降到|减少|减小|调低|下调|缩小|缩短|改|调整|调|设|变"
_UP = r"提高|提升|增加|增大|调高|上调|扩大"
CHANGE_PATTERNS = [
    # zh: KEY从A降低到B / 将KEY从A提高到B / KEY从A降低到更合理的值(如B)
    re.compile(rf"{KEY}{PAREN}从\s*{VAL}\s*(?:(?:{_DOWN}|{_UP})\s*(?:到|至|为|成)?|到|至|为|成)\s*[^0-9，。；;\n]{{0,12}}?(?:如|例如|比如)?\s*{VAL}", re.ASCII),
    # en: KEY from A to B / reduce KEY from A to B
    re.compile(rf"{KEY}[^\n.;。]{{0,24}}?\bfrom\s+{VAL}\s+(?:down |up )?to\s+{VAL}", re.IGNORECASE | re.ASCII),
    # KEY: A → B / KEY A->B / KEY=A→B
    re.compile(rf"{KEY}\s*[:=：]?\s*{VAL}\s*(?:->|→|=>|⟶|➝)\s*{VAL}", re.ASCII),
]
SET_PATTERNS = [
    re.compile(rf"{KEY}{PAREN}(?:设为|设置为|设成|设置成|改为|改成|调为|调整为|调整到|降为|降至|降到|提高到|增加到)\s*{VAL}", re.ASCII),
    re.compile(rf"\b(?:set|reduc|lower|decreas|increas|rais|chang|bump|drop|cut|limit|cap)\w*\s+(?:the\s+)?{KEY}"
               rf"\s+(?:to|=|down to|up to)\s+{VAL}", re.IGNORECASE | re.ASCII),
    re.compile(rf"(?<![\w-])--{KEY}[ =]+{VAL}", re.ASCII),
    re.compile(rf"(?<![\w.]){KEY}\s*=\s*{VAL}", re.ASCII),
]
BEFORE_PATTERNS = [
    re.compile(rf"{KEY}{PAREN}(?:为|是|[:：])\s*{VAL}", re.ASCII),
    re.compile(rf"{KEY}\s*(?:was|is|of)\s+{VAL}", re.IGNORECASE | re.ASCII),
]
DIRECTION_PATTERN = re.compile(rf"(减小|降低|减少|lower|reduce|decrease|shrink|增加|提高|increase|raise)\S{{0,4}}\s*{KEY}", re.IGNORECASE | re.ASCII)
# "(freeze_vision_tower)" / "(train_mm_proj_only)" after a verb that turns something on: the key becomes true
PAREN_BOOL_KEY = re.compile(r"[(（]\s*((?:freeze|use|enable|train|disable)_[a-z0-9_]+|[a-z0-9_]+_only)\s*[)）]")
ENABLE_VERB = re.compile(r"冻结|仅|只|启用|开启|使用|打开|enable|freeze|only|turn on|set", re.IGNORECASE)
# "enable liger_kernel" / "turn on gradient_checkpointing" / "启用 flash_attn": a snake_case switch becomes true
ENABLE_KEY = re.compile(rf"(?:\benable|\bturn on|\bswitch on|启用|开启|打开)\s*(?:the\s+)?{KEY}(?!\s*[=:])", re.IGNORECASE | re.ASCII)
PIN_RE = re.compile(r"pip install\s+(?:-[Uq]\s+|--upgrade\s+)*([A-Za-z][\w\-]*)\s*==\s*([\w.]+)")
INSTALL_RE = re.compile(r"(安装|install(?:ed)?)\s*(?:the\s*)?(flash-attn|flash_attn|bitsandbytes|deepspeed|liger-kernel)", re.IGNORECASE)
ENV_RE = re.compile(r"(PYTORCH_CUDA_ALLOC_CONF)\s*=\s*([A-Za-z0-9_:,.]+)")
ERROR_LINE_RE = re.compile(r"((?:torch\.cuda\.)?OutOfMemoryError|RuntimeError|ValueError|TypeError|AssertionError|"
                           r"CUDA out of memory|CUDA error|NotImplementedError|ImportError|ModuleNotFoundError|"
                           r"CUBLAS_STATUS_\w+|NCCL error|Killed|MemoryError)\b[^\n]{0,300}")
CUDA_NUMBERS = [
    ("requested_gib", re.compile(r"Tried to allocate\s+([\d.]+\s*[KMGT]i?B)", re.I)),
    ("total_gib", re.compile(r"([\d.]+\s*[KMGT]i?B) total capacity", re.I)),
    ("allocated_gib", re.compile(r"([\d.]+\s*[KMGT]i?B) already allocated", re.I)),
    ("free_gib", re.compile(r"([\d.]+\s*[KMGT]i?B) free", re.I)),
    ("total_gib", re.compile(r"total capacity of ([\d.]+\s*[KMGT]i?B)", re.I)),
    ("free_gib", re.compile(r"of which ([\d.]+\s*[KMGT]i?B) is free", re.I)),
    ("allocated_gib", re.compile(r"([\d.]+\s*[KMGT]i?B) is allocated by PyTorch", re.I)),
    ("reserved_unallocated_gib", re.compile(r"([\d.]+\s*[KMGT]i?B) is reserved by PyTorch but unallocated", re.I)),
    ("reserved_gib", re.compile(r"([\d.]+\s*[KMGT]i?B) reserved in total", re.I)),
    ("in_use_gib", re.compile(r"has ([\d.]+\s*[KMGT]i?B) memory in use", re.I)),
    ("requested_gib", re.compile(r"(?:尝试|试图)分配\s*([\d.]+\s*[KMGT]i?B)", re.I)),
    ("allocated_gib", re.compile(r"已有\s*([\d.]+\s*[KMGT]i?B)\s*(?:被占用|已占用)", re.I)),
    ("free_gib", re.compile(r"(?:仅剩|剩余|只剩)\s*([\d.]+\s*[KMGT]i?B)\s*可用?", re.I)),
]
FRAMEWORKS = [
    ("llamafactory", r"LLaMA[- ]?Factory|LlamaFactory|llamafactory-cli"),
    ("axolotl", r"\baxolotl\b"), ("unsloth", r"\bunsloth\b"), ("torchtune", r"\btorchtune\b"),
    ("swift", r"\bms-swift\b|\bSWIFT\b"), ("trl", r"\bTRL\b|SFTTrainer|DPOTrainer|GRPOTrainer"),
    ("llava", r"LLaVA"), ("qwen-vl", r"Qwen-VL (finetune|fine-tune) script"), ("vllm", r"\bvLLM\b"),
    ("hf_trainer", r"\bTrainer\b|TrainingArguments|transformers\.Trainer"),
    ("deepspeed", r"DeepSpeed"), ("peft", r"\bPEFT\b"),
]
SEQ_KEYS = (*SEQ_LEN_KEYS, "max_source_length")   # a fix that shortens the prompt shortens the sequence too


class KeyChange(BaseModel):
    key: str
    from_value: Any = None
    to_value: Any = None
    action: str | None = None
    clause: str = Field(default="", description="the sentence it was read from (for the reviewer)")
    confirmed: bool = Field(default=False, description="a sentence naming this change says it worked")


class Extraction(BaseModel):
    """Everything the rules found; kb/ingest.py turns it into a draft Case."""

    title: str
    language: str
    model_name: str | None = None
    model_size: str | None = None
    modality: str = "text"
    gpu: str | None = None
    gpu_count: int | None = None
    gpu_memory_gib: float | None = None
    host_ram_gib: float | None = None
    framework: str = "other"
    launcher: str | None = None
    method: str = "full"
    settings: dict[str, Any] = Field(default_factory=dict)
    changes: list[KeyChange] = Field(default_factory=list)
    error_lines: list[str] = Field(default_factory=list)
    numbers: dict[str, float] = Field(default_factory=dict)
    label_scores: dict[str, float] = Field(default_factory=dict)
    error_kind: str = "cuda_oom"
    phase: str | None = None

    @property
    def labels(self) -> list[str]:
        ranked = sorted(self.label_scores.items(), key=lambda kv: -kv[1])
        top = ranked[0][1] if ranked else 0.0
        return [label for label, s in ranked if s >= max(1.5, 0.3 * top)][:5]


def detect_language(text: str) -> str:
    cjk = len(re.findall(r"[\u3400-\u9fff]", text))
    return "zh" if cjk > 0.15 * max(1, len(re.sub(r"\s", "", text))) else "en"


def _value(v: str) -> Any:
    if re.fullmatch(r"\d+", v):
        return int(v)
    if re.fullmatch(r"\d+\.\d+|\d+(\.\d+)?e-?\d+", v):
        return float(v)
    if v.lower() in ("true", "false"):
        return v.lower() == "true"
    return v


def _clauses(text: str) -> list[str]:
    return [c.strip() for c in re.split(r"(?<=[。！？；;\n])|(?<=[.!?])\s+(?=[A-Z])", text) if c.strip()]


def sections(text: str) -> list[tuple[str, str]]:
    """(kind, line) for every line: kind is problem | fix | advice | body, from the nearest heading above it."""
    kind = "body"
    out = []
    for line in text.splitlines():
        s = line.strip().lstrip("#").strip()
        if s and len(s) <= 24 and not re.search(r"[。，,.:：]$", s):
            if ADVICE_HEADINGS.match(s):
                kind = "advice"
            elif FIX_HEADINGS.match(s):
                kind = "fix"
            elif PROBLEM_HEADINGS.match(s):
                kind = "problem"
        out.append((kind, line))
    return out


def extract_model(title: str, text: str) -> tuple[str | None, str | None, str]:
    """(name, size, modality): the model named most in the title and opening, with a size if one is given."""
    head = title + "\n" + text[:1500]
    counts: dict[str, float] = {}
    for weight, chunk in ((3.0, title), (1.0, head), (0.5, text)):
        for m in MODEL_RE.finditer(chunk):
            name = m.group(1).strip(".-")
            if len(name) < 3 or NOT_MODELS.fullmatch(name):
                continue
            counts[name] = counts.get(name, 0.0) + weight + 0.01 * len(name)  # prefer the most specific spelling
    if not counts:
        return None, None, "text"
    name = max(counts.items(), key=lambda kv: kv[1])[0]
    size_m = SIZE_RE.search(name)
    size = f"{size_m.group(1)}B" if size_m else None
    if size is None:
        near = re.search(re.escape(name) + r"\S{0,6}\s*(\d{1,4}(?:\.\d)?)\s?[Bb](?![\w])", text)
        around = near or re.search(r"(\d{1,4}(?:\.\d)?)\s?B\s*(参数|大模型|模型|parameters|params|model)", head, re.I)
        size = f"{around.group(1)}B" if around else None
        if near:
            name = f"{name} {size}"
    low = (head + " " + name).lower()
    vision = bool(re.search(r"-vl\b|vl-|llava|多模态|multimodal|vision-language|视觉|internvl|minicpm-v|\bvl\b", low))
    moe = bool(re.search(r"\bmoe\b|moe-|mixtral|-a\d+b\b|混合专家|mixture[- ]of[- ]experts", low))
    modality = "vision-language-moe" if vision and moe else "vision-language" if vision else "moe" if moe else "text"
    return name, size, modality


def extract_hardware(text: str) -> tuple[str | None, int | None, float | None, float | None]:
    """(gpu, count, memory GiB, host RAM GiB) from the first clause that names GPUs."""
    gpu = count = mem = None
    seen = 0
    for clause in _clauses(text):
        g = GPU_RE.search(clause)
        plain = re.search(r"\d+\s*(?:块|张|x|×)\s*GPU|GPU\s*[(（]每块|\d+\s*(?:GPUs|cards)\b", clause, re.I)
        if not g and not plain:
            continue
        name = g.group(1).upper().replace(" ", "") if g else None
        if gpu and name and name != gpu:
            continue  # another GPU type (a comparison, a different machine): only complete the first one
        seen += 1
        gpu = gpu or name
        c = COUNT_RE.search(clause)
        if c and count is None:
            n = int(next(x for x in c.groups() if x))
            count = n if 0 < n <= 4096 else None
        for m in MEM_RE.finditer(clause):
            v = float(m.group(1))
            if 4 <= v <= 300 and mem is None:
                mem = v
                break
        if (count and mem) or seen >= 3:
            break
    host = None
    h = HOST_RAM_RE.search(text)
    if h:
        host = float(next(x for x in h.groups() if x))
    return gpu, count, mem, host


# Settings named in words ("batch size从8改成4", "reduced the max sequence length to 2048") → the framework's key.
# Only where a number follows soon, so prose about batch sizes in general is left alone.
_NUM_SOON = r"(?=[^。.\n;；]{0,12}?(?:从|from|to|为|设|改|降|=|:|：|\d))"
KEY_ALIASES: list[tuple[re.Pattern, str | None]] = [
    (re.compile(r"(?<![A-Za-z_])(?:per[- ]device[- ])?(?:train(?:ing)?[- ])?(?:micro[- ])?batch[ -]?size(?![A-Za-z_])|"
                r"(?:每卡|单卡)?(?:训练)?批次大小|批大小|批处理大小" + _NUM_SOON, re.IGNORECASE), "per_device_train_batch_size"),
    (re.compile(r"(?<![A-Za-z_])gradient[ -]accumulation(?:[ -]steps)?(?![A-Za-z_])|梯度累积步数|梯度累加步数" + _NUM_SOON,
                re.IGNORECASE), "gradient_accumulation_steps"),
    (re.compile(r"(?<![A-Za-z_])max(?:imum)?[ -](?:sequence|seq)[ -]length(?![A-Za-z_])|序列长度|截断长度|上下文长度" + _NUM_SOON,
                re.IGNORECASE), None),  # the framework's own key: cutoff_len (LLaMA-Factory) or max_seq_length
]


def normalise_key_names(text: str, framework: str = "other") -> str:
    """Replace settings written in words by the config key the framework uses (see KEY_ALIASES)."""
    seq_key = "cutoff_len" if framework == "llamafactory" else "max_seq_length"
    for rx, key in KEY_ALIASES:
        text = rx.sub(f" {key or seq_key} ", text)
    return text


def extract_changes(text: str, framework: str = "other") -> tuple[list[KeyChange], dict[str, Any]]:
    """Typed fixes (key from → to, or an action) and the settings before the fix."""
    changes: dict[tuple[str, str], KeyChange] = {}
    settings: dict[str, Any] = {}

    def add(ch: KeyChange) -> None:
        """One change per key (actions without a key: one per action); a later, more specific reading wins."""
        slot = (ch.key, "") if ch.key and not ch.key.isupper() else (ch.key, ch.action or "")
        old = changes.get(slot)
        if old is None:
            changes[slot] = ch
        elif old.to_value is None and ch.to_value is not None:
            changes[slot] = ch.model_copy(update={"from_value": ch.from_value if ch.from_value is not None else old.from_value})
        elif old.from_value is None and ch.from_value is not None and ch.to_value is not None:
            changes[slot] = ch

    for kind, orig in ((kind, c) for kind, line in sections(text) for c in _clauses(line)):
        clause = normalise_key_names(orig, framework)  # patterns see keys; the reviewer sees the source's words
        if kind == "problem":
            # the problem statement describes the failing setup: "X=8" there is a setting, not a fix
            for rx in CHANGE_PATTERNS:
                for m in rx.finditer(clause):
                    add(KeyChange(key=m.group(1), from_value=_value(m.group(2)), to_value=_value(m.group(3)),
                                  clause=orig[:240]))
            for rx in (*SET_PATTERNS[2:], *BEFORE_PATTERNS):
                for m in rx.finditer(clause):
                    if not m.group(1).isupper():
                        settings.setdefault(m.group(1), _value(m.group(2)))
            continue
        for rx in CHANGE_PATTERNS:
            for m in rx.finditer(clause):
                key, a, b = m.group(1), _value(m.group(2)), _value(m.group(3))
                add(KeyChange(key=key, from_value=a, to_value=b, clause=orig[:240]))
                settings.setdefault(key, a)
        for rx in SET_PATTERNS:
            for m in rx.finditer(clause):
                key, v = m.group(1), _value(m.group(2))
                if key.isupper():
                    continue  # environment variables are actions (export ...), handled below
                add(KeyChange(key=key, to_value=v, clause=orig[:240]))
        for rx in BEFORE_PATTERNS:
            for m in rx.finditer(clause):
                settings.setdefault(m.group(1), _value(m.group(2)))
        for m in DIRECTION_PATTERN.finditer(clause):
            key = m.group(2)
            if not any(c.key == key for c in changes.values()):
                verb = "increase" if re.match(r"增加|提高|increase|raise", m.group(1), re.I) else "lower"
                add(KeyChange(key=key, action=f"{verb} {key}", clause=orig[:240]))
        for m in ENABLE_KEY.finditer(clause):
            add(KeyChange(key=m.group(1), to_value=True, clause=orig[:240]))
        if ENABLE_VERB.search(clause):
            for m in PAREN_BOOL_KEY.finditer(clause):
                add(KeyChange(key=m.group(1), to_value=True, clause=orig[:240]))
        for rx, key, value in COMPILED_PHRASE_FIXES:
            if rx.search(clause) and not any(c.key == key for c in changes.values()):
                frm, to = value if isinstance(value, tuple) else (None, value)
                add(KeyChange(key=key, from_value=frm, to_value=to, clause=orig[:240]))
        for m in PIN_RE.finditer(clause):
            add(KeyChange(key="", action=f"pin {m.group(1).lower()}=={m.group(2)}", clause=orig[:240]))
        for m in INSTALL_RE.finditer(clause):
            add(KeyChange(key="", action=f"pip install {m.group(2).lower().replace('_', '-')}", clause=orig[:240]))
        for m in ENV_RE.finditer(clause):
            add(KeyChange(key=m.group(1), action=f"export {m.group(1)}={m.group(2)}", clause=orig[:240]))
    # a "before" value the text states (cutoff_len为16384) completes a change that only gave the target
    out = []
    for ch in changes.values():
        if ch.key and ch.from_value is None and ch.to_value is not None and ch.key in settings \
                and settings[ch.key] != ch.to_value:
            ch = ch.model_copy(update={"from_value": settings[ch.key]})
        out.append(ch)
    said_worked = [normalise_key_names(c, framework) for _, line in sections(text) for c in _clauses(line)
                   if CONFIRMED.search(c)]
    for i, ch in enumerate(out):
        needle = ch.key if ch.key and not ch.key.isupper() else (ch.action or "").split("==")[0].split()[-1:]
        needle = needle if isinstance(needle, str) else (needle[0] if needle else "")
        if needle and any(needle in c for c in said_worked):
            out[i] = ch.model_copy(update={"confirmed": True})
    for ch in out:  # settings hold the values before the fix only
        if ch.key and ch.to_value is not None and settings.get(ch.key) == ch.to_value and ch.from_value is None:
            settings.pop(ch.key, None)
    return out, settings


def extract_errors(text: str) -> tuple[list[str], dict[str, float]]:
    lines: list[str] = []
    for m in ERROR_LINE_RE.finditer(text):
        line = m.group(0).strip().rstrip("。,，")
        if line not in lines and not re.match(r"(RuntimeError|ValueError)\s*$", line):
            lines.append(line[:300])
    numbers: dict[str, float] = {}
    for name, rx in CUDA_NUMBERS:
        m = rx.search(text)
        if m and name not in numbers:
            size = parse_size(m.group(1).replace(" ", " "))
            if size is not None:
                numbers[name] = round(size / GiB, 6)
    return lines[:8], numbers


def score_labels(text: str, changes: list[KeyChange]) -> dict[str, float]:
    """Label scores from the keyword rules (problem text counts fully, generic advice at 0.4) and the fixes."""
    scores: dict[str, float] = {}
    weighted = [(0.4 if kind == "advice" else 1.0, line) for kind, line in sections(text)]
    for label, weight, rx in COMPILED_LABEL_RULES:
        hits = sorted((f for f, line in weighted for _ in rx.finditer(line)), reverse=True)[:2]
        if hits:
            scores[label] = scores.get(label, 0.0) + weight * sum(hits)
    for ch in changes:
        label = KEY_LABELS.get(ch.key)
        if not label:
            continue
        # a concrete before→after change is the document's own account of what mattered
        bonus = 4.0 if ch.from_value is not None and ch.to_value is not None else 1.0
        bonus += 2.0 if ch.confirmed else 0.0  # the change the source says worked names the cause best
        if ch.key in SEQ_KEYS and isinstance(ch.from_value, int) and isinstance(ch.to_value, int) \
                and ch.to_value >= ch.from_value:
            continue
        scores[label] = scores.get(label, 0.0) + bonus
    return {k: round(v, 3) for k, v in scores.items()}


def detect_framework(text: str) -> tuple[str, str | None]:
    framework = next((name for name, rx in FRAMEWORKS if re.search(rx, text, re.IGNORECASE if name not in ("trl", "swift", "peft") else 0)), "other")
    launcher = None
    if re.search(r"deepspeed", text, re.I):
        launcher = "deepspeed"
    elif re.search(r"torchrun", text):
        launcher = "torchrun"
    elif re.search(r"accelerate launch", text):
        launcher = "accelerate"
    if framework == "deepspeed":
        framework = "other" if re.search(r"项目|project", text[:300], re.I) and not re.search(r"^DeepSpeed", text[:300]) else "deepspeed"
    return framework, launcher


def detect_method(text: str) -> str:
    head = text[:1500]
    if re.search(r"QLoRA|4[- ]?bit.{0,20}LoRA|LoRA.{0,20}4[- ]?bit", head, re.I):
        return "qlora"
    full = re.search(r"全量微调|全参数?微调|full[- ](parameter )?fine[- ]?tun|full fine-tune|finetuning_type:\s*full", head, re.I)
    lora = re.search(r"(?<!如)\bLoRA\b", head)
    if full and (not lora or full.start() < lora.start()):
        return "full"
    if lora:
        return "lora"
    if re.search(r"inference|推理服务|vLLM serve", head, re.I):
        return "inference"
    return "full"


def extract(title: str, text: str) -> Extraction:
    """All deterministic facts of one cleaned document."""
    name, size, modality = extract_model(title, text)
    gpu, count, mem, host = extract_hardware(text)
    framework, launcher = detect_framework(title + "\n" + text)
    changes, settings = extract_changes(text, framework)
    errors, numbers = extract_errors(text)
    scores = score_labels(title + "\n" + text, changes)
    top = max(scores.items(), key=lambda kv: kv[1])[0] if scores else None
    error_kind = "host_oom" if top == "offload_host_ram" else "cuda_oom"
    if not re.search(r"OOM|out of memory|内存不足|显存不足|显存溢出|OutOfMemory|Killed", text, re.I):
        error_kind = "related_error" if errors else "not_oom"
    phase = "evaluation" if top == "eval_accumulation" else "model_loading" if top == "model_load_oom" else \
        "generation" if top == "generation_kv_cache" else "train"
    return Extraction(title=title, language=detect_language(text), model_name=name, model_size=size,
                      modality=modality, gpu=gpu, gpu_count=count, gpu_memory_gib=mem, host_ram_gib=host,
                      framework=framework, launcher=launcher, method=detect_method(title + "\n" + text),
                      settings=settings, changes=changes, error_lines=errors, numbers=numbers,
                      label_scores=scores, error_kind=error_kind, phase=phase)
