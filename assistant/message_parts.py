"""Split a chat message (and attached files) into what it carries: a log, a training config, a model
config.json, or chat text for the intent parser."""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import BaseModel

from ..tools.errors import InputError

PartKind = Literal["log", "config", "model_config", "chat"]

MAX_PART_CHARS = 8 * 1024 * 1024  # a part beyond this is cut (logs keep their end, where the error is)

# Keys that only training configs carry (LLaMA-Factory, HF TrainingArguments, TRL, axolotl, DeepSpeed, launchers).
TRAINING_KEYS = (
    "model_name_or_path", "base_model", "finetuning_type", "stage", "do_train", "dataset", "template", "cutoff_len",
    "max_seq_length", "model_max_length", "per_device_train_batch_size", "per_device_eval_batch_size",
    "gradient_accumulation_steps", "learning_rate", "num_train_epochs", "max_steps", "lr_scheduler_type", "bf16", "fp16",
    "deepspeed", "gradient_checkpointing", "lora_rank", "lora_target", "lora_alpha", "quantization_bit", "output_dir",
    "save_steps", "logging_steps", "warmup_ratio", "optim", "flash_attn", "zero_optimization", "train_micro_batch_size_per_gpu",
    "train_batch_size", "micro_batch_size", "sequence_len", "load_in_4bit", "load_in_8bit", "image_max_pixels",
    "video_maxlen", "freeze_vision_tower", "eval_steps", "eval_strategy", "evaluation_strategy", "packing",
    "sample_packing", "adapter", "lora_r", "offload_optimizer", "stage3_param_persistence_threshold", "mm_projector_lr",
)
_KEY_LINE = re.compile(r'^\s*(?:--|"|-\s+)?([A-Za-z_][\w.]*)"?\s*(?:[:=]|\s+\S)', re.M)
_LAUNCH = re.compile(r"\b(?:torchrun|deepspeed|accelerate launch|llamafactory-cli|python3? -m torch\.distributed|swift sft|axolotl)\b")
_LOG_LINE = re.compile(
    r"Traceback \(most recent call last\)|^\s*File \".*\", line \d+|\d{2}:\d{2}:\d{2}|^\[(?:INFO|WARNING|ERROR|rank\d+)|"
    r"^\s*\[rank\d+\]|\d+%\|[^|]*\|\s*\d+/\d+|Error:|warnings\.warn|^\s*(?:INFO|WARNING|ERROR)\b|\bstep\s+\d+|loss[:=]\s*\d",
    re.M,
)
_MODEL_CONFIG_KEYS = {"architectures", "num_hidden_layers", "hidden_size", "num_attention_heads", "vocab_size"}
_FENCE = re.compile(r"```[^\n`]*\n(.*?)```", re.S)


class MessagePart(BaseModel):
    kind: PartKind
    text: str
    name: str | None = None
    truncated: bool = False


def training_key_hits(text: str) -> int:
    keys = {m.group(1).lower() for m in _KEY_LINE.finditer(text[:200_000])}
    keys |= {k.lower() for k in re.findall(r'"([A-Za-z_]\w*)"\s*:', text[:200_000])}
    return len(keys.intersection(TRAINING_KEYS))


def is_model_config(text: str) -> bool:
    s = text.strip()
    if not s.startswith("{"):
        return False
    try:
        data = json.loads(s)
    except (ValueError, RecursionError):
        return False
    return isinstance(data, dict) and len(_MODEL_CONFIG_KEYS.intersection(data)) >= 3 and "zero_optimization" not in data


def classify_text(text: str) -> PartKind:
    """What a block of text is. A memory error in it makes it a log, whatever else it contains."""
    stripped = text.strip()
    if not stripped:
        return "chat"
    if is_model_config(stripped):
        return "model_config"
    from ..tools.log_parser import parse_log  # the parser is the authority on "this is an OOM log"

    report = parse_log(stripped)
    if report.is_memory_error or report.kind == "related_error":
        return "log"
    lines = [ln for ln in stripped.splitlines() if ln.strip()]
    hits = training_key_hits(stripped)
    if hits >= 3 or (hits >= 2 and len(lines) <= 40) or (hits >= 1 and _LAUNCH.search(stripped) and len(lines) <= 80):
        log_lines = len(_LOG_LINE.findall(stripped))
        if log_lines < max(3, hits):
            return "config"
    if len(_LOG_LINE.findall(stripped)) >= 3 or len(lines) >= 15:
        return "log"
    return "chat"


def classify_file(name: str, text: str) -> PartKind:
    """An attached file: its content decides, its extension breaks ties (a .yaml is never chat)."""
    kind = classify_text(text)
    ext = name.lower().rsplit(".", 1)[-1] if "." in name else ""
    if kind == "chat":
        if ext in ("yaml", "yml", "json", "sh", "toml", "cfg"):
            return "config"
        return "log"
    if kind == "log" and ext in ("yaml", "yml", "json", "toml") and training_key_hits(text) >= 2:
        return "config"
    return kind


def split_message(message: str, files: dict[str, str] | None = None) -> list[MessagePart]:
    """The parts of one turn: each fenced block and each file classified, the remaining prose as chat."""
    parts: list[MessagePart] = []
    message = message or ""
    blocks = [m.group(1) for m in _FENCE.finditer(message)]
    prose = _FENCE.sub("\n", message).strip() if blocks else message.strip()
    if not blocks and prose:
        kind = classify_text(prose)
        if kind != "chat":
            parts.append(_part(kind, prose))
            prose = ""
    for block in blocks:
        kind = classify_text(block)
        parts.append(_part("log" if kind == "chat" else kind, block))
    for name, text in (files or {}).items():
        parts.append(_part(classify_file(name, text), text, name=name))
    if prose:
        parts.append(MessagePart(kind="chat", text=prose[:MAX_PART_CHARS]))
    return parts


def _part(kind: PartKind, text: str, name: str | None = None) -> MessagePart:
    truncated = len(text) > MAX_PART_CHARS
    if truncated:
        text = text[-MAX_PART_CHARS:] if kind == "log" else text[:MAX_PART_CHARS]
    return MessagePart(kind=kind, text=text, name=name, truncated=truncated)


def config_name_for(text: str) -> str:
    """A file name for a pasted config, so the config reader detects its format."""
    s = text.lstrip()
    if s.startswith("{"):
        return "pasted_deepspeed.json" if "zero_optimization" in s else "pasted_config.json"
    if _LAUNCH.search(text) or re.search(r"^\s*--\w+", text, re.M) or s.startswith("#!"):
        return "pasted_run.sh"
    return "pasted_config.yaml"


def is_deepspeed_config(name: str, text: str) -> bool:
    return name.lower().endswith(".json") and "zero_optimization" in text


def referenced_deepspeed(config_text: str) -> str | None:
    """The DeepSpeed file a training config points to (`deepspeed: ds_z3.json`, `--deepspeed ds.json`)."""
    m = re.search(r"""(?:^|\s)-{0,2}"?deepspeed"?\s*[:=\s]\s*["']?([^\s"',}]+\.json)""", config_text, re.M)
    return m.group(1) if m else None


def text_files(files: dict[str, Any] | None) -> dict[str, str] | None:
    """Attached files as text: bytes are decoded (UTF-8, replacement); binary data is refused with a one-line error."""
    if not files:
        return None
    out: dict[str, str] = {}
    for name, data in files.items():
        if isinstance(data, bytes):
            if b"\x00" in data[:8192]:
                raise InputError(f"{name} looks binary, not a text log or config: attach the .log / .yaml / .json / .sh file")
            data = data.decode("utf-8", errors="replace")
        if not isinstance(data, str):
            raise InputError(f"{name}: expected file text, got {type(data).__name__}")
        if "\x00" in data[:8192]:
            raise InputError(f"{name} looks binary, not a text log or config: attach the .log / .yaml / .json / .sh file")
        out[str(name)[:255]] = data
    return out
