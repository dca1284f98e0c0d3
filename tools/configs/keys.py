"""How a setting is spelled in each framework's config, so a planned change lands on a key the
user's training code actually accepts (never an invented flag that would crash the argument parser)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..config_values import count
from .schema import ConfigDocument

# TrainingArguments fields: valid for any HF-Trainer-based script (HfArgumentParser accepts them).
HF_TRAINING_ARGS = {
    "per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps", "eval_accumulation_steps",
    "gradient_checkpointing", "bf16", "fp16", "deepspeed", "use_liger_kernel", "optim",
}
# Keys that name the model, first found wins. This is the config mapping's order, which every config passes through
# first (the setup assembly only falls back to it for what the mapping skipped), so keeping it changes no answer.
# The keys that hold a checkpoint's id or path (HF, LLaMA-Factory, axolotl, diffusers-style scripts) come first;
# ms-swift's last (2.x model_id_or_path, 3.x model, then 2.x model_type), since model_type is only a registry
# spelling ('qwen2_5-7b-instruct') and says less than an id when a file gives both.
MODEL_NAME_KEYS = ("model_name_or_path", "base_model", "model_path", "pretrained_model_name_or_path",
                   "model_id_or_path", "model", "model_type")

# Sequence-length keys by framework convention, first found wins (the mapping reads them in this order): LLaMA-Factory,
# TRL/SFT scripts, HF tokenizer-style scripts, axolotl, ms-swift/others, OpenRLHF (max_len), Megatron-style (seq_length).
SEQ_LEN_KEYS = ("cutoff_len", "max_seq_length", "model_max_length", "max_length", "sequence_len", "max_seq_len",
                "max_len", "seq_length")
LORA_RANK_KEYS = ("lora_rank", "lora_r", "r")
# vLLM's engine arguments (LLM(...) keywords, `vllm serve` flags, lm-eval's --model_args for its vllm backend): a
# snippet or command that sets one runs the inference engine
VLLM_KEYS = ("tensor_parallel_size", "gpu_memory_utilization", "max_model_len", "max_num_seqs", "enforce_eager",
             "limit_mm_per_prompt", "kv_cache_dtype", "quantization", "pipeline_parallel_size")
# Switches that load the base model's weights quantized, and the width they load: transformers' from_pretrained
# keywords, and the scripts that pass them on under shorter names (alpaca-lora's and h2oGPT's load_8bit/load_4bit,
# FastChat's --load-8bit). Unlike a quantizer's `bits` (AutoGPTQ's target, its model loaded in 16 bits to quantize),
# they say how the run itself holds the weights.
QUANTIZED_LOAD_FLAGS: dict[str, int] = {"load_in_4bit": 4, "load_4bit": 4, "load_in_8bit": 8, "load_8bit": 8}
# The keys configs use for a setup field (LLaMA-Factory, HF TrainingArguments, axolotl, DeepSpeed, launchers): where a
# what-if or a fix finds the user's own spelling of a setting.
FIELD_KEYS: dict[str, tuple[str, ...]] = {
    "seq_len": SEQ_LEN_KEYS,
    # HF TrainingArguments, axolotl / litgpt, DeepSpeed (its config print too), plain scripts, OpenRLHF
    # ... DeepSpeed-Chat's RLHF step (per_device_training_batch_size), llama-recipes (batch_size_training)
    "micro_batch": ("per_device_train_batch_size", "micro_batch_size", "train_micro_batch_size_per_gpu", "batch_size",
                    "micro_train_batch_size", "per_device_training_batch_size", "batch_size_training"),
    "eval_batch": ("per_device_eval_batch_size", "eval_batch_size"),
    "grad_accum": ("gradient_accumulation_steps", "gradient_accumulation"),
    "gradient_checkpointing": ("gradient_checkpointing", "activation_checkpointing"),
    "lora_rank": LORA_RANK_KEYS,
    "lora_dropout": ("lora_dropout",),
    "eval_accumulation_steps": ("eval_accumulation_steps",),
    "max_new_tokens": ("max_new_tokens", "generation_max_new_tokens"),
    "num_beams": ("num_beams", "generation_num_beams"),
    "eval_samples": ("max_samples",),
    "quantization_bit": ("quantization_bit", *QUANTIZED_LOAD_FLAGS, "bits"),
    "image_max_pixels": ("image_max_pixels", "max_pixels"),
    "video_frames": ("video_maxlen", "max_frames"),
    "optimizer": ("optim", "optimizer"),
    "attn_implementation": ("flash_attn", "attn_implementation"),
}


# Sections in which frameworks nest their training arguments: litgpt's `train:` (TrainArgs: micro_batch_size,
# global_batch_size, max_seq_length, epochs), ChatGLM3 finetune_demo's `training_args:` (Seq2SeqTrainingArguments) and
# `peft_config:` (a LoraConfig), Lightning CLI's and Ludwig's `trainer:` (precision, accumulate_grad_batches,
# batch_size). Their keys are read as if at the top level (which wins) and edited where they stand; a setting the
# config does not have yet goes into its first training section (the last one, the LoRA one, only takes LoRA's).
TRAINING_SECTIONS = ("training_args", "train", "trainer", "peft_config")
LORA_CONFIG_KEYS = ("r", "lora_alpha", "lora_dropout", "target_modules")   # peft.LoraConfig's, as a call or a section
LORA_SECTION = "peft_config"


def lift_sections(settings: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The settings with each training section's keys beside the top level's (the top level wins; a section that is
    not a mapping, mlx-lm's `train: true`, is a setting), and key -> the section it came from."""
    flat, sections = dict(settings), {}
    for section in TRAINING_SECTIONS:
        body = settings.get(section)
        if not isinstance(body, dict):
            continue
        for key, value in body.items():
            if isinstance(key, str) and key not in flat:
                flat[key] = value
                sections[key] = section
    return flat, sections


def written_path(doc: ConfigDocument, key: str) -> str:
    """Where a change to `key` is written in the config: the section it was read from, the first training section for
    a setting the config lacks (a LoRA setting: the LoRA section, when there is one), else the top level."""
    if key in doc.sections:
        return f"{doc.sections[key]}.{key}"
    if not doc.sections or key in doc.settings:
        return key
    present = [s for s in TRAINING_SECTIONS if s in doc.sections.values()]
    home = LORA_SECTION if key in LORA_CONFIG_KEYS and LORA_SECTION in present else next(
        (s for s in present if s != LORA_SECTION), None)
    return f"{home}.{key}" if home else key


# Keys only training configs carry (LLaMA-Factory, HF TrainingArguments, TRL, axolotl, DeepSpeed, launchers): how a
# pasted block is told from prose or a log, and which keys a partial read counts as settings.
TRAINING_KEYS = frozenset({
    "model_name_or_path", "base_model", "finetuning_type", "stage", "do_train", "dataset", "template", "cutoff_len",
    "max_seq_length", "model_max_length", "per_device_train_batch_size", "per_device_eval_batch_size",
    "gradient_accumulation_steps", "learning_rate", "num_train_epochs", "max_steps", "lr_scheduler_type", "bf16", "fp16",
    "deepspeed", "gradient_checkpointing", "lora_rank", "lora_target", "lora_alpha", "quantization_bit", "output_dir",
    "save_steps", "logging_steps", "warmup_ratio", "optim", "flash_attn", "zero_optimization",
    "train_micro_batch_size_per_gpu", "train_batch_size", "micro_batch_size", "sequence_len", "load_in_4bit",
    "load_in_8bit", "image_max_pixels", "video_maxlen", "freeze_vision_tower", "eval_steps", "eval_strategy",
    "evaluation_strategy", "packing", "sample_packing", "adapter", "lora_r", "offload_optimizer",
    "stage3_param_persistence_threshold", "mm_projector_lr", "zero_stage", "max_length", "batch_size",
})
# Settings as people name them in prose-like pastes (Markdown lists in issues, chat: "- batch size：1", "- 学习率: 1e-4")
# → the config key they mean. Names are compared lower-cased with spaces, "_" and "-" as one space.
SETTING_ALIASES: dict[str, str] = {
    **dict.fromkeys(("batch size", "bs", "micro batch", "micro batch size", "per device batch size",
                     "per device train batch size", "train batch size per device", "批大小", "批量大小", "批次大小",
                     "每卡批大小", "单卡批大小", "每卡 batch size", "单卡 batch size"), "per_device_train_batch_size"),
    **dict.fromkeys(("eval batch size", "per device eval batch size", "评估批大小"), "per_device_eval_batch_size"),
    **dict.fromkeys(("gradient accumulation", "grad accum", "grad accumulation", "ga", "gradient accumulation steps",
                     "梯度累积", "梯度累积步数", "梯度累计", "梯度累计步数"), "gradient_accumulation_steps"),
    **dict.fromkeys(("learning rate", "lr", "学习率"), "learning_rate"),
    **dict.fromkeys(("seq len", "sequence length", "max length", "max seq len", "max seq length", "context length",
                     "max sequence length", "序列长度", "最大长度", "最大序列长度", "上下文长度", "文本长度"), "max_seq_length"),
    **dict.fromkeys(("cutoff len", "cutoff length", "截断长度"), "cutoff_len"),
    **dict.fromkeys(("model", "model name", "model path", "base model", "模型", "基座模型", "模型路径", "基础模型"),
                    "model_name_or_path"),
    **dict.fromkeys(("lora rank", "rank", "lora r", "lora 秩", "lora秩"), "lora_rank"),
    **dict.fromkeys(("lora alpha",), "lora_alpha"),
    **dict.fromkeys(("epochs", "epoch", "num epochs", "train epochs", "训练轮数", "轮数"), "num_train_epochs"),
    **dict.fromkeys(("zero stage", "zero", "deepspeed stage", "deepspeed zero stage"), "zero_stage"),
    **dict.fromkeys(("finetuning type", "finetune type", "fine tuning type", "微调方式", "微调类型", "训练方式"),
                    "finetuning_type"),
    **dict.fromkeys(("gradient checkpointing", "梯度检查点"), "gradient_checkpointing"),
    **dict.fromkeys(("quantization", "quantization bit", "量化", "量化位数"), "quantization_bit"),
    **dict.fromkeys(("image max pixels", "max pixels", "最大像素"), "image_max_pixels"),
    **dict.fromkeys(("optimizer", "优化器"), "optim"),
}

@dataclass
class KeyStyle:
    """The key names (or None when the framework has no such setting) for one config."""

    framework: str
    doc: ConfigDocument | None

    @property
    def is_lf(self) -> bool:
        return self.framework == "llamafactory"

    @property
    def settings(self) -> dict[str, Any]:
        return self.doc.settings if self.doc is not None else {}

    @property
    def is_mlx(self) -> bool:
        return self.framework == "mlx"

    def has(self, key: str) -> bool:
        return key in self.settings

    def grad_accum_key(self) -> str:
        return "grad_accumulation_steps" if self.is_mlx else "gradient_accumulation_steps"   # mlx-lm >= 0.26

    def micro_batch_key(self) -> str:
        """The key the micro-batch was read from (FIELD_KEYS' order, as config_to_setup reads it: axolotl's and
        litgpt's micro_batch_size, OpenRLHF's micro_train_batch_size), else the framework's own: a key the framework
        does not read fixes nothing (axolotl passes micro_batch_size on as per_device_train_batch_size)."""
        return self._written("micro_batch") or ("micro_batch_size" if self.framework == "axolotl"
                                                else "per_device_train_batch_size")

    def eval_batch_key(self) -> str:
        return self._written("eval_batch") or ("eval_batch_size" if self.framework == "axolotl"
                                               else "per_device_eval_batch_size")

    def _written(self, field: str) -> str | None:
        """The first of FIELD_KEYS[field] the config sets to a count (the one config_to_setup reads)."""
        return next((k for k in FIELD_KEYS[field] if count(self.settings.get(k))), None)

    # --- tier 1
    def gradient_checkpointing(self) -> tuple[str, Any] | None:
        if self.is_lf:
            return ("disable_gradient_checkpointing", False) if self.has("disable_gradient_checkpointing") else None
        if self.is_mlx:
            return ("grad_checkpoint", True)
        if self.has("use_gradient_checkpointing") and not self.has("gradient_checkpointing"):
            return ("use_gradient_checkpointing", "unsloth" if self.framework == "unsloth" else True)
        return ("gradient_checkpointing", True)

    def attention(self, impl: str) -> tuple[str, Any] | None:
        if self.is_lf:
            return ("flash_attn", {"flash_attention_2": "fa2", "sdpa": "sdpa", "eager": "disabled"}[impl])
        if self.doc is not None and str((self.doc.launcher or {}).get("script") or "").startswith("openrlhf"):
            return ("flash_attn", True) if impl == "flash_attention_2" else None
        if self.has("attn_implementation") or self.has("use_peft"):
            return ("attn_implementation", impl)   # TRL scripts: ModelConfig.attn_implementation
        if self.has("use_flash_attn"):
            return ("use_flash_attn", impl == "flash_attention_2")
        return None

    def liger(self) -> tuple[str, Any] | None:
        if self.is_lf:
            return ("enable_liger_kernel", True)
        return ("use_liger_kernel", True)

    def bf16(self) -> str:
        return "bf16"

    # --- tier 3
    def freeze_vision_tower(self) -> tuple[str, Any] | None:
        if self.is_lf:
            return ("freeze_vision_tower", True)
        if self.has("unfreeze_mm_vision_tower"):
            return ("unfreeze_mm_vision_tower", False)
        if self.has("finetune_vision_layers"):
            return ("finetune_vision_layers", False)   # unsloth FastVisionModel.get_peft_model
        return None

    def freeze_projector(self) -> tuple[str, Any] | None:
        if self.is_lf:
            return ("freeze_multi_modal_projector", True)
        if self.has("freeze_mm_mlp_adapter"):
            return ("freeze_mm_mlp_adapter", True)
        return None

    def image_max_pixels(self) -> str | None:
        if self.framework == "swift" and self.doc is not None and self.doc.format == "shell":
            return "MAX_PIXELS"   # ms-swift reads the image cap from the environment
        if self.doc is not None and self.doc.format == "python":
            from .python_doc import find_calls, is_processor_call

            # a processor built in the snippet takes the cap: AutoProcessor.from_pretrained(..., max_pixels=...)
            return "max_pixels" if any(is_processor_call(c) for c in find_calls(self.doc.text)) else None
        return "image_max_pixels" if self.is_lf or self.has("image_max_pixels") else None

    # --- tier 5
    def seq_len_key(self, provenance_detail: str | None) -> str | None:
        """The key the sequence length came from (cutoff_len, model_max_length, max_seq_length...)."""
        if provenance_detail and ":" in provenance_detail:
            key = provenance_detail.split(":")[-1].strip()
            if key in self.settings:
                return key
        for key in SEQ_LEN_KEYS:
            if key in self.settings:
                return key
        return "cutoff_len" if self.is_lf else None

    # --- tier 6
    def lora(self) -> list[tuple[str, Any]] | None:
        if self.is_mlx:
            return [("fine_tune_type", "lora")]
        if self.is_lf or self.has("finetuning_type"):
            return [("finetuning_type", "lora")]
        for key in ("train_type", "sft_type"):   # ms-swift 3.x / 2.x
            if self.has(key):
                return [(key, "lora")]
        if self.framework == "swift":
            return [("train_type", "lora")]
        if self.has("lora_enable") or self.has("mm_projector_type") or self.has("image_tower") or self.has("vision_tower"):
            return [("lora_enable", True)]   # LLaVA-family train.py
        if self.has("use_peft"):
            return [("use_peft", True)]      # TRL scripts
        return None

    def qlora(self) -> tuple[str, Any] | None:
        if self.is_lf or self.has("quantization_bit") or (self.framework == "swift" and self.has("sft_type")):
            return ("quantization_bit", 4)
        if self.framework == "swift" or self.has("quant_bits"):
            return ("quant_bits", 4)
        if self.has("bits") or self.has("lora_r") or self.has("lora_enable"):
            return ("bits", 4)               # LLaVA / DeepKE / qlora.py scripts: --bits 4
        if self.has("load_in_4bit") or self.has("use_peft"):
            return ("load_in_4bit", True)    # TRL ModelConfig
        return None

    def deepspeed_key(self) -> str | None:
        if self.doc is not None and self.doc.format == "accelerate_yaml":
            return None
        return "deepspeed"
