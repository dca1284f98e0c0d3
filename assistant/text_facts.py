"""Facts the user's own words state beside the log: the GPUs ("8x A100 80GB", "4张10G 3080"), the host's RAM
("512GB内存"), the sequence length ("context length is 32k"), the micro-batch ("bs=1"), the method ("QLoRA") and
gradient checkpointing said to be off ("the gradient checkpointing is NOT implemented"). They fill only what the log,
the config and the flags left unsaid (at a default), each with provenance "user" and the words it came from."""

from __future__ import annotations

import re

from ..tools.described_oom import is_prose
from ..tools.gpus import lookup_gpu, nominal_card
from ..tools.log_cues import FULL_SAID, METHOD_CONTRAST, adapter_named
from ..tools.root_causes.weights import QUOTE_SHORT
from ..tools.log_parser.lines import edge_lines
from ..tools.training_setup import TrainingSetup
from ..tools.units import count_said
from .intent_hardware import hardware_intent
from .intent_values import parse_count

MAX_LINES = 400          # lines read at each end: the user's words sit around the pasted log, not inside a 100 MB trace
MAX_LINE = 1000

_K = r"(\d{1,6}(?:\.\d)?)\s{0,2}(k|K)?"
_SEQ = re.compile(r"(?:context|sequence|seq|cutoff|max|model_max)[ _-]?(?:length|len)\b[^\d\n]{0,24}?" + _K + r"(?![\w.])"
                  r"|" + _K + r"\s{0,2}(?:tokens?\s{0,2})?(?:的\s{0,2})?(?:context|上下文|长度|序列)"
                  r"|(?:上下文|序列|截断)长度\s{0,2}(?:为|是|设为|设置为|=|:|：)?\s{0,2}" + _K + r"(?![A-Za-z0-9.])"
                  # samples said to be that long: "sequences that are over 5000 tokens long", "long prompts (~24K
                  # tokens)", "(total sample length >30k tokens)"; a count of tokens said of nothing ("Maximum
                  # concurrency for 4096 tokens per request") is not a length
                  r"|(?:over|above|up to|longer than|to|[(（][^)）\n]{0,30}?)\s{0,2}(?:~|≈|>=?|about\s)?\s{0,2}" + _K
                  + r"\s{0,2}tokens?(?:\s{1,2}long|\s{0,2}[)）])"
                  # ...and a length written as the samples' measure: "13k-token sequences", "8192 token prompts"
                  r"|" + _K + r"[- ]tokens?\s{1,2}(?:long\s{1,2})?"
                  r"(?:sequences?|samples?|inputs?|prompts?|contexts?|documents?)\b",
                  re.IGNORECASE)
# ... "batch size per device = 16", "batch size per GPU is 1": the micro-batch too
_BATCH = re.compile(r"(?<![A-Za-z_])(?:bs|batch[ _]?size|micro[ _]?batch(?:[ _]?size)?|per_device_train_batch_size)"
                    r"(?:\s{1,2}(?:per|on each|for each)\s{1,2}(?:device|GPU|card))?"
                    r"\s{0,2}(?:=|:|is|of|为|设为|设置为)?\s{0,2}(\d{1,4})(?!\d|\.\d)", re.IGNORECASE)
# "512GB内存", "256 GB of RAM", "1.4TB host memory": the host's memory (not the GPU's)
_HOST_RAM = re.compile(r"(\d{1,4}(?:\.\d)?)\s{0,2}(T|G)i?B?\s{0,3}(?:of\s{1,3})?(?:host\s{1,3}|system\s{1,3}|CPU\s{1,3})?"
                       r"(?:内存|RAM\b|memory\s{0,2}\(?RAM|host memory)", re.IGNORECASE)
_QLORA = re.compile(r"(?<![A-Za-z])q-?lora(?![A-Za-z])", re.IGNORECASE)
# gradient (activation) checkpointing said to be off, missing or broken in the run: "without gradient checkpointing",
# "activation checkpointing got broken", "gradient checkpointing is not implemented by modeling_phi.py",
# "gradient_checkpointing=False", "没开梯度检查点", "gradient checkpointing is never enabled". Only its state:
# "checkpointing does not help" says it was on.
_GC = r"(?:gradient[ _-]?checkpoint\w*|activation[ _-]?checkpoint\w*|grad[ _-]?ckpt|梯度检查点|重计算)"
_GC_OFF = re.compile(
    r"(?:\bwithout|\bno|\bdisabl\w*|\bturn\w* off|\bswitch\w* off)\s{1,3}(?:the\s{1,3}|any\s{1,3})?" + _GC
    + r"|" + _GC + r"[^.\n。;]{0,40}?\b(?:(?:is|was|are|were|got|gets|been|be)\s{1,3})?(?:(?:not|never)\s{1,3}(?:implemented|supported"
    r"|enabled|applied|used|working|on)\b|(?:doesn'?t|does\s{1,3}not|didn'?t|did\s{1,3}not)\s{1,3}(?:work|apply|take effect)\b"
    r"|broken|disabled|inert\b|off\b)"
    r"|" + _GC + r"\s{0,3}(?:=|:)\s{0,3}(?:False|false|0)\b"
    r"|(?:没有?开(?:启)?|未开启|未启用|关闭了?|不支持)" + _GC + r"|" + _GC + r"[^。\n]{0,10}?(?:没有?开|未开启|未启用|关闭|不支持|不生效|失效)",
    re.IGNORECASE)


def prose_lines(text: str) -> list[str]:
    """The lines of the text that are sentences (not log records, frames or tables)."""
    out = []
    for _, line in edge_lines(text, MAX_LINES):
        line = line[:MAX_LINE]
        stripped = line.strip()
        if stripped and not stripped.startswith(("File ", "Traceback", "[rank", "|")) and is_prose(stripped):
            out.append(stripped)
    return out


# Nodes (machines) of a multi-node run: "2 nodes", "2 machines", "两台机器", "2个节点".
_NODES = re.compile(r"(?<![\d.])(?:(\d{1,4})|([两二三四五六七八九十]))\s{0,2}(?:nodes?\b|machines?\b|hosts?\b|servers?\b|台(?:机器|服务器|节点)?|个?节点)",
                    re.IGNORECASE)


def text_facts(setup: TrainingSetup, text: str) -> TrainingSetup:
    """`setup` with the GPUs, count, sequence length, micro-batch and method the user's sentences state, where the
    setup only had defaults."""
    words = "\n".join(prose_lines(text))
    if not words:
        return setup
    hw = hardware_intent(words)
    named = hw is not None and bool(hw.slots.get("gpu") or hw.slots.get("gpu_text"))
    if setup.gpu is None and named:
        spec = lookup_gpu(hw.slots.get("gpu") or hw.slots["gpu_text"], hw.slots.get("memory_gib"))
        if spec is not None:
            setup = setup.with_fact("gpu", spec, "user", f"the text: {hw.evidence}")
    elif setup.gpu is None and hw is not None and hw.slots.get("count") and hw.slots.get("memory_gib"):
        # cards counted with their size but no model ("4张24G的卡", "8x 80GB GPUs"): a card of that size, at the share
        # of it torch reports (a size alone may be memory in use, "显存占用24G", so the count must come with it)
        size = float(hw.slots["memory_gib"])
        if size.is_integer():   # nominal sizes are whole gigabytes; "26.5G" is memory in use
            card = nominal_card(f"{size:g}GB GPU", int(size))
            setup = setup.with_fact("gpu", card, "user", f"the text: {hw.evidence}")
    if hw is not None and (named or hw.slots.get("memory_gib")) and hw.slots.get("count") and _unsaid(setup, "num_gpus"):
        # "2 nodes x 8 A800", "两台机器，每台8张A800": the count is per node; the data-parallel world is all of them
        count, said = int(hw.slots["count"]), f"the text: {hw.evidence}"
        n = _NODES.search(words)
        nodes = (parse_count(n.group(1) or n.group(2)) or 0) if n else 0
        if 2 <= nodes <= 1024 and _unsaid(setup, "num_nodes"):
            setup = setup.with_fact("num_nodes", nodes, "user", f"the text: {n.group(0).strip()}")
            count, said = count * nodes, f"{said}, x {nodes} nodes"
        setup = setup.with_fact("num_gpus", count, "user", said)
    h = _HOST_RAM.search(words)
    if h and _unsaid(setup, "host_ram_bytes"):
        size = float(h.group(1)) * (1024 if h.group(2).upper() == "T" else 1)
        if 4 <= size <= 64 * 1024:
            setup = setup.with_fact("host_ram_bytes", int(size * 2**30), "user", f"the text: {h.group(0).strip()}")
    m = _SEQ.search(words)
    if m and _unsaid(setup, "seq_len"):
        num, k = next((m.group(i), m.group(i + 1)) for i in range(1, m.re.groups, 2) if m.group(i))
        tokens = count_said(num, k)
        if 128 <= tokens <= 1 << 21:
            setup = setup.with_fact("seq_len", tokens, "user", f"the text: {m.group(0).strip()}")
    b = _BATCH.search(words)
    if b and _unsaid(setup, "micro_batch") and 1 <= int(b.group(1)) <= 4096:
        setup = setup.with_fact("micro_batch", int(b.group(1)), "user", f"the text: {b.group(0).strip()}")
    g = _GC_OFF.search(words)
    if g and _unsaid(setup, "gradient_checkpointing"):
        setup = setup.with_fact("gradient_checkpointing", False, "user", f"the text: {g.group(0).strip()[:QUOTE_SHORT]}")
    if _unsaid(setup, "method"):
        # the user's own contrast, adapters working where full fine-tuning fails ("sft_type为lora的时候是正常的，改成full
        # 后报错"): the run that failed is the full one, whatever the adapters named beside it; else adapters named and
        # not denied ("without any LoRA"), else full fine-tuning stated: log_cues' own tests
        named = [line for line in words.splitlines() if adapter_named(line)]
        adapted = named[0] if named else None
        contrast = next((m for line in words.splitlines() if (m := METHOD_CONTRAST.search(line))), None)
        if contrast is not None:
            setup = setup.with_fact("method", "full", "user", f"the text: {contrast.group(0)[:QUOTE_SHORT]} (adapters "
                                                              "worked; the full fine-tune is the run that failed)")
        elif (q := next((m for line in named if (m := _QLORA.search(line))), None)) is not None:
            setup = setup.with_fact("method", "qlora", "user", f"the text: {q.group(0)}")
            if setup.quantization_bit is None:
                setup = setup.with_fact("quantization_bit", 4, "user", f"the text: {q.group(0)} (4-bit)")
        elif adapted is not None:
            setup = setup.with_fact("method", "lora", "user", f"the text: {adapted[:QUOTE_SHORT]}")
        elif (f := FULL_SAID.search(words)) is not None:
            setup = setup.with_fact("method", "full", "user", f"the text: {f.group(0)}")
    return setup


def _unsaid(setup: TrainingSetup, field: str) -> bool:
    p = setup.provenance.get(field)
    return p is None or p.origin == "default"
