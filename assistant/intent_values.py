"""Numbers and slot values as users type them in English and Chinese ('8k', 'zero3', '四', 'dual')."""

from __future__ import annotations

import re
from typing import Any

from ..tools.units import count_said

_ZH_DIGITS = {"零": 0, "一": 1, "二": 2, "两": 2, "俩": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_EN_NUMBERS = {"one": 1, "a": 1, "single": 1, "two": 2, "dual": 2, "three": 3, "four": 4, "five": 5, "six": 6,
               "seven": 7, "eight": 8, "sixteen": 16, "quad": 4, "twin": 2, "ten": 10, "twelve": 12, "thirty-two": 32, "sixty-four": 64}


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


def parse_count(text: str) -> int | None:
    """A count as users write it: 'four', 'dual', '四', '16'."""
    text = " ".join(text.lower().split())
    if text == "a single":
        return 1
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
    if m:  # "8k" context = 8192 tokens
        return count_said(m.group(1), True)
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
