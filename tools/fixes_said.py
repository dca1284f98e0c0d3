"""What the user's words say made the memory error go away, or brought it on: the setting a fix changed names the
cause, since every root cause is what its fix changes (../shared/root-causes.md: "reduce num_beams" is the KV cache,
"enable gradient checkpointing" is the kept activations). A fix only tried, suggested or asked about ("try batch 1",
"how do I fix it?", "reducing the batch did not help") says nothing, so only a sentence that says it worked counts.
The same knob said to bring the error on ("OOM at seq_len=21000", "when I use a batch size of 96 I get OOM", "fine-tuning
OOMs because the articles are too long") is the user's own controlled observation of the cause.

The knob table is data: each label with the words of the settings and actions that fix it, in English and Chinese.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from .described_oom import GPU_OOM_SAID, GROWTH_SAID
from .labels import Label
from .log_parser.lines import edge_lines
from .prefilter import Prefilter
from .units import count_said

MAX_LINES = 2000          # lines read at each end: the words sit around a log, not inside a 100 MB trace
MAX_LINE = 2000
MAX_FIXES = 4             # a thread that lists more fixes than this is a list of suggestions, not one that worked

# A sentence that says something worked. "解决" alone is also the question "怎么解决" (how to fix it): only its
# completed forms count.
_WORKED = re.compile(
    r"\b(?:solved|resolved|fixed|solves|resolves|fixes (?:it|the|this|my)|did the trick|works? (?:now|fine|well)|it works|worked|got it (?:to )?work\w*"
    r"|runs? (?:fine|now|ok(?:ay)?)|ran (?:fine|ok(?:ay)?|successfully)|no (?:more|longer) (?:oom|out of memory)"
    r"|went away|goes away|helped|(?:made|to make) it (?:work|fit|run)|seems? (?:to )?(?:be )?working|seems to work)\b"
    r"|已解决|解决了|就解决|得到解决|已经解决|可以了|就好了|正常了|能跑了|跑起来了|跑通了|不报错了|不再(?:报错|爆|OOM)",
    re.IGNORECASE)
# ...unless the sentence says it did not, or only may
_NOT = re.compile(
    r"\b(?:not|no|never|still|nothing|neither|nor|without success|whether|try|trying|tried to|would|might|maybe"
    r"|perhaps|should|could)\b|n't|\?|没有|没|未|无法|不行|不能|还是|仍然|依然|如果|是否|试试|尝试|可能|吗|？", re.IGNORECASE)

# ...and that says what was changed: a knob named only as a reason ("works for inference because of the kv cache") or
# a state ("the two GPUs used 70 GB") is not a fix
_CHANGED = re.compile(
    r"\b(?:reduc|lower|decreas|increas|rais|set|sett|chang|enabl|disabl|turn|install|us|switch|add|remov|upgrad|downgrad"
    r"|updat|limit|cap|capp|cut|split|modif|comment|kill|freez|froze|allocat|buy|bought|pay|paid|replac|load|mov|put"
    r"|halv|shorten|truncat|drop|fix|pass|appl|specif|restart)\w*"
    r"|改|设|调|加|开启|打开|关闭|关掉|减|降|换|用|安装|升级|降级|更新|限制|截断|切分|注释|去掉|删", re.IGNORECASE)

# label -> the words of the settings and actions whose change fixes it
FIX_KNOBS: dict[Label, str] = {
    Label.generation_kv_cache: r"num_beams|beams?\b|max_new_tokens|max_tokens|gpu[_-]memory[_-]utili[sz]ation|max[_-]model[_-]len"
                               r"|kv[ _-]?cache|cache_max_entry_count|max[_-]num[_-]seqs|mem_fraction_static|num_ctx",
    Label.batch_too_large: r"batch[ _-]?size|\bbs\b|micro[ _-]?batch|\w*batch_(?:per|size)\w*|批大小|批次大小",
    Label.seq_len_too_long: r"max[_ ]?length|max_(?:[a-z]{1,12}_)?len(?:gth)?\b|max_seq_len\w*|cutoff_len|model_max_length"
                            r"|seq(?:uence)?[ _-]?len\w*|block_size|context length|truncat\w*"
                            r"|shorter (?:samples|sequences|inputs|texts)|长度|截断",
    Label.no_gradient_checkpointing: r"gradient[ _-]?checkpointing|grad[ _-]?ckpt|activation checkpointing|梯度检查点",
    Label.eager_attention: r"flash[ _-]?attn\w*|flash[ _-]?attention\w*|\bsdpa\b|xformers|attn_implementation",
    # ... CUDA_VISIBLE_DEVICES="" hides every GPU: the job then runs on the CPU, which fixes nothing on the GPU
    Label.other_process: r"CUDA_VISIBLE_DEVICES(?![\s`]{0,3}=[\s`]{0,3}(?:''|\"\"))|other process\w*|zombie|leftover process\w*|killed the (?:old|other)",
    Label.zero_stage_insufficient: r"zero[ _-]?3|zero stage 3|stage[\"' :=]{1,4}3|\bfsdp\b|full_shard",
    Label.full_ft_model_states: r"\bq?lora\b|\bpeft\b|adapters?\b|freez\w+|requires_grad",
    Label.weights_exceed_gpu: r"[48][ -]?bit|\bint[48]\b|quantiz\w+|\bbnb\b|\bawq\b|\bgptq\b|tensor[ _-]?parallel\w*|量化",
    Label.offload_host_ram: r"\bswap\b|more (?:host |system |CPU )?RAM|more (?:host|system|CPU) memory|pin_memory|num_workers"
                            r"|(?:加|增加|扩)内存",
    Label.fragmentation: r"expandable_segments|max_split_size_mb",
    Label.eval_accumulation: r"eval_accumulation_steps|prediction_loss_only|preprocess_logits_for_metrics",
    Label.vision_tokens: r"max_pixels|min_pixels|image (?:size|resolution)|resolution|frames|\bfps\b|分辨率|帧",
    Label.logits_large_vocab: r"chunked (?:cross[ -]?entropy|loss)|liger\w*|logits_to_keep|fused (?:linear )?cross[ -]?entropy"
                              r"|cut[ -]cross[ -]entropy",
    Label.memory_growth: r"upgrad\w+|downgrad\w+|updat\w+ (?:to|the)|newer version|older version|latest (?:code|version)"
                         r"|升级|降级|更新(?:到|了)",
}
_KNOBS = [(label, re.compile(words, re.IGNORECASE)) for label, words in FIX_KNOBS.items()]
_SENTENCE = re.compile(r"[^.!?。！？；;\n]+(?:[.!?。！？；;]|$)")


# The knobs whose size scales the memory a step or a request needs: said with the memory error as its condition, the
# size brought it on. (A mitigation named with the error, "with ZeRO-3 it still OOMs", says the opposite.)
SIZE_KNOBS = (Label.batch_too_large, Label.seq_len_too_long, Label.vision_tokens, Label.generation_kv_cache)
# the condition the error came under: "when", "whenever", "with", "at", "above", "超过 32k 就"
_CONDITION = re.compile(
    r"\b(?:when(?:ever)?|if|once|as soon as|with|at|above|beyond|exceed\w{0,3}|(?:longer|larger|bigger|greater|more) than|over)\b"
    r"|当|时|超过|一旦|以上|就", re.IGNORECASE)
# ...unless the knob was already small, or made smaller, and it ran out all the same: "even with batch size 1",
# "调小batch_size，但是…就报OOM", "还是爆显存"
# ("...with much longer prompts without OOM" says it did not run out)
_DESPITE = re.compile(r"\b(?:even|still|regardless|no matter|despite|neither|nor|without|reduc\w*|lower\w*|decreas\w*|smaller)\b"
                      r"|还是|依然|仍然|即使|哪怕|不管|就算|调小|减小|降低|调整|不会", re.IGNORECASE)
# a length said of the KV cache ("the kv cache with max sequence length", "the kv buffer for a 160K context") is the
# cache's, which the generation knobs name
_KV = re.compile(FIX_KNOBS[Label.generation_kv_cache] + r"|kv[ _-]?buffer", re.IGNORECASE)
# inputs said to be long, the sequence length in plain words: "long prompts", "the articles are too long", "长文本"
_LONG_INPUTS = re.compile(
    r"\btoo\s{1,2}long\b|\blong(?:er)?\s{1,2}(?:inputs?|prompts?|texts?|documents?|sequences?|samples?|contexts?|articles?|audio"
    r"|utterances?|responses?|outputs?|files?|conversations?)\b|太长|过长|长文本|长序列|长度(?:较|很|太|过)长", re.IGNORECASE)
# a count of tokens said as the condition, the sequence length in plain numbers: "token数到10k会报错OOM", "OOM once the
# token count exceeds 8192", "OOMs at 32k tokens" (a count under long_cutoff_tokens is no trigger: trigger_said)
_TOKENS_REACH = re.compile(r"(?<![A-Za-z])token\s{0,2}(?:数量?|count|length|长度)\s{0,2}(?:到|达到|超过|reach\w{0,2}|exceed\w{0,2})\s{0,2}"
                           r"(?:about\s|around\s|~)?(\d{1,7})\s?([kK])?(?![\d.])", re.IGNORECASE)
_TOKENS_COUNT = re.compile(r"(?<![\d.])(\d{1,7})\s?([kK])?\+?\s{0,2}(?:(?:input|prompt|context)\s{1,2})?tokens?\b", re.IGNORECASE)
# a number said with the knob: "batch_size of 96", "seq_len=21000", "above 32k", "max_length: 8192"
_VALUE = re.compile(r"^[\s`'\"*:=]{0,4}(?:(?:is|was|set|to|at|of|above|over|beyond|exceeds?|reach(?:es)?|around|about|在|为|设为"
                    r"|设置为|设置成|超过|达到)[\s`'\"*:=]{0,4}){0,3}(\d{1,7}(?:,\d{3})*)\s?([kK])?(?!\d|\.\d)")


@dataclass(frozen=True)
class FixSaid:
    """One fix the words say worked: the cause it names, the knob, and the line."""

    label: Label
    knob: str
    line: int
    text: str


def fixes_said(text: str) -> list[FixSaid]:
    """Every cause whose knob a sentence of the text says fixed the error (first sentence per cause; [] when the
    sentences name more causes than one fix would)."""
    return _fixes(edge_lines(text, MAX_LINES))


def _fixes(lines: list[tuple[int, str]]) -> list[FixSaid]:
    found: dict[Label, FixSaid] = {}
    for lineno, sentence, worked in _sentences(lines, _WORKED):
        rest = sentence[:worked.start()] + " " + sentence[worked.end():]
        if _NOT.search(rest) or not _CHANGED.search(rest):
            continue
        for label, knob in _KNOBS:
            hit = knob.search(sentence)
            if hit is not None and label not in found:
                found[label] = FixSaid(label=label, knob=hit.group(0), line=lineno, text=sentence.strip()[:300])
    return list(found.values()) if len(found) <= MAX_FIXES else []


def _sentences(lines: list[tuple[int, str]], said: re.Pattern[str]) -> Iterator[tuple[int, str, re.Match[str]]]:
    """(line number, sentence, match) for each sentence of the numbered lines (a text's first and last MAX_LINES:
    edge_lines) that says `said`."""
    for lineno, line in lines:
        line = line[:MAX_LINE]
        if not _LINE.search(said, line):
            continue
        for m in _SENTENCE.finditer(line):
            hit = said.search(m.group(0))
            if hit is not None:
                yield lineno, m.group(0), hit


# the patterns a line must say before its sentences are read, behind the words they need (tools/prefilter.py)
_LINE = Prefilter(_WORKED, GPU_OOM_SAID)


@dataclass(frozen=True)
class TriggerSaid:
    """A size knob the words say brought the memory error on: the cause it names, the knob, the number said with it (None:
    none), and the line."""

    label: Label
    knob: str
    value: int | None
    line: int
    text: str


def triggers_said(text: str) -> list[TriggerSaid]:
    """Every size knob (SIZE_KNOBS) a sentence that reports the memory error gives as its condition, and inputs said to be
    long (the sequence length); first sentence per cause. A sentence that says the knob was small and it ran out anyway
    ("even", "still") names nothing; nor does one that says memory grew, nor a length said of the KV cache, which the
    generation knobs name."""
    return _triggers(edge_lines(text, MAX_LINES))


def said_in_words(text: str) -> tuple[list[FixSaid], list[TriggerSaid]]:
    """fixes_said and triggers_said of the text, its lines read once."""
    lines = edge_lines(text, MAX_LINES)
    return _fixes(lines), _triggers(lines)


def _triggers(lines: list[tuple[int, str]]) -> list[TriggerSaid]:
    found: dict[Label, TriggerSaid] = {}
    knobs = [(label, knob) for label, knob in _KNOBS if label in SIZE_KNOBS]
    for lineno, sentence, _ in _sentences(lines, GPU_OOM_SAID):
        if _DESPITE.search(sentence) or GROWTH_SAID.search(sentence):
            continue   # (memory said to grow until it ran out is what grows, not the size the sentence names)
        cached = _KV.search(sentence) is not None
        said: list[tuple[Label, re.Match[str]]] = []
        if _CONDITION.search(sentence):
            said += [(label, hit) for label, knob in knobs if (hit := knob.search(sentence)) is not None]
        long_inputs = _LONG_INPUTS.search(sentence)
        if long_inputs is not None:
            said.append((Label.seq_len_too_long, long_inputs))
        tokens = _TOKENS_REACH.search(sentence) or (_TOKENS_COUNT.search(sentence) if _CONDITION.search(sentence) else None)
        if tokens is not None:
            said.append((Label.seq_len_too_long, tokens))
        for label, hit in said:
            if label in found or (label is Label.seq_len_too_long and cached):
                continue
            if hit.re in (_TOKENS_REACH, _TOKENS_COUNT):   # the count is the match's own
                knob, number = hit.group(0).strip(), count_said(hit.group(1), hit.group(2))
            else:   # the knob's number follows it, if said
                value = _VALUE.match(sentence[hit.end():hit.end() + 24])
                knob = hit.group(0)
                number = count_said(value.group(1), value.group(2)) \
                    if value is not None and hit.re is not _LONG_INPUTS else None
            found[label] = TriggerSaid(label=label, knob=knob, value=number, line=lineno, text=sentence.strip()[:300])
    return list(found.values())
