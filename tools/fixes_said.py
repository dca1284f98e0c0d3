"""What the user's words say made the memory error go away: the setting a fix changed names the cause, since every
root cause is what its fix changes (../shared/root-causes.md: "reduce num_beams" is the KV cache, "enable gradient
checkpointing" is the kept activations). A fix only tried, suggested or asked about ("try batch 1", "how do I fix
it?", "reducing the batch did not help") says nothing, so only a sentence that says it worked counts.

The knob table is data: each label with the words of the settings and actions that fix it, in English and Chinese.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import islice

from .labels import Label
from .log_parser.lines import numbered_lines

MAX_LINES = 2000          # the words sit around a log, not inside a 100 MB trace
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
    Label.seq_len_too_long: r"max[_ ]?length|max_len\b|max_seq_len\w*|cutoff_len|model_max_length|seq(?:uence)?[ _-]?len\w*"
                            r"|block_size|context length|truncat\w*|shorter (?:samples|sequences|inputs|texts)|序列长度|截断",
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
    found: dict[Label, FixSaid] = {}
    for lineno, line in islice(numbered_lines(text), MAX_LINES):
        line = line[:MAX_LINE]
        if not _WORKED.search(line):
            continue
        for m in _SENTENCE.finditer(line):
            sentence = m.group(0)
            worked = _WORKED.search(sentence)
            if worked is None:
                continue
            rest = sentence[:worked.start()] + " " + sentence[worked.end():]
            if _NOT.search(rest) or not _CHANGED.search(rest):
                continue
            for label, knob in _KNOBS:
                hit = knob.search(sentence)
                if hit is not None and label not in found:
                    found[label] = FixSaid(label=label, knob=hit.group(0), line=lineno, text=sentence.strip()[:300])
    return list(found.values()) if len(found) <= MAX_FIXES else []
