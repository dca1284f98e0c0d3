"""The retrieval query for a diagnosis: what failed, where, in which stack, with which settings, in words.

Built from the parsed report and the assembled setup, never from the raw log: a 10,000-line log is mostly
loss lines and warnings that would drown the few facts that make two cases alike.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import TYPE_CHECKING

from ..tools.report import OOMReport
from ..tools.training_setup import TrainingSetup

if TYPE_CHECKING:
    from ..tools.memory_trend import MemoryTrend

KIND_WORDS = {
    "cuda_oom": "cuda_oom CUDA out of memory GPU",
    "host_oom": "host_oom host RAM out of memory process killed",
    "cublas_alloc": "cublas_alloc CUBLAS_STATUS_ALLOC_FAILED GPU memory",
    "nccl_oom": "nccl out of memory",
    "hip_oom": "HIP out of memory ROCm GPU",
    "xpu_oom": "XPU out of memory Intel GPU",
    "npu_oom": "NPU out of memory Ascend",
    "mps_oom": "MPS backend out of memory",
    "xla_oom": "XLA RESOURCE_EXHAUSTED out of memory",
    "tf_oom": "OOM when allocating tensor",
    "related_error": "related_error",
    "not_oom": "",
}
PHASE_WORDS = {
    "model_loading": "phase model_loading while loading the model checkpoint",
    "forward": "phase forward pass training",
    "backward": "phase backward pass training gradients",
    "optimizer_step": "phase optimizer_step optimizer states",
    "evaluation": "phase evaluation eval predictions",
    "generation": "phase generation inference kv cache",
    "checkpoint_save": "phase checkpoint_save saving checkpoint",
    "lora_merge": "phase lora_merge merging LoRA adapter weights",
    "data_loading": "phase data_loading dataloader workers",
}
RELATED_WORDS = {
    "bnb_quantization_kwargs": "load_in_4bit quantization_config bitsandbytes kwargs error",
    "dtype_not_implemented": "not implemented for BFloat16 dtype unsupported",
    "flash_attn_missing": "flash-attn not installed flash_attn",
    "flash_attn_unused": "FlashAttention-2 not used eager attention",
    "nccl_timeout": "NCCL timeout",
    "device_side_assert": "device-side assert",
    "sigbus": "SIGBUS shared memory",
    "sigfpe": "SIGFPE",
}
GROWTH_WORDS = "memory_growth memory grows every step increasing leak"
# Logged training arguments worth matching on (framework key names); others are noise for retrieval.
MEMORY_KEYS = (
    "cutoff_len", "max_seq_length", "max_length", "model_max_length", "max_source_length", "max_target_length",
    "per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps",
    "gradient_checkpointing", "finetuning_type", "lora_rank", "lora_target", "quantization_bit", "load_in_4bit",
    "load_in_8bit", "bits", "deepspeed", "zero_stage", "offload_optimizer", "offload_param", "fsdp", "flash_attn",
    "attn_implementation", "bf16", "fp16", "pure_bf16", "optim", "packing", "eval_accumulation_steps",
    "image_max_pixels", "image_resolution", "video_maxlen", "freeze_vision_tower", "train_mm_proj_only",
    "max_new_tokens", "gpu_memory_utilization", "max_model_len", "dataloader_num_workers",
)


def _model_words(name: str | None) -> str:
    if not name:
        return ""
    base = PurePosixPath(name.rstrip("/")).name or name
    return f"model {base}" if base == name else f"model {base} ({name})"


def build_query(report: OOMReport, setup: TrainingSetup | None = None, trend: MemoryTrend | None = None) -> str:
    """A short English description of the failure for `CaseIndex.search` (facts only, no log noise).

    `trend` is the log's memory over time: a run whose memory grew (readings, or the user's words) is like the
    documented growth cases whatever its model, so that is said in the cases' own words."""
    parts: list[str] = []
    kind = KIND_WORDS.get(report.kind, report.kind)
    if kind:
        parts.append(kind)
    if report.phase in PHASE_WORDS:
        parts.append(PHASE_WORDS[report.phase])
    if report.operation:
        parts.append(f"operation {report.operation.replace('_', ' ')} {report.operation}")
    known = _stated(setup)
    framework = report.framework or (setup.framework if "framework" in known else None)
    if framework:
        parts.append(f"framework {framework}")
    if report.launcher:
        parts.append(f"launcher {report.launcher}")
    stage = report.deepspeed_stage
    if stage is None and setup and "zero_stage" in known:
        stage = setup.zero_stage
    if stage is not None:
        parts.append(f"deepspeed ZeRO-{stage} zero{stage}")
    parts.append(_model_words((setup.model_name if setup and setup.model_name else None) or report.model))
    if setup is not None:
        parts.append(_setup_words(setup))
    gpu = next((g.name for g in report.gpus if g.name), None) or (setup.gpu.name if setup and setup.gpu else None)
    if gpu:
        count = setup.num_gpus if setup and "num_gpus" in known else len(report.ranks) or None
        parts.append(f"GPU {gpu}" + (f" x{count}" if count and count > 1 else ""))
    args = [f"{k}={v.value}" for k, v in report.training_args.items() if k in MEMORY_KEYS]
    if args:
        parts.append(" ".join(args))
    for rel in report.related_errors[:4]:
        parts.append(RELATED_WORDS.get(rel.kind, "") + " " + rel.message[:160])
    if report.torch_reserved_unallocated_bytes and report.torch_reserved_unallocated_bytes > 2 * 2**30:
        parts.append("large reserved but unallocated memory fragmentation")
    if report.other_processes:
        parts.append("other processes hold GPU memory")
    if trend is not None and (trend.growing or trend.said):
        parts.append(GROWTH_WORDS)
    if report.message and report.kind == "related_error":
        parts.append(report.message[:200])
    return " ; ".join(p.strip() for p in parts if p and p.strip())


def _stated(setup: TrainingSetup | None) -> set[str]:
    """The setup's fields a source stated (the user, the config, the log): an assumed default says nothing about
    this case, and words every assumed setup shares make the cases with the most settings everyone's neighbours."""
    return set() if setup is None else set(setup.provenance) - set(setup.assumptions())


def _setup_words(setup: TrainingSetup) -> str:
    """Facts of the setup that came from the user, the config or the log (defaults would only add noise)."""
    known = _stated(setup)
    words: list[str] = []
    if "method" in known:
        words.append({"full": "full fine-tuning", "freeze": "freeze tuning", "lora": "LoRA",
                      "qlora": "QLoRA 4-bit"}[setup.method] + f" method {setup.method}")
    if "quantization_bit" in known and setup.quantization_bit:
        words.append(f"quantization_bit {setup.quantization_bit} {setup.quantization_bit}-bit")
    if "seq_len" in known:
        words.append(f"cutoff_len {setup.seq_len} sequence length {setup.seq_len}")
    if "micro_batch" in known:
        words.append(f"per_device_train_batch_size {setup.micro_batch} batch size {setup.micro_batch}")
    if "grad_accum" in known:
        words.append(f"gradient_accumulation_steps {setup.grad_accum}")
    if "eval_batch" in known and setup.eval_batch:
        words.append(f"per_device_eval_batch_size {setup.eval_batch}")
    if "gradient_checkpointing" in known:
        words.append("gradient checkpointing " + ("on" if setup.gradient_checkpointing else "off disabled"))
    if "attn_implementation" in known:
        words.append(f"attention {setup.attn_implementation}")
    if "offload_optimizer" in known and setup.offload_optimizer or "offload_param" in known and setup.offload_param:
        words.append("offload to CPU host RAM")
    if "fsdp" in known and setup.fsdp:
        words.append("FSDP")
    if "packing" in known and setup.packing:
        words.append("packing")
    if "image_max_pixels" in known and setup.image_max_pixels:
        words.append(f"image_max_pixels {setup.image_max_pixels} image resolution")
    if "video_frames" in known and setup.video_frames:
        words.append(f"video frames {setup.video_frames}")
    if "eval_accumulation_steps" in known:
        words.append(f"eval_accumulation_steps {setup.eval_accumulation_steps}")
    arch = setup.model
    if arch is not None:
        if arch.vision is not None:
            words.append("vision-language multimodal vision tower")
        if arch.num_experts:
            words.append(f"MoE {arch.num_experts} experts")
        if arch.vocab_size >= 150_000:
            words.append("large vocabulary logits")
    if setup.gpu is not None and "gpu" in known:
        words.append(f"{setup.gpu.name}")
    if "num_gpus" in known:
        words.append(f"{setup.num_gpus} GPUs")
    return " ; ".join(words)
