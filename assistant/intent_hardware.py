"""set_hardware: the GPUs a message says the user has (model, count per node, memory per GPU, node count).

How a message is read:
- every GPU name in it is found; a negated one ("not A100", "不是A100", "no A100 available") is not the user's card,
  the first one left is;
- the memory written next to that name ("80G A100", "A100 80G", "A100-80GB", "A100 GPU, 80GB", "V100 x 8, the 32G
  ones", "4张24GB显存的4090") picks the variant sold with it; a negated size ("not 40G"), host RAM ("512G内存") and a
  total over all GPUs ("64 GB of vram total") are not a GPU's memory;
- the count is the one written before the name ("8x", "8张", "quad-", "单张"), after it ("x 8", "8卡"), or alone
  ("8 gpus", "8卡", "单卡");
- nodes: "2 nodes x 8", "2 nodes with 8 GPUs each", "两个节点，每个节点8张卡", "单机8卡", "一台机器", "2机16卡",
  "16 H100s, i.e. 2 nodes". The count is per node unless the message says it is a total ("16 ... over 2 nodes",
  "2机16卡"), which is then divided by the nodes.
"""

from __future__ import annotations

import re
from typing import Any

from ..tools.gpus import DATACENTER_GPU_PATTERN, lookup_gpu, sized_variant
from .intent_types import Intent
from .intent_values import parse_count

_ZH_NUM = r"[一二两俩三四五六七八九十]{1,3}"
_EN_NUM = r"one|two|three|four|five|six|seven|eight|ten|twelve|sixteen|single|dual|quad|twin"
_NUM = rf"(?:\d{{1,4}}|{_ZH_NUM}|{_EN_NUM})"

_GPU_NAME = re.compile(
    r"(?:(?<![a-z0-9])|(?<=\dx))(?:nvidia\s*)?(?:geforce\s*)?(?:tesla\s*)?(?:rtx\s*)?"
    rf"(?P<name>{DATACENTER_GPU_PATTERN}|rtx\s*6000(?:\s*ada)?|[2345]0[6789]0(?:\s*(?:ti|d|super))?)(?![0-9])(?:s\b)?", re.I)
# a size as users write it: 80G, 80GB, 80 GiB, 24gig, 32G显存
_MEM = re.compile(r"(?<![\d.])(?P<mem>\d{1,3}(?:\.\d+)?)\s*(?:g|gb|gib)(?![a-z])", re.I)
_NEGATION_BEFORE = re.compile(r"(?:\bnot|\bno|isn't|aren't|wasn't|instead of|rather than|other than|besides|不是|并非|没有|非|而非|除了)"
                              r"\s*(?:an?\s+|the\s+|用的?)?$", re.I)
_NEGATION_AFTER = re.compile(r"^\s*(?:isn't|is not|aren't|are not|not available|unavailable|不可用|没有|用不了)", re.I)
_HOST_WORDS = re.compile(r"\bram\b|内存|\bhost\b|system memory|cpu memory|\bdram\b|\bswap\b", re.I)
_GPU_OWNER = re.compile(r"(?:each|per|every|one|the)\s+(?:gpu|card)s?\s*(?:has|have|with|is|are|:)?\s*(?:only\s+)?$|"
                        r"(?:gpu|card)s?\s+(?:has|have|with)\s+$|每张卡?|每卡|单卡|每块卡?|显存\s*$", re.I)
_TOTAL_AFTER = re.compile(r"^\s*(?:of\s+)?(?:v?ram|gpu memory|memory|显存)?\s*(?:in\s+)?(?:total|combined|altogether|overall|in all)\b", re.I)
_TOTAL_BEFORE = re.compile(r"(?:total|=|总共|一共|合计|总显存|总计)\s*(?:of\s+)?$", re.I)

# a count written just before the name: "8x", "8 x", "8*", "8张", "quad-", "a single", "单张", "4张24GB显存的"
_COUNT_BEFORE = re.compile(
    rf"(?:(?<![\d.a-z])(?P<count>{_NUM})(?![\d.])|(?P<one>单|一))\s*(?:x|×|\*|张|块|个|台|卡|片|pcs|-)?\s*(?:of\s+)?(?:the\s+)?"
    r"(?:(?<![\d.])(?P<mem>\d{1,3})\s*(?:g|gb|gib)\s*(?:显存)?\s*(?:的)?\s*)?$", re.I)
# a count written just after the name: "x 8", "* 8", "×4", "8张", "(80G) x 8"
_COUNT_AFTER = re.compile(
    r"[\s\-_]*(?:(?:sxm\d?|pcie|hbm\d?e?|nvl)[\s\-_]*)*(?:\(?\s*\d{1,3}\s*(?:g|gb|gib)\s*\)?s?\s*)?"
    rf"(?:(?:x|×|\*)\s*(?P<count>\d{{1,4}})(?![\d.]|\s*(?:g|gb|gib)\b)|(?P<count2>\d{{1,4}}|{_ZH_NUM})\s*(?:张|块|卡|个))", re.I)
_COUNT_ONLY = re.compile(
    rf"(?:(?<![\d.a-z])(?P<n>{_NUM}|a(?:\s+single)?)(?![\d.])\s*(?:[x*]\s*)?(?:\d{{1,3}}(?:\.\d+)?\s*(?:g|gb|gib)\s*)?(?:nvidia\s+|amd\s+|identical\s+|same\s+)?"
    r"(?:gpus?|cards?|devices?|张卡|块卡|张显卡|块显卡|显卡|卡(?!住))|(?P<zh>单|双|四|八)卡|"
    rf"\bthere\s+(?:are|is)\s+(?P<t>{_NUM})\b(?:\s+of\s+them)?|(?<![\d.])(?P<o>{_NUM})\s+of\s+them\b|"
    r"(?:only|just)\s+(?P<one>one|a single|1)\s+(?:gpu|card)|\bthe\s+(?P<the>single)\s+(?:gpu|card)|"
    rf"(?<![\d.])(?P<m>\d{{1,3}}|{_ZH_NUM})\s*(?:张|块)\s*(?:\d{{1,3}}(?:\.\d+)?\s*(?:g|gb|gib)\s*(?:显存)?\s*的?\s*)(?:显)?卡)", re.I)
# "with a T4", "on an A10G", "I have a 4090": one card
_A_CARD = re.compile(r"(?:\bwith|\bhave|\bhas|\bgot|\bon|\busing|\buse|\brent(?:ed)?|\bonly|\bjust)\s+an?\s+(?:nvidia\s+|geforce\s+|tesla\s+)?$", re.I)
_ZH_TOTAL = re.compile(rf"(?:共|一共|总共|总计)\s*(\d{{1,3}}|{_ZH_NUM})\s*(?:张|块|个|卡)(?!\s*(?:机器|服务器))")

# nodes
_NODES = re.compile(
    rf"(?<![\d.a-z])(?P<n>{_NUM})\s*(?:x\s*)?(?:nodes?|machines?|servers?|hosts?|boxes)\b|"
    rf"(?P<zh>\d{{1,4}}|{_ZH_NUM})\s*(?:台|个)\s*(?:机器|服务器|节点|主机)|(?P<zh2>\d{{1,4}}|{_ZH_NUM})\s*个?节点|"
    rf"(?P<ji>\d{{1,4}}|{_ZH_NUM})\s*(?:机|台)\s*(?=(?:\d{{1,4}}|{_ZH_NUM})\s*(?:张|块)?\s*(?:卡|显卡))", re.I)
_ONE_NODE = re.compile(r"\b(?:a\s+single|single|one|1)[\s-]+(?:node|machine|server|host|box)\b|单机|单节点|单台|"
                       r"(?:一|1)\s*台\s*(?:机器|服务器|主机)|(?:一|1)\s*个\s*节点", re.I)
_PER_NODE = re.compile(r"\beach\b|\bper\s+(?:node|machine|server|host)|\bevery\s+(?:node|machine)|/node|"
                       r"nodes?\s*(?:x|×|\*)\s*\d|(?:nodes?|machines?)\s+(?:with|of|having)\s+\d|每台|每个节点|每节点|每机|单机|单节点", re.I)
_TOTAL_COUNT = re.compile(r"\btotal\b|\bin all\b|altogether|overall|\bover\b|\bacross\b|i\.e\.|\bie\b|spread|split|"
                          rf"共|总共|一共|合计|总计|(?:\d|{_ZH_NUM})\s*机\s*(?:\d+|{_ZH_NUM})\s*卡", re.I)


def normalise(text: str) -> str:
    """The message as the readers match it: lower case, ASCII punctuation, 'a-100' → 'a100', '24gig' → '24g'."""
    low = text.lower()
    low = low.translate(str.maketrans({"（": "(", "）": ")", "×": "x", "＊": "*", "，": ",", "：": ":", "＝": "=", "　": " "}))
    low = re.sub(r"(?<![a-z])([ahlvt])-(\d{2,3})(?!\d)", r"\1\2", low)
    low = re.sub(r"(\d)\s*(?:gigs?|gigabytes?)\b", r"\1g", low)
    return low


def _negated(low: str, start: int, end: int) -> bool:
    return bool(_NEGATION_BEFORE.search(low[max(0, start - 14): start]) or _NEGATION_AFTER.search(low[end: end + 20]))


def gpu_memories(low: str) -> list[tuple[float, int, int]]:
    """The per-GPU sizes a (normalised) message states, with their spans: not host RAM, not negated, not a total."""
    out = []
    for m in _MEM.finditer(low):
        before, after = low[max(0, m.start() - 16): m.start()], low[m.end(): m.end() + 16]
        owner = _GPU_OWNER.search(low[max(0, m.start() - 24): m.start()])
        if _HOST_WORDS.search(before + " " + after) and not owner and "显存" not in after[:4]:
            continue
        if _negated(low, m.start(), m.end()) or _TOTAL_AFTER.search(low[m.end(): m.end() + 30]) or _TOTAL_BEFORE.search(before):
            continue
        out.append((float(m.group("mem")), m.start(), m.end()))
    return out


def _gap(a: tuple[int, int], b: tuple[int, int]) -> int:
    return max(a[0] - b[1], b[0] - a[1], 0)


def nodes_said(low: str) -> int | None:
    """The node (machine) count a normalised message states: '2 nodes', '两台机器', '2机16卡', '单机', 'one node'."""
    for m in _NODES.finditer(low):
        raw = m.group("n") or m.group("zh") or m.group("zh2") or m.group("ji")
        n = parse_count(raw)
        if n and not _negated(low, m.start(), m.end()):
            return n
    m1 = _ONE_NODE.search(low)
    return 1 if m1 and not _negated(low, m1.start(), m1.end()) else None


def hardware_intent(text: str) -> Intent | None:
    """set_hardware from '4x A100 40GB', '我有4张A100 40G', 'two 24GB cards', '2 nodes x 8 H800' (GPU model, count per
    node, memory per GPU, nodes)."""
    low = normalise(text)
    slots: dict[str, Any] = {}
    ev = ""
    names = [m for m in _GPU_NAME.finditer(low) if not _negated(low, m.start(), m.end())]
    mems = gpu_memories(low)
    name = names[0] if names else None
    mem_taken: tuple[int, int] | None = None
    if name is not None:
        slots["gpu_text"] = re.sub(r"\s+", " ", name.group("name"))
        ev = name.group(0)
        before = _COUNT_BEFORE.search(low, max(0, name.start() - 24), name.start())
        if before and (before.group("count") or before.group("one")):
            n = 1 if before.group("one") and not before.group("count") else parse_count(before.group("count"))
            if n:
                slots["count"] = n
            if before.group("mem"):
                slots["memory_gib"] = float(before.group("mem"))
        if "count" not in slots and _A_CARD.search(low, max(0, name.start() - 24), name.start()):
            slots["count"] = 1
        after = _COUNT_AFTER.match(low, name.end(), name.end() + 30)
        if after and "count" not in slots:
            slots["count"] = parse_count(after.group("count") or after.group("count2"))
        near = [(abs(_gap((s, e), name.span())), v, (s, e)) for v, s, e in mems if _gap((s, e), name.span()) <= 40]
        if near and "memory_gib" not in slots:
            _, value, mem_taken = min(near)
            slots["memory_gib"] = value
    if "count" not in slots and (mt := _ZH_TOTAL.search(low)):
        slots["count"] = parse_count(mt.group(1))
    if "count" not in slots:
        for m3 in _COUNT_ONLY.finditer(low):
            if _negated(low, m3.start(), m3.end()):
                continue
            zh = m3.group("zh")
            n = ({"单": 1, "双": 2, "四": 4, "八": 8}[zh] if zh else 1 if (m3.group("one") or m3.group("the"))
                 else parse_count(m3.group("n") or m3.group("m") or m3.group("t") or m3.group("o")))
            if n:
                slots["count"] = n
                ev = ev or m3.group(0)
                break
    if "memory_gib" not in slots and mems:
        # a size without a card name: only when the words tie it to the GPUs ("each gpu has 24g", "显存24G", "24G的卡")
        for value, s, e in mems:
            ctx = low[max(0, s - 24): e + 12]
            if re.search(r"gpu|card|显存|显卡|卡|vram|memory|each|每张|每块|每卡", ctx):
                slots["memory_gib"] = value
                break
    nodes = nodes_said(low)
    if nodes is not None:
        slots["nodes"] = nodes
        count = slots.get("count")
        per_node = _PER_NODE.search(re.sub(r"\d\s*(?:g|gb|gib)\s+each\b", " ", low))   # "32GB each" is per GPU
        if count and nodes > 1 and not per_node and _TOTAL_COUNT.search(low) and count % nodes == 0 and count > nodes:
            slots["count"] = count // nodes
    if slots.get("count") is None:
        slots.pop("count", None)
    if not slots:
        return None
    if "gpu_text" in slots:
        spec = lookup_gpu(slots["gpu_text"])
        if spec is not None:
            slots["gpu"] = spec.name
            mem = slots.get("memory_gib")
            variant = sized_variant(spec.name, mem) if mem else None
            if variant is not None:
                # a size the catalogue sells the card with (A100 40/80, V100 16/32) names the variant
                slots["gpu"] = variant.name
                slots.pop("memory_gib")
            elif mem is None:
                slots["bare"] = True   # a name without a size: it does not override a known variant of the same card
    return Intent(name="set_hardware", slots=slots, evidence=(ev or text[:60]).strip())
