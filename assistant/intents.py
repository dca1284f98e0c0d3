"""Follow-up understanding without an LLM: a small rule-based intent and slot parser for the chat
messages users send after a diagnosis, in English and Chinese.

`parse_followups(text)` returns every intent a message carries ("I have 4x A100 40GB and must keep
full fine-tuning" → set_hardware + keep_constraint); `parse_followup(text)` the main one. The slot-filling
intents have their own modules: intent_hardware, intent_constraints, intent_what_if (values: intent_values).
"""

from __future__ import annotations

import re

from .intent_constraints import constraint_intents
from .intent_hardware import hardware_intent
from .intent_host_ram import host_ram_intent, without_host_ram
from .intent_types import Intent, IntentName
from .intent_values import parse_value, zh_number
from .intent_what_if import setup_field, switch_method_intent, what_if_intents

MAX_PARSE_CHARS = 4000  # follow-ups are short; longer text is a log or a config, classified elsewhere


# -- explain, show, feedback, probe, undo, reset, help ---------------------------------------------


_EXPLAIN = re.compile(r"^\W*(?:why|how come|explain|reason|how so|because\?|what caused|what's the cause|what is the cause)|\bwhy\b|"
                      r"\bexplain\b|what(?:'s| is) (?:using|eating|taking|filling) (?:up )?(?:all )?(?:the |my )?(?:gpu )?memory|"
                      r"where does (?:the|all the) memory go|\bwhat(?:'s| is| was) (?:the )?(?:cause|reason)|\b(?:the|a) (?:root )?(?:cause|reason)\b|"
                      r"\bhow (?:did|do|does|is|was) (?:you|it|this|that)\b.{0,20}\b(?:get|got|calculat\w*|comput\w*|estimat\w*|com(?:e|es) (?:up|out))|"
                      r"where does (?:the |this |that )?[\w.\s]{0,20}come from|"
                      r"为什么|为啥|为何|原因|怎么回事|解释|咋回事|什么导致|怎么算|怎么得?来的|怎么得到|如何(?:计算|算)|怎么计算|哪来的|从哪来", re.I)
_SHOW_DIFF = re.compile(r"(?<![a-z])diff(?![a-z])|what (?!if)(?:\w+\s+){0,3}?change[ds]?\b|the changes|show.{0,20}changes|"
                        r"差异|改动|改了什么|改了哪些|修改了哪些|修改内容|对比", re.I)
_SHOW_CONFIG = re.compile(r"(?:show|give|print|send|paste|see|display|fixed|new|full|whole|complete|updated|final|corrected|download)"
                          r".{0,25}(?:config|yaml|json|script|file)|^\W*config\W*$|"
                          r"(?:给|看|发|完整|修改后|新的|修正后|最终|改好).{0,8}(?:配置|yaml|json|脚本)|^\W*配置\W*$", re.I)
_SHOW_REPORT = re.compile(r"(?:full|whole|complete|entire|detailed)\s+(?:diagnosis|report|analysis)|"
                          r"(?:show|give|print|send|paste|post|see|display)\b.{0,25}\b(?:breakdown|table)\b|(?:breakdown|table)\s+again|"
                          r"(?:明细表?|表格|分解表?|breakdown)\s*(?:再|重新)?\s*(?:贴|发|给|看|列|show)|(?:再|重新)\s*(?:贴|发|给我?看?|列)\s*(?:一下)?\s*.{0,6}(?:明细|表格|表)|"
                          r"(?:show|give|see|print|send|display)\b.{0,20}\breport\b|"
                          r"完整(?:的)?(?:诊断)?报告|全部报告|详细报告|完整诊断", re.I)
_UNSOLVED = re.compile(r"still\s+(?:\w+\s+){0,2}?(?:oom|ooms|out of memory|fail\w*|crash\w*|error\w*|broken|dies|killed|the same|not working|doesn't work)|"
                       r"\b(?:oom|ooms|ooming|out of memory)\b(?:\s+\w+){0,2}\s+(?:again|still)\b|\b(?:oom|ooms|out of memory)\s+still\b|\bagain\s+(?:oom|ooms)\b|"
                       r"(?:也|都|又|反而|照样|依旧|依然|还)\s*(?:会)?\s*(?:oom|爆显存|爆了|显存不足|out of memory)|"
                       r"not (?:solved|fixed|working|resolved)|didn't (?:work|help|fix)|did not (?:work|help|fix)|doesn't (?:work|help|fit)|"
                       r"does not (?:work|help)|no luck|same (?:error|oom|problem)|no (?:change|difference)|👎|"
                       r"(?:还是|仍然|依然|仍旧|照样|还会|又)\s*.{0,6}?(?:oom|爆显存|显存不足|显存溢出|out of memory|报错|不行|溢出|崩|挂|失败)|"
                       r"没解决|没有解决|未解决|(?<!行)不行(?![吗嘛么])|没用(?![a-z0-9\u4e00-\u9fff])|没有用(?![a-z0-9\u4e00-\u9fff])|没效果|无效|失败了", re.I)
_SOLVED = re.compile(r"\b(?:it|that|this) (?:worked|works|fixed it|did it|helped|solved it)|\bsuccessfully\b|\bsucceeded\b|训练成功|\bworks? (?:great|fine|well|perfectly|like a charm)|"
                     r"\bworked (?:great|fine|well|perfectly)|\b(?:it's|it is|that's|all|now) fixed\b|works now|working now|runs now|solved|resolved|"
                     r"fixed it|problem fixed|that fixed|training (?:runs|works|started|is running)|no more oom|no longer ooms?|👍|"
                     r"解决了|可以了|跑通了|跑起来了|成功了|好了|搞定|没问题了|有效了|不再oom|不oom了|能跑了|正常了", re.I)
_PROBE = re.compile(r"\b(?:run|start|do|try)\s+(?:the\s+|a\s+)?(?:live\s+)?probe|\bprobe\s+(?:it|this|that|the (?:fixed )?config)|"
                    r"\b(?:test|verify|check|measure|validate|try)\s+(?:it|this|that|the (?:fix|fixed config|plan|config))?\s*(?:out\s+)?on\s+(?:a\s+)?(?:real|actual|live)\s+(?:gpu|card|hardware)|"
                    r"(?:跑|做|来)\s*(?:个|一下|一个|下)?\s*probe|probe\s*(?:验证|测|一下)|真机(?:验证|测|跑)|"
                    r"measure (?:it|this|the peak) on (?:the|this|a|your) gpu|实测|跑一下\s*probe|在\s*gpu\s*上(?:测|跑)", re.I)
_UNDO = re.compile(r"^\W*(?:undo|revert|(?:drop|forget|clear|remove) (?:the |all |my )*what[- ]?ifs?|back to my (?:own |original )?config|"
                   r"use my (?:original|own) config(?: again)?|撤销|撤回|恢复原(?:来的)?配置|回到原(?:来的)?配置)\W*(?:please|pls|吧)?\W*$", re.I)
_RESET = re.compile(r"^\W*(?:(?:please|pls|ok|okay|let's|lets|请)\W*)?(?:reset|start over|restart|clear(?: (?:everything|all|it|the session|this))?|new (?:problem|issue|session|conversation|question)|forget (?:it|everything|that)|"
                    r"重新开始|重置|清空|新问题|从头开始|重来)\W*(?:please|pls|吧)?\W*$", re.I)
_HELP = re.compile(r"^\W*(?:help(?: me| please| pls)?|\?|what can you do|how does (?:this|it) work|commands|usage|how do i use (?:this|you)|"
                   r"帮助|你能做什么|怎么用|使用说明|能干什么|你会什么)\W*$", re.I)


# a question about a concept, not about this run: "what does ga 8 mean?", "does zero3 slow training in general?",
# "zero3一般会比zero2慢多少", "lora rank是啥意思"
_CONCEPT = re.compile(r"\bwhat (?:does|do|is|are)\b.{0,40}\bmean|\bmeaning of\b|\bin general\b|\bgenerally\b|\busually\b|\btypically\b|"
                      r"\bwhat(?:'s| is| are) (?:a |an |the )?(?:zero|ga|qlora|lora|offload\w*|gradient \w+|deepspeed|fsdp|rank|"
                      r"lora rank|cutoff_len|flash attention)\b\s*\??\s*$|\bdifference between\b|"
                      r"一般|通常|是什么意思|什么意思|啥意思|是啥|什么是|是什么东西|有什么区别|区别是", re.I)
_CLAUSE = re.compile(r"[^.?!。？！\n;；,，]+[.?!。？！\n;；,，]*")


# the settings a kept constraint holds still: a number said with the constraint is its current value, not a what-if
_KEEP_FIELDS: dict[str, tuple[str, ...]] = {"seq": ("seq_len",), "batch": ("micro_batch",),
                                           "effective_batch": ("micro_batch", "grad_accum")}


def statements(text: str) -> str:
    """The message with its why-questions and concept questions blanked out (same length): a GPU count or a setting
    inside "why does it OOM on 2 gpus when it works on 1?" or "what does ga 8 mean?" is not a statement."""
    out = []
    for m in _CLAUSE.finditer(text):
        clause = m.group(0)
        asks_why = _EXPLAIN.search(clause) and not re.match(r"^\W*(?:why|为什么|为啥)\W*$", clause, re.I)
        out.append(" " * len(clause) if asks_why or _CONCEPT.search(clause) else clause)
    joined = "".join(out)
    return joined if len(joined) == len(text) else text


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
    said = statements(text)  # "why does it OOM on 2 gpus?", "what does ga 8 mean?": their numbers set nothing
    constraints = constraint_intents(said)
    keep = next((i.slots["keep"] for i in constraints if i.name == "keep_constraint"), [])
    ram = host_ram_intent(said)
    rest = without_host_ram(said)  # "744 GB RAM" is host RAM, never a GPU's memory or a what-if value
    hw = hardware_intent(rest)
    # a still-OOM / solved report that names the settings it now runs ("bs=1 还是OOM") puts them in the what-if
    report = any(i.name in ("mark_unsolved", "mark_solved") for i in out)
    # "what if I use 8 A100s" is a hardware change, not a config key
    what_ifs = [w for w in what_if_intents(rest, force=report) if not (hw and w.slots.get("field") in (None, "num_gpus"))]
    # a value inside a keep statement is not a what-if: "seq len 4096 can't change", "序列长度保持8k不变"
    kept_fields = {f for k in keep for f in _KEEP_FIELDS.get(k, ())}
    what_ifs = [w for w in what_ifs if w.slots.get("field") not in kept_fields]
    out.extend(what_ifs)
    switch = switch_method_intent(said, keep)
    if switch and not any(w.slots.get("field") == "quantization_bit" for w in what_ifs):
        out.append(switch)
    out.extend(constraints)
    if hw:
        out.append(hw)
    if ram:
        out.append(ram)
    if _SHOW_REPORT.search(text):
        out.append(Intent(name="show_report", evidence=text[:80]))
    elif _SHOW_DIFF.search(text):
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
    ("set_host_ram", "the machine has 512 GB RAM / 机器内存512G"),
    ("keep_constraint", "I must keep full fine-tuning / 必须全量微调 / cutoff_len can't change / no DeepSpeed"),
    ("what_if", "what if cutoff_len is 8192? / cutoff_len改成8192会怎样"),
    ("switch_method", "use QLoRA instead / 用QLoRA"),
    ("explain", "why? / 为什么"),
    ("show_diff", "show the diff again / 再给我看一下diff"),
    ("show_config", "show the fixed config / 给我完整配置"),
    ("show_report", "show the full report / 完整报告"),
    ("mark_solved", "it worked / 解决了"),
    ("mark_unsolved", "still OOM / 还是OOM"),
    ("run_probe", "run the live probe (on a GPU host) / 实测一下"),
    ("undo", "undo (drop the what-ifs, back to my config) / 撤销"),
    ("reset", "start over / 重新开始"),
]


__all__ = ["Intent", "IntentName", "UNDERSTOOD", "parse_followup", "parse_followups", "parse_value", "setup_field", "zh_number"]
