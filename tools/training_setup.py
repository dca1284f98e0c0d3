"""The training setup as ask-oom understands it, with where each fact came from.

Built from every source (log, the user's config, what the user said in chat, framework defaults,
the model registry); the calculator and the planner read only this, never raw configs.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from .frameworks import Framework
from .gpus import GPUSpec
from .model_arch import ModelArch

Origin = Literal["log", "config", "user", "default", "registry", "derived"]
Method = Literal["full", "freeze", "lora", "qlora"]
ADAPTER_METHODS = ("lora", "qlora")   # the methods that train adapters over frozen base weights
# mixed = fp32 master weights + bf16/fp16 autocast (HF Trainer bf16=True on an fp32-loaded model;
# LLaMA-Factory upcasts *trainable* params to fp32 unless pure_bf16); pure_bf16 = everything bf16.
Precision = Literal["bf16_mixed", "fp16_mixed", "pure_bf16", "fp32"]
Optimizer = Literal["adamw", "adamw_fused", "adamw_8bit", "paged_adamw_8bit", "paged_adamw_32bit", "adafactor", "sgd", "lion"]
Attention = Literal["eager", "sdpa", "flash_attention_2"]
# Preference stages that score a chosen and a rejected answer per sample run two sequences through the model.
Stage = Literal["sft", "pt", "dpo", "kto", "orpo", "simpo", "rm", "ppo", "grpo"]
PAIRED_STAGES = frozenset({"dpo", "orpo", "simpo", "rm"})
# What the run does on the GPU, read from the config (LLaMA-Factory / HF TrainingArguments do_train, do_eval, do_predict,
# predict_with_generate): a training step (with evaluation between steps when enabled), an evaluation-only forward
# (no gradients, no optimizer), prediction (a forward whose logits are kept), or prediction by generation (weights,
# the prompt and a KV cache for max_new_tokens).
Workload = Literal["train", "eval", "predict", "generate"]
WORKLOADS: tuple[str, ...] = ("train", "eval", "predict", "generate")


class Provenance(BaseModel):
    """Where one fact came from: origin plus a human pointer (file:key, 'log line 12', 'LLaMA-Factory default')."""

    origin: Origin
    detail: str = ""


class TrainingSetup(BaseModel):
    """Everything the memory calculator needs about one training (or eval) run, per GPU.

    Defaults are the common case (LoRA-free bf16 mixed-precision AdamW, one GPU); any field the
    assembler fills from a source gets a `provenance` entry, so the UI can show facts vs assumptions.
    """

    framework: Framework = "hf_trainer"
    model_name: str | None = None
    model: ModelArch | None = Field(default=None, description="resolved from config.json or the registry")
    stated_params: int | None = Field(default=None, ge=1, description="parameters a model name states (\"-76B\") when "
                                      "no architecture resolves: they size the weights alone")
    method: Method = "full"
    lora_rank: int = 8
    lora_targets: list[str] = Field(default_factory=lambda: ["all"], description="module names, or ['all'] for all linear layers")
    peft_version: str | None = Field(default=None, description="the PEFT release the run used (\"0.21.2\"); None: the "
                                     "newest the calculator models (memory.params.PEFT_MOE_RETARGETING)")
    lora_dropout: float = Field(default=0.0, ge=0.0, lt=1.0, description="LoRA dropout (PEFT LoraConfig / LLaMA-Factory default 0)")
    quantization_bit: int | None = None
    precision: Precision = "bf16_mixed"
    optimizer: Optimizer = "adamw"
    zero_stage: int = Field(default=0, ge=0, le=3)
    offload_optimizer: bool = False
    offload_param: bool = False
    fsdp: bool = False
    num_gpus: int = Field(default=1, ge=1, description="data-parallel world size (all nodes)")
    num_nodes: int = Field(default=1, ge=1)
    micro_batch: int = Field(default=1, ge=1, description="per_device_train_batch_size")
    eval_batch: int | None = Field(default=None, description="per_device_eval_batch_size (None: no eval)")
    grad_accum: int = Field(default=1, ge=1)
    seq_len: int = Field(default=1024, ge=1, description="padded worst-case tokens per sample (cutoff_len / max_seq_length)")
    packing: bool = False
    gradient_checkpointing: bool = False
    attn_implementation: Attention = "sdpa"
    liger_kernel: bool = False
    freeze_vision_tower: bool = True
    freeze_projector: bool = False
    train_mm_proj_only: bool = False
    image_max_pixels: int | None = None
    images_per_sample: int = 0
    video_frames: int = 0
    eval_accumulation_steps: int | None = None
    expandable_segments: bool = False
    stage: Stage = Field(default="sft", description="training objective: sft/pt, or a preference / RL stage")
    workload: Workload = Field(default="train", description="what the run does: train, eval (evaluation only), "
                               "predict (logits kept), generate (prediction by generation)")
    max_new_tokens: int | None = Field(default=None, ge=1, description="tokens generated per sample (generate workload)")
    num_beams: int = Field(default=1, ge=1, description="beam search width of generation (each beam keeps a KV cache)")
    eval_samples: int | None = Field(default=None, ge=1, description="samples evaluated or predicted (max_samples), when known")
    quant_storage_sharded: bool = Field(default=True, description="4/8-bit weights are partitioned by ZeRO-3 "
                                        "(bnb_4bit_quant_storage set, as LLaMA-Factory does)")
    reference_model: bool = Field(default=False, description="a frozen copy of the weights for the KL term (DPO, KTO, PPO, GRPO)")
    # vLLM serving (framework "vllm": `vllm serve` flags or LLM(...) keywords); None: vLLM's own default, resolved by the
    # calculator (tools/memory/serve.py), since several depend on the GPU and the entry point
    gpu_memory_utilization: float | None = Field(default=None, gt=0.0, le=1.0, description="vLLM --gpu-memory-utilization")
    max_model_len: int | None = Field(default=None, ge=1, description="vLLM --max-model-len (None: the model's context)")
    max_num_seqs: int | None = Field(default=None, ge=1, description="vLLM --max-num-seqs")
    max_num_batched_tokens: int | None = Field(default=None, ge=1, description="vLLM --max-num-batched-tokens")
    tensor_parallel_size: int = Field(default=1, ge=1, description="vLLM --tensor-parallel-size: GPUs one model is split over")
    kv_cache_dtype: str = Field(default="auto", description="vLLM --kv-cache-dtype: auto (the model dtype) or fp8*")
    enforce_eager: bool = Field(default=False, description="vLLM --enforce-eager: no CUDA graphs are captured")
    serve_entry: Literal["server", "llm"] = Field(default="server", description="vLLM usage context: an OpenAI API server "
                                                 "(`vllm serve`) or the offline LLM class; their defaults differ")
    gpu: GPUSpec | None = None
    host_ram_bytes: int | None = None
    provenance: dict[str, Provenance] = Field(default_factory=dict, description="field name → where it came from")

    @property
    def sharding_stage(self) -> int:
        """The ZeRO stage the setup shards like: its own, or 3 under FSDP (FULL_SHARD partitions weights, gradients and
        optimizer states alike)."""
        return 3 if self.fsdp else self.zero_stage

    @property
    def effective_batch(self) -> int:
        """micro-batch × accumulation × data-parallel GPUs: what a schedule change must preserve."""
        return self.micro_batch * self.grad_accum * self.num_gpus

    def with_fact(self, field: str, value: Any, origin: Origin, detail: str = "") -> "TrainingSetup":
        """A copy with one field set and its provenance recorded."""
        prov = dict(self.provenance)
        prov[field] = Provenance(origin=origin, detail=detail)
        return self.model_copy(update={field: value, "provenance": prov})

    def stated(self, field: str) -> bool:
        """Whether a source gave this field (constructor argument or a recorded fact), not a default nobody stated."""
        prov = self.provenance.get(field)
        return field in self.model_fields_set and (prov is None or prov.origin != "default")

    def assumptions(self) -> list[str]:
        """Fields that were filled from defaults rather than observed: shown to users as assumptions."""
        return [k for k, p in self.provenance.items() if p.origin == "default"]
