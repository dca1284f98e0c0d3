"""keep_constraint / release_constraint: what the user says must stay (method, sequence length, batch, no
DeepSpeed) and what they allow again."""

from __future__ import annotations

import re

from .intent_types import Intent


_KEEP_EN = r"(?:must|have to|need to|needs to|has to|should|want to|wanna|keep|stay|stick|retain|preserve|required?|only|insist)"
_NOCHANGE_EN = (r"(?:can't|cannot|can not|don't|do not|mustn't|must not|won't|not allowed to|unable to|no way to|shouldn't|"
                r"i'd rather not)\s+(?:\w+\s+){0,2}?(?:change|reduce|lower|shorten|decrease|cut|touch|drop|modify|shrink|alter|go below)")
_KEEP_ZH = r"(?:必须|一定要|只能|要保持|保持|得|需要|不变|要求)"
_NOCHANGE_ZH = (r"(?:(?:不能|不可以|不要|不想|别|无法|不允许|不可)\s*(?:再)?\s*(?:改|缩短|减少|减小|降低|动|变|调小|调低|砍|截断|换)|"
                r"不改|不动|不换|不减|不缩)")
# said after the thing that must stay: "batch size别动", "deepspeed配置…我们改不了", "the model has to stay"
_STAYS_AFTER = (r"(?:must (?:stay|remain|be)|has to (?:stay|remain|be)|have to (?:stay|remain|be)|is fixed|stays|can't change|cannot change|"
                r"can't be (?:reduced|changed|lowered|touched)|cannot be (?:reduced|changed|lowered|touched)|is owned by|are owned by|"
                r"stays? (?:at|the same)|不能|不可以|不要|必须|保持|维持|不变|固定|别动|别改|别碰|不能动|动不了|改不了|不能变|统一的|定死)")
_EFFECTIVE_WORDS = (r"(?:(?:effective|global|total|overall)\s+(?:train(?:ing)?\s+)?batch(?:[ _]?size)?|train_batch_size|"
                    r"(?:全局|总的?|有效|等效|整体)\s*(?:的)?\s*(?:batch(?:[ _]?size)?|批大小|批量)|卡数\s*[x×*]\s*bs)")
_MODEL_WORDS = r"(?:(?:the |this |our )?model|模型)"
_DS_WORDS = r"(?:deep\s?speed(?:\s*(?:config|配置|json))?|ds\s+config|ds配置|zero[ _-]?stage|zero配置)"
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
    # the global (effective) batch must stay: said of the global batch, it is not the per-device one
    effective = bool(re.search(_EFFECTIVE_WORDS, low))
    if effective and (near_fwd(_KEEP_EN, _EFFECTIVE_WORDS, 30) or near_fwd(_NOCHANGE_EN, _EFFECTIVE_WORDS, 30)
                      or near_fwd(_NOCHANGE_ZH, _EFFECTIVE_WORDS, 8) or near_fwd(_EFFECTIVE_WORDS, _STAYS_AFTER, 30)
                      or near_fwd(r"keep\s+(?:the\s+)?", _EFFECTIVE_WORDS, 4)):
        if not re.search(r"what if|如果|假如|会怎样", low):
            keep.append("effective_batch")
    # the model must stay (no smaller model)
    if (near_fwd(_MODEL_WORDS, r"(?:(?:has to|must|needs to|should) (?:stay|remain|be)|can't change|cannot change|is fixed|不能换|不能改|不换|不变|必须)", 25)
            or re.search(r"no (?:smaller|other|different) model|(?:can't|cannot|don't want to|won't) (?:use |switch to |go to )?(?:a )?(?:smaller|other|different) model|"
                         r"(?:不改|不换|不能换|不能改|不要换|别换)\s*(?:成)?\s*(?:小)?模型|不能(?:用|换)?(?:更)?小的?模型", low)):
        keep.append("model")
    # batch must stay
    if not effective and (near_fwd(_KEEP_EN, _BATCH_WORDS, 30) or near_fwd(_NOCHANGE_EN, _BATCH_WORDS, 30) or near_fwd(_NOCHANGE_ZH, _BATCH_WORDS, 8)
            or near_fwd(_BATCH_WORDS, _STAYS_AFTER, 25)):
        if not re.search(r"what if|如果|假如|会怎样", low):
            keep.append("batch")
    # no DeepSpeed
    if re.search(r"(?:no|without|can't use|cannot use|can not use|don't use|do not use|don't want|do not want|not allowed to use|"
                 r"don't have|do not have|no access to)\s+(?:to use\s+)?deep\s?speed|"
                 r"deep\s?speed\s+(?:is\s+|was\s+)?(?:not|isn't|wasn't|is not|cannot be|can't be)\s+(?:available|allowed|an option|installed|supported|added)|"
                 r"(?:不用|不能用|不要|不想用|不使用|没有|没装|不支持|没用)\s*deep\s?speed|deep\s?speed.{0,12}(?:装不了|不能装|没法装|用不了|没装)", low) \
            or near_fwd(_NOCHANGE_EN, _DS_WORDS, 30) or near_fwd(_DS_WORDS, _STAYS_AFTER, 30) or near_fwd(_NOCHANGE_ZH, _DS_WORDS, 8):
        if not re.search(r"what if|如果|假如|会怎样", low):
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
