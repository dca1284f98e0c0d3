"""Keyword rules (English and Chinese) that map what a document says to root-cause labels and to typed fixes.

Each rule is a regex with a weight; a label's score is the sum over its rules, each rule counted at most
twice, with text in "advice" sections (best practices, summary) counting less than the problem statement.
"""

from __future__ import annotations

import re

# (label, weight, pattern). Weights: 3 = the document says this is what happened; 1 = it is mentioned.
LABEL_RULES: list[tuple[str, float, str]] = [
    ("memory_growth", 3, r"(显存|内存|memory|VRAM)(占用)?\S{0,4}(逐渐|持续|不断|逐步|一直)(增加|增长|上升|升高)|"
                         r"memory (usage )?(keeps |kept )?(grow|grows|growing|increas\w*|climb\w*|creep\w*)|"
                         r"(显存|内存)泄[漏露]|memory leak|leak\w* memory"),
    ("offload_host_ram", 3, r"(CPU|主机|系统|host)\s*(内存|RAM|memory)\s*[(（]?\s*\d+\s*G|"
                            r"\d+\s*G\S{0,3}\s*(CPU|主机|host)\s*(内存|RAM|memory)|"
                            r"(host|CPU) (RAM|memory) (is )?(exhausted|ran out|runs out|OOM)|"
                            r"\bKilled\b|SIGKILL|exit code -9|oom[- ]killer|Cannot allocate memory"),
    ("offload_host_ram", 1, r"offload|卸载到CPU"),
    ("seq_len_too_long", 1, r"序列长度|截断长度|sequence length|context length|max_seq_length|cutoff_len|max_length"),
    ("seq_len_too_long", 2, r"(超长|过长|很长|long)\s*(序列|sequence|context)|cutoff_len\S{0,12}(16384|32768|\d{5,})"),
    ("batch_too_large", 1, r"batch[ _]?size|批次大小|批处理大小|per_device_train_batch_size"),
    ("no_gradient_checkpointing", 1, r"gradient[_ ]checkpointing\s*(is\s*)?(off|disabled|false|not enabled)|"
                                     r"(没有|未)(启用|开启)梯度检查点"),
    ("eager_attention", 2, r"(没有|未|not)\s*(正确)?\s*(使用|use[ds]?|enabled?|active)\S{0,4}\s*(Flash[ -]?Attention|FA2|sdpa)|"
                           r"Flash[ -]?Attention\S{0,6}(not (used|installed|available)|未安装|没有生效)|eager attention|attn_implementation\W+eager"),
    ("eager_attention", 1, r"Flash[ -]?Attention|flash[-_]attn"),
    ("logits_large_vocab", 2, r"(large|大)\s*(vocab\w*|词表)|logits .{0,30}(vocab|fp32|float32)|cross[_ ]entropy"),
    ("weights_exceed_gpu", 2, r"(即使|即便|even)\s*(将|把|with|at)?\s*(batch[ _]?size|批次大小)\S{0,8}\s*(设置?为|设成|=|of|to)?\s*1\b|"
                              r"(weights|model) (alone )?(does not|doesn't|do not) fit|(模型|权重)\S{0,6}(放不下|装不下)"),
    ("weights_exceed_gpu", 2, r"--bits\s+4|(4|8)[- ]?bit\s*(量化|quantiz\w*)|load_in_(4|8)bit\s*=\s*True|quantization_bit"),
    ("full_ft_model_states", 1, r"全量微调|全参数?微调|full[- ](parameter )?fine[- ]?tun\w*|full fine-tune|"
                                r"optimizer states|优化器状态|梯度信息"),
    ("zero_stage_insufficient", 2, r"ZeRO[- ]?(stage[- ]?)?[012]\b.{0,40}(not enough|insufficient|不够)|switch(ed)? to ZeRO[- ]?3"),
    ("fragmentation", 3, r"reserved but unallocated|expandable_segments|(显存)?碎片化?|fragmentation"),
    ("fragmentation", 1, r"max_split_size_mb"),
    ("vision_tokens", 1, r"视觉塔|vision tower|视觉编码器|vision encoder|图像编码器|image resolution|分辨率|"
                         r"visual tokens|image tokens|video frames|视频帧"),
    ("vision_tokens", 2, r"(高|大)分辨率|high[- ]resolution|max_pixels|image_max_pixels|too many (image|visual)"),
    ("moe_memory", 1, r"\bMoE\b|mixture[- ]of[- ]experts|混合专家|experts?\b|A3B|Mixtral"),
    ("eval_accumulation", 3, r"eval_accumulation_steps|(评估|验证|evaluation|eval)\S{0,10}(阶段|时|phase|loop)?\S{0,6}(OOM|显存不足|out of memory)|"
                             r"predictions? (are )?(accumulated|concatenated|kept on)"),
    ("model_load_oom", 3, r"(加载|合并|保存|转换)\S{0,8}(模型|权重|checkpoint)\S{0,8}(时|阶段)?\S{0,6}(OOM|显存不足|内存不足)|"
                          r"(OOM|out of memory)\S{0,30}(while|when|during) (loading|merging|saving|converting)|merge_and_unload"),
    ("other_process", 3, r"other process(es)? (hold|use|occup)\w*|另一个进程|其他进程\S{0,6}(占用)|zombie process"),
    ("quantization_setup", 2, r"load_in_4bit`?\s*or\s*`?load_in_8bit|quantization_config|bnb_4bit|bitsandbytes\S{0,20}(error|错误|incompatib)"),
    ("dtype_unsupported", 2, r"not implemented for '?(BFloat16|Half|bf16)|不支持\s*(bf16|BFloat16)|bf16 (is )?not supported|"
                             r"(兼容性|compatib\w*)\S{0,6}(问题|issue)"),
    ("generation_kv_cache", 3, r"KV[ -]?cache|gpu_memory_utilization|max_new_tokens|max_model_len"),
    ("multi_gpu_imbalance", 3, r"device_map\s*=?\s*['\"]?auto|(GPU|rank)\s*0\S{0,10}(more|higher|多|更多)\S{0,10}(memory|显存)|unbalanced|不均衡"),
]
COMPILED_LABEL_RULES = [(label, w, re.compile(p, re.IGNORECASE)) for label, w, p in LABEL_RULES]

# Typed changes keyed by a key → the label the change addresses (used to score labels from fixes).
KEY_LABELS: dict[str, str] = {
    "cutoff_len": "seq_len_too_long", "max_seq_length": "seq_len_too_long", "max_length": "seq_len_too_long",
    "model_max_length": "seq_len_too_long", "max_source_length": "seq_len_too_long", "seq_len": "seq_len_too_long",
    "per_device_train_batch_size": "batch_too_large", "train_batch_size": "batch_too_large",
    "micro_batch_size": "batch_too_large", "batch_size": "batch_too_large",
    "per_device_eval_batch_size": "batch_too_large", "eval_accumulation_steps": "eval_accumulation",
    "gradient_checkpointing": "no_gradient_checkpointing",
    "flash_attn": "eager_attention", "attn_implementation": "eager_attention",
    "bits": "weights_exceed_gpu", "quantization_bit": "weights_exceed_gpu", "load_in_4bit": "weights_exceed_gpu",
    "load_in_8bit": "weights_exceed_gpu",
    "finetuning_type": "full_ft_model_states",
    "image_max_pixels": "vision_tokens", "freeze_vision_tower": "vision_tokens", "max_pixels": "vision_tokens",
    "liger_kernel": "logits_large_vocab", "use_liger_kernel": "logits_large_vocab",  # fused linear cross-entropy
    "gpu_memory_utilization": "generation_kv_cache", "max_new_tokens": "generation_kv_cache",
    "PYTORCH_CUDA_ALLOC_CONF": "fragmentation",
}

# Advice said in words (no key=value in the text): (pattern, key, value). Values are LLaMA-Factory / HF key names.
PHRASE_FIXES: list[tuple[str, str, object]] = [
    (r"(启用|开启|使用|enable|use|turn on)\S{0,6}\s*Flash[ -]?Attention[ -]?2|(启用|开启|enable)\S{0,4}\s*fa2", "flash_attn", "fa2"),
    (r"冻结\S{0,4}(视觉塔|视觉编码器|图像编码器)|freez\w* (the )?(vision (tower|encoder)|ViT)", "freeze_vision_tower", True),
    (r"冻结[^，。,;；\n]{0,30}投影器|freez\w*[^,.;\n]{0,40}\b(multi-?modal )?projector", "freeze_multi_modal_projector", True),
    (r"(配置|启用|开启|使用|enable|use|turn on)\s*(the\s*)?streaming|流式(数据)?(处理|加载)", "streaming", True),
    (r"(启用|开启|使用|激活|enable|turn on|use)\S{0,4}\s*(gradient[_ ]checkpointing|梯度检查点)|梯度检查点[:：]", "gradient_checkpointing", True),
    (r"(启用|开启|使用|enable|use)\S{0,2}混合精度\S{0,6}[(（]?\s*(如|e\.g\.)?\s*bf16|(启用|开启|enable|use)\s*bf16", "bf16", True),
    (r"(使用|启用|采用|切换到|use|enable|switch to)\s*(DeepSpeed\s*(的|'s)?\s*)?ZeRO[- ]?(Stage\s*)?3", "deepspeed", "ZeRO-3"),
    (r"(LoRA|QLoRA)\S{0,6}\s*(替代|代替|而非|instead of|rather than)\s*(全量|全参数|full)|"
     r"(参数高效微调|parameter-efficient)\S{0,12}(LoRA)\S{0,4}[,，]?\s*(而非|替代|代替|instead of)", "finetuning_type", ("full", "lora")),
]
COMPILED_PHRASE_FIXES = [(re.compile(p, re.IGNORECASE), key, value) for p, key, value in PHRASE_FIXES]

# Sections whose advice is generic (best practices, summary): their keywords count less for labels.
ADVICE_HEADINGS = re.compile(r"^(实践建议|最佳实践|建议|总结|小结|技术要点|技术原理|Best practices?|Tips|Summary|Conclusion|"
                             r"Recommendations?|Lessons)\W*$", re.IGNORECASE)
PROBLEM_HEADINGS = re.compile(r"^(问题|背景|现象|问题背景|问题现象|问题描述|问题分析|问题根源|技术分析|原因|"
                              r"Problem|Background|Symptoms?|Issue|Root cause|Analysis)", re.IGNORECASE)
FIX_HEADINGS = re.compile(r"^(解决方案|解决方法|最终解决方案|优化措施|解决|Solution|Fix|Workaround|Resolution)", re.IGNORECASE)

# A sentence that says a change worked (the fix is then marked confirmed in the draft).
CONFIRMED = re.compile(r"解决了|成功解决|有效解决|问题解决|经过实践验证|实践验证|验证有效|可以正常|得以解决|"
                       r"\b(worked|works now|fixed it|fixes it|solved|resolved|this fixes|confirmed)\b", re.IGNORECASE)
