"""Training arguments that frameworks print into logs, as text with their line: HF `TrainingArguments(` dumps
("per_device_train_batch_size=8,"), YAML blocks ("cutoff_len: 4096"), command lines ("--bf16 \\"), commands as Python
lists (the DeepSpeed launcher's "['--per_device_train_batch_size', '8', ...]"), Python dict prints, DeepSpeed's config
print, and the HF Trainer banner ("Instantaneous batch size per device = 8")."""

from __future__ import annotations

import re
from collections.abc import Iterator

# Keys worth knowing for memory; others (learning rate, logging) are left out.
TRAINING_KEYS = frozenset({
    "per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps",
    "eval_accumulation_steps", "cutoff_len", "max_seq_length", "max_seq_len", "max_length", "max_source_length",
    "max_target_length", "model_max_length", "sequence_len", "micro_batch_size", "train_micro_batch_size_per_gpu",
    "batch_size", "bf16", "fp16", "pure_bf16", "tf32", "gradient_checkpointing", "deepspeed", "finetuning_type",
    "train_type", "sft_type", "lora_rank", "lora_r", "lora_alpha", "lora_target", "lora_target_modules",
    "quantization_bit", "bits", "load_in_4bit", "load_in_8bit", "optim", "flash_attn", "attn_implementation",
    "sample_packing", "packing", "neat_packing", "max_pixels", "image_max_pixels", "video_max_pixels",
    "torch_dtype", "do_eval", "eval_strategy", "evaluation_strategy", "eval_steps", "predict_with_generate",
    "model_name_or_path", "stage", "template", "dataloader_num_workers", "preprocessing_num_workers",
    "use_unsloth", "enable_liger_kernel", "use_liger_kernel", "freeze_vision_tower", "low_cpu_mem_usage", "fsdp",
    "offload_optimizer", "offload_param", "zero_stage", "max_new_tokens",
    "sequence_parallel_size", "tensor_parallel_size", "gpu_memory_utilization", "max_model_len", "vision_tower",
    "model_type", "model_id_or_path", "base_model", "adapter", "load_in_nbits", "double_quantization",
})
# Unquoted values are ASCII tokens (paths, numbers, module lists): prose around a flag is not its value.
_VAL = r"[A-Za-z0-9_./:+@~%\[\]-]"
_KV_EQ = re.compile(r"(?:^|[\s,(])-{0,2}([A-Za-z_][\w]{1,50})\s{0,2}=\s{0,2}(\"[^\"]{0,300}\"|'[^']{0,300}'|"
                    + _VAL + r"{1,300})")
_KV_COLON = re.compile(r"""(?:^|[\s,{])['"]?([A-Za-z_][\w]{1,50})['"]?\s{0,2}:\s{1,3}(\"[^\"]{0,300}\"|'[^']{0,300}'|"""
                       + _VAL + r"{1,300})")
# "--key value" / "--key=value", or a bare "--flag" (true) when the next thing is another flag, "\" or the line end
_KV_FLAG = re.compile(r"(?:^|\s)--([A-Za-z_][\w]{1,50})(?:[ \t=]{1,4}(\"[^\"]{0,300}\"|'[^']{0,300}'|[A-Za-z0-9_./:+@~%\[]"
                      + r"[A-Za-z0-9_./:+@~%,=\[\]-]{0,300}|-\d" + _VAL + r"{0,30})(?=[\s\\]|$)|(?=\s{0,4}(?:-|\\|$)))")
# A command as a Python list, as the DeepSpeed launcher prints it ("[launch.py:321:sigkill_handler] ['/usr/bin/python',
# '-u', 'train.py', '--local_rank=0', '--per_device_train_batch_size', '8', '--bf16'] exits with return code = -9") and
# subprocess.CalledProcessError quotes it: "'--key', 'value'", "'--key=value'", or a bare "'--flag'" before the next flag.
_KV_LIST = re.compile(r"""(['"])--([A-Za-z_]\w{1,50})(?:=([^'"\n]{0,300}))?\1"""
                      r"""(?:\s{0,3},\s{0,3}(['"])(?!--)([^'"\n]{0,300})\4)?""")
# DeepSpeed's config dump: "[config.py:1000:print]   train_micro_batch_size_per_gpu  2"
_DS_CONFIG_PRINT = re.compile(r"\[config\.py:\d{1,6}:print\]\s{1,8}([A-Za-z_]\w{1,60})\s{1,4}\.{0,40}\s{0,4}(\S.{0,200}?)\s*$")
_BANNERS = [
    ("per_device_train_batch_size", re.compile(r"Instantaneous batch size per device = ([\d,]{1,12})")),
    ("gradient_accumulation_steps", re.compile(r"Gradient Accumulation steps = ([\d,]{1,12})")),
    ("total_train_batch_size", re.compile(r"Total train batch size \([^)]{0,60}\) = ([\d,]{1,12})")),
    ("num_examples", re.compile(r"Num examples = ([\d,]{1,15})")),
    ("num_epochs", re.compile(r"Num Epochs = ([\d,]{1,8})")),
    ("trainable_params", re.compile(r"trainable param(?:eter)?s:? ?=? ?([\d,]{1,20})(?![\d.%])", re.IGNORECASE)),
    ("eval_batch_size", re.compile(r"\bBatch size = ([\d,]{1,12})")),
]
_TRAINABLE = _BANNERS[5][1]
# PEFT print_trainable_parameters: "trainable params: 4,194,304 || all params: 6,742,609,920 || trainable%: 0.0622"
_ALL_PARAMS = re.compile(r"\|\|\s{0,3}all params:?\s{0,3}([\d,]{1,20})")
_EVAL_BATCH = _BANNERS[6][1]
# The model's whole parameter count as trainers and tools print it (read as all_params, like PEFT's):
#   "Trainable parameters = 1,361,753,856 of 5,661,833,328" (Unsloth's banner: trainable of all)
#   "Total parameters: 2,826,830,336", "Total number of parameters in the model: 3,161,117,824", "Total params: 124,439,808"
#   (ParlAI, hand-written scripts, torchinfo), "Total parameters 7243.436M" (mlx-lm), "number of parameters: 123.69M"
#   (nanoGPT), "model params     = 3.21 B" (llama.cpp's print_info). Megatron's "number of parameters on (tensor,
#   pipeline) model parallel rank (0, 0): N" counts one rank's share and is not read. mlx-lm's newer banner
#   "Trainable parameters: 4.178% (335.544M/8030.261M)" gives trainable / all.
# (each pattern: the count, then its unit letter; Unsloth's has no unit, so an empty group stands for it)
_TOTAL_PARAMS = [
    re.compile(r"Trainable parameters:?\s{0,3}[\d.]{1,8}%\s{0,3}\(\s{0,2}[\d.]{1,12}[KMB]\s{0,2}/\s{0,2}(\d[\d.]{0,12})\s{0,2}"
               r"([KMB])\)", re.IGNORECASE),
    re.compile(r"Trainable parameters\s{0,3}=\s{0,3}[\d,]{1,20}\s{1,3}of\s{1,3}(\d[\d,]{0,20})()", re.IGNORECASE),
    re.compile(r"(?:total (?:number of )?param(?:eter)?s(?: in the model)?|number of param(?:eter)?s|model params)"
               r"\s{0,8}[:=]?\s{0,8}(\d[\d,]{0,20}(?:\.\d{1,6})?)\s{0,2}([KMBT]?)(?![\w.])", re.IGNORECASE),
]
_PARAM_UNIT = {"": 1, "K": 10**3, "M": 10**6, "B": 10**9, "T": 10**12}
MIN_MODEL_PARAMS = 10**6   # a printed count below a million is a layer's or an adapter's, not a model's


BANNER_WORDS = ("batch size", "accumulation steps", "num examples", "num epochs", "trainable param", "total param",
                "number of param", "model params")


_KEY_TOKENS = frozenset(k.encode() for k in TRAINING_KEYS)


def may_name_arguments(low: str, tokens: set[bytes]) -> bool:
    """Could this line print a training argument? (a known key as a word, or an HF Trainer banner phrase)"""
    return not _KEY_TOKENS.isdisjoint(tokens) or any(w in low for w in BANNER_WORDS)


def clean_value(value: str | None) -> str:
    """'"ds_z3.json",' → 'ds_z3.json'; a bare flag (None) → 'true'."""
    if value is None:
        return "true"
    value = value.strip().rstrip(",;\\").strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        value = value[1:-1]
    return value


# Keys whose value has a fixed shape: a value of another shape is not that argument (prose, code, word salad).
_FLAG_KEYS = frozenset({
    "bf16", "fp16", "pure_bf16", "tf32", "gradient_checkpointing", "load_in_4bit", "load_in_8bit", "sample_packing",
    "packing", "neat_packing", "do_eval", "predict_with_generate", "use_unsloth", "enable_liger_kernel",
    "use_liger_kernel", "freeze_vision_tower", "low_cpu_mem_usage", "double_quantization"})
_NUMBER_KEYS = frozenset({
    "per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps",
    "eval_accumulation_steps", "cutoff_len", "max_seq_length", "max_seq_len", "max_length", "max_source_length",
    "max_target_length", "model_max_length", "sequence_len", "micro_batch_size", "train_micro_batch_size_per_gpu",
    "batch_size", "lora_rank", "lora_r", "lora_alpha", "quantization_bit", "bits", "dataloader_num_workers",
    "preprocessing_num_workers", "zero_stage", "max_new_tokens", "sequence_parallel_size", "tensor_parallel_size",
    "max_model_len", "max_pixels", "image_max_pixels", "video_max_pixels", "eval_steps", "load_in_nbits",
    "gpu_memory_utilization",
    "total_train_batch_size", "num_examples", "num_epochs", "trainable_params", "all_params", "eval_batch_size"})
_FLAG_VALUE = re.compile(r"true|false|yes|no|on|off|[01]|none|null|auto", re.IGNORECASE)
# numbers as configs write them: 4, 0.9, 1e-4, 1_024, 1280*28*28; DeepSpeed's "auto"
_NUMBER_VALUE = re.compile(r"-?\d[\d_.,]{0,20}(?:[eE][+-]?\d{1,3})?(?:\s{0,2}\*\s{0,2}\d{1,8}){0,4}|auto|none|null",
                           re.IGNORECASE)


def plausible_value(key: str, value: str) -> bool:
    """Does the value have the shape this key takes? (a flag: true/false...; a size or count: a number)"""
    if key in _FLAG_KEYS:
        return _FLAG_VALUE.fullmatch(value) is not None
    if key in _NUMBER_KEYS:
        return _NUMBER_VALUE.fullmatch(value) is not None
    return True


def find_arguments(line: str, low: str) -> Iterator[tuple[str, str | None]]:
    """(key, raw value) pairs one line prints; value None for a bare flag."""
    text = line[:4096]
    if "config.py" in text and ":print]" in text:
        m = _DS_CONFIG_PRINT.search(text)
        if m and m.group(1) in TRAINING_KEYS:
            yield m.group(1), m.group(2)
        return
    if "=" in text:
        if " = " in text:
            for key, pattern in _BANNERS[:5]:   # the trainable count (and the total beside it) is read below
                m = pattern.search(text)
                if m:
                    yield key, m.group(1).replace(",", "")
                    return
        for m in _KV_EQ.finditer(text):
            if m.group(1) in TRAINING_KEYS:
                yield m.group(1), m.group(2)
    if "--" in text:
        for m in _KV_FLAG.finditer(text):
            if m.group(1) in TRAINING_KEYS:
                yield m.group(1), m.group(2)
        if "'--" in text or '"--' in text:
            for m in _KV_LIST.finditer(text):
                if m.group(2) in TRAINING_KEYS:
                    yield m.group(2), m.group(3) if m.group(3) is not None else m.group(5)
    if ":" in text:
        for m in _KV_COLON.finditer(text):
            if m.group(1) in TRAINING_KEYS:
                yield m.group(1), m.group(2)
    if "trainable param" in low:
        m = _TRAINABLE.search(text)
        if m:
            yield "trainable_params", m.group(1).replace(",", "")
        m = _ALL_PARAMS.search(text)
        if m:
            yield "all_params", m.group(1).replace(",", "")
            return
    if "param" in low:
        total = total_params(text)
        if total is not None:
            yield "all_params", str(total)


def total_params(text: str) -> int | None:
    """The model's whole parameter count a line prints (_TOTAL_PARAMS), or None; counts under MIN_MODEL_PARAMS and
    counts said of trainable parameters alone are not the model's."""
    for pattern in _TOTAL_PARAMS:
        m = pattern.search(text)
        if m is None:
            continue
        digits = m.group(1).replace(",", "")
        try:
            count = int(float(digits) * _PARAM_UNIT[m.group(2).upper()])
        except ValueError:
            return None
        return count if MIN_MODEL_PARAMS <= count < 10**14 else None
    return None


def find_eval_batch_size(line: str) -> str | None:
    """'  Batch size = 8' (printed right after '***** Running Evaluation *****')."""
    m = _EVAL_BATCH.search(line)
    return m.group(1).replace(",", "") if m else None
