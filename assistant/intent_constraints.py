"""keep_constraint / release_constraint: what the user says must stay (method, sequence length, batch, no
DeepSpeed) and what they allow again."""

from __future__ import annotations

import re

from .intent_types import Intent


_KEEP_EN = r"(?:must|have to|need to|needs to|has to|should|want to|wanna|keep|stay|stick|retain|preserve|required?|only|insist)"
_NOCHANGE_EN = (r"(?:can't|cannot|can not|don't|do not|mustn't|must not|won't|not allowed to|unable to|no way to|shouldn't|"
                r"i'd rather not)\s+(?:\w+\s+){0,2}?(?:change|reduce|lower|shorten|decrease|cut|touch|drop|modify|shrink|alter|go below)")
_KEEP_ZH = r"(?:必须|一定要|只能|要保持|保持|得|需要|不变|要求)"
_NOCHANGE_ZH = r"(?:不能|不可以|不要|不想|别|无法|不允许|不可)\s*(?:再)?\s*(?:改|缩短|减少|减小|降低|动|变|调小|调低|砍|截断)"
_SEQ_WORDS = (r"(?:cutoff_len|cutoff|max_seq_length|max_seq_len|max_length|model_max_length|seq(?:uence)?[ _]?len(?:gth)?|"
              r"context(?: length| window| size)?|sequence|tokens|序列长度|序列|上下文长度|上下文|长度|截断长度)")
_BATCH_WORDS = r"(?:per_device_train_batch_size|micro[ _-]?batch(?:[ _]size)?|batch[ _]?size|batch|bs|批大小|批次大小|批量)"
FULL_WORDS = r"(?:full[ -]?(?:parameter|param)?[ -]?(?:fine[ -]?tun\w*|ft|training|finetun\w*|sft)|full\b|全量微调|全量|全参数?微调|全参数?)"
_LORA_WORDS = r"(?:q?lora|peft|adapters?)"


def constraint_intents(text: str) -> list[Intent]:
    """keep_constraint / release_constraint: what must not change (full fine-tuning, sequence length, batch,
    no DeepSpeed) and what the user now allows."""
    low = text.lower()
    keep: list[str] = []
    release: list[str] = []

    def near_fwd(a: str, b: str, gap: int = 40) -> bool:
        return bool(re.search(a + r".{0,%d}?" % gap + b, low))

    # method: full fine-tuning must stay
    if (near_fwd(_KEEP_EN, FULL_WORDS, 30) or near_fwd(_KEEP_ZH, FULL_WORDS, 8)
            or near_fwd(FULL_WORDS, r"(?:is |are )?(?:required|a must|mandatory|must stay|non-negotiable|a (?:hard |strict )?requirement)", 12)
            or re.search(r"(?:can't|cannot|can not|don't want to|do not want to|not allowed to|won't|no)\s+"
                         r"(?:(?:use|switch to|go with|move to|do|go to|change to)\s+)?" + _LORA_WORDS, low)
            or re.search(_LORA_WORDS + r"\s+(?:is|are)\s+not\s+(?:an option|allowed|ok|acceptable|possible)", low)
            or re.search(r"(?:不能|不可以|不要|不想|不允许|不用)\s*(?:用|使用)?\s*" + _LORA_WORDS, low)):
        keep.append("full")
    # sequence length must stay
    if (near_fwd(_KEEP_EN, _SEQ_WORDS, 40) or near_fwd(_NOCHANGE_EN, _SEQ_WORDS, 30) or near_fwd(_NOCHANGE_ZH, _SEQ_WORDS, 8)
            or near_fwd(_SEQ_WORDS, r"(?:must (?:stay|remain|be)|has to (?:stay|remain|be)|is fixed|stays|can't change|cannot change|"
                        r"can't be (?:reduced|changed|lowered)|cannot be (?:reduced|changed|lowered)|不能|不可以|不要|必须|保持不变|不变|固定)", 25)
            or near_fwd(_KEEP_ZH, _SEQ_WORDS, 6)):
        if not re.search(r"what if|如果|假如|会怎样", low):
            keep.append("seq")
    # batch must stay
    if (near_fwd(_KEEP_EN, _BATCH_WORDS, 30) or near_fwd(_NOCHANGE_EN, _BATCH_WORDS, 30) or near_fwd(_NOCHANGE_ZH, _BATCH_WORDS, 8)
            or near_fwd(_BATCH_WORDS, r"(?:must (?:stay|remain|be)|has to (?:stay|remain|be)|is fixed|can't change|cannot change|"
                        r"不能|不可以|不要|必须|保持不变|不变|固定)", 25)):
        if not re.search(r"what if|如果|假如|会怎样", low):
            keep.append("batch")
    # no DeepSpeed
    if re.search(r"(?:no|without|can't use|cannot use|can not use|don't use|do not use|don't want|do not want|not allowed to use|"
                 r"don't have|do not have|no access to)\s+(?:to use\s+)?deep\s?speed|deep\s?speed\s+(?:is\s+)?not\s+(?:available|allowed|an option|installed)|"
                 r"(?:不用|不能用|不要|不想用|不使用|没有|没装|不支持)\s*deep\s?speed", low):
        keep.append("no-deepspeed")
    # releases: "LoRA is fine", "you can change the batch", "可以用LoRA"
    if re.search(_LORA_WORDS + r"\s+(?:is|are)\s+(?:fine|ok|okay|acceptable|allowed)|(?<!不)(?:可以|能)\s*(?:用|使用)\s*" + _LORA_WORDS
                 + r"|don't need full|no longer need full|不需要全量|不必全量", low):
        release.append("full")
    if re.search(r"(?:can|may|could)\s+(?:change|reduce|lower|shorten)\s+(?:the\s+)?" + _SEQ_WORDS + r"|" + _SEQ_WORDS + r"\s*(?:可以|能)\s*(?:改|缩短|减少|降低)", low):
        release.append("seq")
    if re.search(r"(?:can|may|could)\s+(?:change|reduce|lower)\s+(?:the\s+)?" + _BATCH_WORDS + r"|" + _BATCH_WORDS + r"\s*(?:可以|能)\s*(?:改|减少|降低|调)", low):
        release.append("batch")
    if re.search(r"deep\s?speed\s+(?:is\s+)?(?:fine|ok|okay|allowed)|(?:can|may)\s+use\s+deep\s?speed|可以(?:用|使用)\s*deep\s?speed", low):
        release.append("no-deepspeed")
    keep = [k for k in keep if k not in release]
    out = []
    if keep:
        out.append(Intent(name="keep_constraint", slots={"keep": keep}, evidence=text[:80]))
    if release:
        out.append(Intent(name="release_constraint", slots={"release": release}, evidence=text[:80]))
    return out
