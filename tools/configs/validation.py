"""Impossible values in a user's config: a negative batch, zero accumulation steps, `cutoff_len: -2048`, a NaN learning
rate, a ZeRO stage 4 or a batch of a billion. Each is a typo or a paste error, so it stops the answer with an error that
names the file, the line and the key (exit 2), instead of being read as "not set" and replaced by a default that would
make the fix look like it fits.

Values nobody can check here pass: unset (null), DeepSpeed's "auto" (lm-eval's "auto:4"), shell variables and templates
($BS, {{bs}}).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from ..errors import InputError
from .keys import FIELD_KEYS, LORA_RANK_KEYS, SEQ_LEN_KEYS
from .schema import ConfigDocument


class ImpossibleValue(InputError):
    """A config value no run can have; always an error, whatever else the input shows."""


@dataclass(frozen=True)
class Rule:
    """What a setting may be: a whole number (or any positive number) within [low, high]."""

    what: str
    low: float
    high: float
    whole: bool = True
    allowed: tuple[int, ...] = ()   # when set, only these values


_BATCH = Rule("a batch size (at least 1)", 1, 1 << 16)
_STEPS = Rule("a number of accumulation steps (at least 1)", 1, 1 << 16)
_TOKENS = Rule("a length in tokens (at least 1)", 1, 1 << 24)
_RANK = Rule("a LoRA rank (at least 1)", 1, 1 << 16)
_PIXELS = Rule("a pixel count (at least 1)", 1, 1 << 32)
RULES: dict[str, Rule] = {
    **dict.fromkeys((*FIELD_KEYS["micro_batch"], *FIELD_KEYS["eval_batch"],
                     "train_batch_size", "global_batch_size"), _BATCH),
    **dict.fromkeys((*FIELD_KEYS["grad_accum"], "eval_accumulation_steps", "grad_accumulation_steps"), _STEPS),
    **dict.fromkeys((*SEQ_LEN_KEYS, "max_source_length", "max_target_length", "max_model_len"), _TOKENS),
    **dict.fromkeys(LORA_RANK_KEYS, _RANK),
    "lora_alpha": Rule("a LoRA alpha (above 0)", 1e-9, 1 << 16, whole=False),
    **dict.fromkeys(("image_max_pixels", "max_pixels", "video_max_pixels"), _PIXELS),
    "num_train_epochs": Rule("a number of epochs (above 0)", 1e-9, 1e6, whole=False),
    "learning_rate": Rule("a learning rate (above 0)", 1e-15, 100, whole=False),
    "quantization_bit": Rule("a quantization width (2, 3, 4, 5, 6 or 8 bits)", 2, 8, allowed=(2, 3, 4, 5, 6, 8)),
    "zero_stage": Rule("a ZeRO stage (0 to 3)", 0, 3),
    "stage": Rule("a ZeRO stage (0 to 3)", 0, 3),   # only read inside zero_optimization (see check_deepspeed)
}
# "auto", $BS, {{bs}}, <BS>; lm-evaluation-harness's --batch_size auto:4 (find the largest batch, 4 times per run)
_UNCHECKED = re.compile(r"^\s*(?:auto(?::\d{1,4})?|none|null|~|)\s*$|[$%{}<>]", re.IGNORECASE)


def problem(key: str, value: Any) -> str | None:
    """Why `value` is impossible for `key` (None when it is possible, unchecked, or the key has no rule)."""
    rule = RULES.get(key)
    if rule is None or value is None:
        return None
    if isinstance(value, str):
        if _UNCHECKED.search(value):
            return None
        try:
            number = float(value.strip().strip("'\"").replace("_", ""))
        except ValueError:
            return f"not a number; it must be {rule.what}"
    elif isinstance(value, bool):
        return f"a yes/no value; it must be {rule.what}"
    elif isinstance(value, (int, float)):
        number = float(value)
    else:
        return None   # a list or mapping: the format readers say what they make of it
    if math.isnan(number) or math.isinf(number):
        return f"not a finite number; it must be {rule.what}"
    if rule.whole and not number.is_integer():
        return f"not a whole number; it must be {rule.what}"
    if number < rule.low:
        return f"{'zero' if number == 0 else 'negative' if number < 0 else 'too small'}; it must be {rule.what}"
    if number > rule.high:
        return f"absurdly large (over {rule.high:,.0f}); it must be {rule.what}"
    if rule.allowed and int(number) not in rule.allowed:
        return f"not possible; it must be {rule.what}"
    return None


def setting_problem(key: str, value: Any) -> str | None:
    """`problem` for a top-level setting: LLaMA-Factory's `stage` is the objective (sft, dpo), not a ZeRO stage."""
    return None if key == "stage" else problem(key, value)


def key_line(text: str, key: str) -> int | None:
    """The first line where `text` sets `key` (YAML, JSON, shell flag, Python keyword, key=value): 1-based."""
    m = re.search(rf"""(?:^|[\s,({{'"-])({re.escape(key)})['"]?[ \t]*(?:[:=：]|[ \t]+\S|$)""", text, re.MULTILINE)
    return text.count("\n", 0, m.start(1)) + 1 if m else None


def impossible(name: str, key: str, value: Any, why: str, line: int | None) -> ImpossibleValue:
    """The error for one impossible value: the file, the line, the key, the value and what it must be."""
    where = f"{name} line {line}" if line else name
    return ImpossibleValue(f"{where}: {key} = {value!r} is impossible: {why}. Correct it and run again")


def check_config(doc: ConfigDocument) -> None:
    """Raise ImpossibleValue for the first impossible value of the config's settings or its DeepSpeed config."""
    for key, value in doc.settings.items():
        why = setting_problem(key, value)
        if why:
            raise impossible(doc.name, key, value, why, key_line(doc.text, key))
    if isinstance(doc.deepspeed, dict):
        name = doc.deepspeed_name or doc.name
        text = doc.deepspeed_text if doc.deepspeed_text is not None else doc.text
        check_deepspeed(doc.deepspeed, name, text if doc.deepspeed_text is not None or doc.deepspeed_inline
                        or doc.format == "deepspeed_json" else "")


def check_deepspeed(ds: dict[str, Any], name: str, text: str) -> None:
    """DeepSpeed's batch keys and ZeRO stage ("auto" passes)."""
    for key in ("train_micro_batch_size_per_gpu", "train_batch_size", "gradient_accumulation_steps"):
        why = problem(key, ds.get(key))
        if why:
            raise impossible(name, key, ds[key], why, key_line(text, key))
    zero = ds.get("zero_optimization")
    if isinstance(zero, dict):
        why = problem("stage", zero.get("stage"))
        if why:
            raise impossible(name, "zero_optimization.stage", zero["stage"], why, key_line(text, "stage"))
