"""set_hardware: the GPUs a message says the user has (model, count, memory per GPU)."""

from __future__ import annotations

import re
from typing import Any

from ..tools.gpus import lookup_gpu
from .intent_types import Intent
from ..tools.gpus import DATACENTER_GPU_PATTERN
from .intent_values import parse_count


_GPU_NAME = (r"(?:(?<![a-z0-9])|(?<=\dx))(?:nvidia\s*)?(?:geforce\s*)?(?:tesla\s*)?(?:rtx\s*)?"
             rf"(?P<name>{DATACENTER_GPU_PATTERN}|rtx\s*6000(?:\s*ada)?|[345]0[6789]0(?:\s*ti)?)(?![0-9])(?:\s*s\b)?")
_MEM = r"(?P<mem>\d{1,3}(?:\.\d+)?)\s*(?:g|gb|gib|g显存|gb显存)(?![a-z])"
_NUM = r"(?P<count>\d{1,3}|[一二两俩三四五六七八九十]{1,3}|one|two|three|four|five|six|seven|eight|sixteen|single|dual|a)"
_CNT_BEFORE = re.compile(_NUM + r"\s*(?:x|×|\*|张|块|个|台|卡|片|pcs)?\s*(?:of\s+)?(?:the\s+)?(?:nvidia\s+)?" + _GPU_NAME, re.I)
_CNT_AFTER = re.compile(_GPU_NAME + r"[\s\-_]*(?:(?:sxm\d?|pcie|hbm\d?e?)[\s\-_]*)*(?:" + _MEM + r")?\s*(?:(?:x|×|\*)\s*(?P<count2>\d{1,3})|(?P<count3>\d{1,3}|[一二两三四五六七八九十]{1,3})\s*(?:张|块|卡|个))?", re.I)
_GPU_COUNT_ONLY = re.compile(
    r"(?:(?P<n>\d{1,3}|[一二两俩三四五六七八九十]{1,3}|one|two|three|four|five|six|seven|eight|sixteen|single|a)\s*"
    r"(?:x\s*)?(?:gpus?|cards?|devices?|张卡|块卡|张显卡|块显卡|卡(?!住))|(?P<zh>单|双)卡)", re.I)
_ONE_GPU = re.compile(  # "one 24GB card", "一张24G的卡", "a single RTX 4090": the count is 1
    r"(?:\b(?:only\s+)?(?:one|single|a\s+single|1)\b(?!\s+(?:of|more|other)\b)|(?:只有|只|仅有|就)?(?:一|1)\s*(?:张|块|个|台|片))"
    r"\s*(?:[\w.\-]+\s*){0,3}?(?:gpus?|cards?|devices?|卡|显卡)", re.I)
_ZH_TOTAL = re.compile(r"(?:共|一共|总共|总计)\s*(\d{1,3}|[一二两三四五六七八九十]{1,3})\s*(?:张|块|台|卡|个)")
_MEM_ONLY = re.compile(
    r"(?:(?:显存|memory|vram)\D{0,6}" + _MEM + r"|" + _MEM.replace("?P<mem>", "?P<mem2>") + r"\s*(?:的)?\s*(?:显存|显卡|vram|cards?|gpus?|memory|of memory|卡))", re.I)


def _host_memory(low: str, m: re.Match) -> bool:
    """'256GB of RAM' / '512G内存' is the host's memory, not the GPU's."""
    window = low[max(0, m.start() - 14): m.end() + 16]
    return bool(re.search(r"\bram\b|内存|host|system memory|cpu memory|\bdram\b", window))


def hardware_intent(text: str) -> Intent | None:
    """set_hardware from '4x A100 40GB', '我有4张A100 40G', 'two 24GB cards' (GPU model, count, memory per GPU)."""
    low = text.lower()
    slots: dict[str, Any] = {}
    ev = ""
    m = _CNT_BEFORE.search(low)
    if m:
        slots["gpu_text"] = m.group("name")
        n = parse_count(m.group("count"))
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
            slots["count"] = parse_count(c)
        ev = ev or m2.group(0)
    m3 = None
    if "count" not in slots and (mt := _ZH_TOTAL.search(low)):
        slots["count"] = parse_count(mt.group(1))
    if "count" not in slots and (m1 := _ONE_GPU.search(low)):
        slots["count"] = 1
        ev = ev or m1.group(0)
    if "count" not in slots:
        m3 = _GPU_COUNT_ONLY.search(low)
        if m3:
            slots["count"] = 1 if m3.group("zh") == "单" else 2 if m3.group("zh") == "双" else parse_count(m3.group("n"))
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
