"""The root-cause vocabulary (../shared/root-causes.md): stable snake_case labels every diagnosis,
knowledge-base case and evaluation uses; the first cause of a list is the primary one."""

from __future__ import annotations

from pydantic import BaseModel, Field

ROOT_CAUSES: dict[str, str] = {
    "seq_len_too_long": "sequence length (cutoff_len, max_seq_length, packed length) drives activations and logits past the budget",
    "batch_too_large": "the per-device micro-batch is too large (train or eval)",
    "no_gradient_checkpointing": "activations of every layer are kept because gradient checkpointing is off",
    "eager_attention": "attention materialises the b*heads*s*s score matrix (eager / no sdpa or flash-attn)",
    "logits_large_vocab": "the logits and the fp32 cross-entropy over a large vocabulary dominate the peak",
    "weights_exceed_gpu": "the (frozen or trained) weights alone do not fit one GPU: quantize (4/8-bit), shard (ZeRO-3/FSDP) or split the model",
    "full_ft_model_states": "weights + gradients + optimizer states of full fine-tuning do not fit; LoRA/QLoRA, ZeRO or offload needed",
    "zero_stage_insufficient": "sharding too weak for the GPU count (ZeRO-0/1/2 where 3 is needed, no FSDP)",
    "offload_host_ram": "host (CPU) RAM exhausted: offload, model loading on every rank, dataloader workers; process killed",
    "fragmentation": "large 'reserved but unallocated' memory; allocator fragmentation (expandable_segments helps)",
    "memory_growth": "memory grows across steps: tensors kept alive, variable shapes, a leak in a model or framework version",
    "vision_tokens": "too many visual tokens (image resolution, number of images, video frames) or a trainable vision tower",
    "moe_memory": "mixture-of-experts specifics: all experts resident, expert gathering under ZeRO-3, router buffers",
    "eval_accumulation": "OOM only in evaluation/prediction: accumulated logits or predictions, a larger eval batch",
    "model_load_oom": "OOM while loading, merging (LoRA merge), converting or saving a checkpoint",
    "other_process": "other processes (or another rank's context) hold memory on the same GPU",
    "quantization_setup": "4/8-bit quantization misconfigured or incompatible (bitsandbytes, quantization_config)",
    "dtype_unsupported": "an op is not implemented for the chosen dtype / a version incompatibility met while fixing memory",
    "generation_kv_cache": "KV cache of generation or inference (vLLM gpu_memory_utilization, long max_new_tokens)",
    "multi_gpu_imbalance": "one rank holds more than the others (device_map auto, rank-0 gathers, uneven pipeline)",
    "not_oom": "the log shows no memory error",
}


class RootCause(BaseModel):
    """One ranked cause: a vocabulary label, a score in [0, 1], and the evidence that supports it."""

    label: str
    score: float = Field(ge=0.0, le=1.0)
    why: list[str] = Field(default_factory=list, description="each item one piece of evidence, numbers from tools")

    @property
    def meaning(self) -> str:
        return ROOT_CAUSES.get(self.label, "")


def is_known_label(label: str) -> bool:
    return label in ROOT_CAUSES
