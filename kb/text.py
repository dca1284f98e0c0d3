"""Tokenising case texts and queries for lexical search, in English and Chinese.

Cases are written in English; users (and the seed documents) often write Chinese. A small glossary maps
the Chinese terms of OOM troubleshooting to the English words the cases use, so a Chinese query still
shares terms with the right case; config keys (cutoff_len), model names (qwen2.5) and numbers pass as-is.
"""

from __future__ import annotations

import re
from functools import lru_cache

# Chinese OOM vocabulary → the English words cases are written with (longest terms are matched first).
ZH_GLOSSARY: dict[str, str] = {
    "显存不足": "gpu memory out of memory oom",
    "显存溢出": "gpu memory out of memory oom",
    "内存不足": "out of memory oom",
    "内存溢出": "out of memory oom",
    "显存": "gpu memory",
    "显卡": "gpu",
    "内存": "memory ram",
    "主机内存": "host ram",
    "系统内存": "host ram",
    "全量微调": "full fine-tuning",
    "全参数微调": "full fine-tuning",
    "全参微调": "full fine-tuning",
    "参数高效微调": "lora peft",
    "微调": "fine-tuning",
    "训练": "training",
    "预训练": "pretraining",
    "批次大小": "batch size",
    "批处理大小": "batch size",
    "批大小": "batch size",
    "梯度累积": "gradient accumulation",
    "梯度检查点": "gradient checkpointing",
    "梯度": "gradients",
    "序列长度": "sequence length cutoff_len",
    "截断长度": "cutoff_len sequence length",
    "上下文长度": "context length sequence length",
    "长文本": "long sequence",
    "量化": "quantization quantized",
    "视觉塔": "vision tower",
    "视觉编码器": "vision encoder tower",
    "图像编码器": "vision encoder tower",
    "投影器": "projector",
    "多模态": "multimodal vision-language",
    "图像": "image",
    "图片": "image",
    "视频": "video frames",
    "分辨率": "resolution",
    "冻结": "freeze frozen",
    "卸载": "offload",
    "优化器": "optimizer",
    "优化器状态": "optimizer states",
    "注意力": "attention",
    "窗口注意力": "window attention",
    "混合专家": "moe experts",
    "专家": "experts",
    "逐渐增加": "grows increases over steps",
    "持续增长": "grows increases over steps",
    "逐渐增长": "grows increases over steps",
    "不断增加": "grows increases over steps",
    "泄漏": "leak",
    "泄露": "leak",
    "碎片": "fragmentation",
    "评估": "evaluation eval",
    "验证": "evaluation eval",
    "推理": "inference generation",
    "生成": "generation",
    "加载": "loading load",
    "合并": "merge",
    "保存": "save checkpoint",
    "版本": "version",
    "降级": "downgrade pin",
    "不兼容": "incompatible",
    "混合精度": "mixed precision bf16",
    "半精度": "fp16 half precision",
    "多卡": "multi-gpu",
    "单卡": "single gpu",
    "进程": "process",
    "被杀": "killed",
    "报错": "error",
    "词表": "vocabulary vocab",
}

_ZH_TERMS = sorted(ZH_GLOSSARY, key=len, reverse=True)
_ZH_RE = re.compile("|".join(map(re.escape, _ZH_TERMS)))
_CJK_RUN = re.compile(r"[\u3400-\u9fff]+")
# Identifiers keep dots and underscores (qwen2.5, cutoff_len, 4.33.0); hyphens split (qwen2.5-vl → qwen2.5, vl).
_WORD = re.compile(r"[a-z0-9]+(?:[._][a-z0-9]+)*")

STOPWORDS = frozenset(
    "a an and are as at be but by for from has have in into is it its of on or that the their then there these "
    "this to was were when which while will with without not no so than also after before during only per via "
    "we i you my our your they he she them can could would should may might do does did been being".split()
)


@lru_cache(maxsize=1)
def _stemmer():
    import Stemmer  # PyStemmer: a small C extension (no numpy), cheap to import on the CLI's cold path

    return Stemmer.Stemmer("english")


def translate_zh(text: str) -> str:
    """Append the English glossary words for every Chinese OOM term in `text` (the text itself is kept)."""
    found = _ZH_RE.findall(text)
    return text if not found else text + " " + " ".join(ZH_GLOSSARY[t] for t in found)


def tokenize(text: str) -> list[str]:
    """Lower-case, glossary-expanded, stemmed tokens; identifiers also yield their parts (cutoff_len → cutoff, len)."""
    text = translate_zh(text).lower()
    words: list[str] = []
    for w in _WORD.findall(_CJK_RUN.sub(" ", text)):
        if w in STOPWORDS or (len(w) == 1 and not w.isdigit()):
            continue
        words.append(w)
        if "_" in w:
            words.extend(p for p in w.split("_") if len(p) > 1 and p not in STOPWORDS)
    stemmed = _stemmer().stemWords(words)
    return [s for s in stemmed if s]
