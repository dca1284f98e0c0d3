"""The log parser's output contract: what a pasted log says about an out-of-memory failure.

Sizes are integers in bytes (1 GiB = 2**30); each number keeps the line it came from in `evidence`
with the unit as written. Fields a log does not show stay None / empty: later stages must not guess them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from .frameworks import LOG_FRAMEWORKS

OOMKind = Literal[
    "cuda_oom",       # torch.OutOfMemoryError / "CUDA out of memory" / "CUDA error: out of memory"
    "host_oom",       # host RAM: "Killed", SIGKILL/-9 in launcher tables, "Cannot allocate memory", pinned-memory failures
    "cublas_alloc",   # CUBLAS_STATUS_ALLOC_FAILED, CUDNN_STATUS_NOT_ENOUGH_WORKSPACE / ALLOC_FAILED
    "nccl_oom",       # NCCL "out of memory" / ncclSystemError on allocation
    "hip_oom",        # ROCm "HIP out of memory"
    "xpu_oom",        # Intel GPUs (IPEX, torch.xpu) "XPU out of memory"
    "npu_oom",        # Huawei Ascend (torch_npu) "NPU out of memory"
    "mps_oom",        # Apple "MPS backend out of memory"
    "xla_oom",        # XLA/JAX RESOURCE_EXHAUSTED
    "tf_oom",         # TensorFlow "OOM when allocating tensor"
    "related_error",  # no OOM, but an error met while fixing memory (bitsandbytes kwargs, bf16 op, flash-attn)
    "not_oom",        # nothing memory-related found
]

# How each memory error's device or library is named to the user ("CUDA out of memory on GPU 0"); host_oom and the
# kinds without a device are worded apart
KIND_NAMES: dict[str, str] = {"cuda_oom": "CUDA", "hip_oom": "ROCm/HIP", "xpu_oom": "Intel XPU", "npu_oom": "Ascend NPU",
                              "mps_oom": "MPS", "xla_oom": "XLA", "tf_oom": "TensorFlow", "cublas_alloc": "cuBLAS/cuDNN",
                              "nccl_oom": "NCCL"}

# PyTorch's caching-allocator message, on NVIDIA (CUDA), AMD (HIP) and Intel (XPU) GPUs and Ascend NPUs (torch_npu
# forks the allocator): the same numbers to read
TORCH_ALLOCATOR_KINDS: tuple[str, ...] = ("cuda_oom", "hip_oom", "xpu_oom", "npu_oom")

Phase = Literal[
    "model_loading", "forward", "backward", "optimizer_step", "evaluation", "generation",
    "checkpoint_save", "lora_merge", "data_loading", "unknown",
]


class Evidence(BaseModel):
    """One log line that supports a parsed fact (1-based line number in the pasted text)."""

    line: int
    text: str
    fact: str = Field(default="", description="what this line established, e.g. 'requested_bytes'")


class OtherProcess(BaseModel):
    pid: int
    bytes: int


class GPUSeen(BaseModel):
    """A GPU named in the log (nvidia-smi table, device banner, or the OOM message)."""

    index: int | None = None
    name: str | None = None
    memory_bytes: int | None = None
    used_bytes: int | None = None


class LoggedArg(BaseModel):
    """A training argument the framework printed into the log, as text, with its line."""

    value: str
    line: int


class RelatedError(BaseModel):
    kind: Literal[
        "bnb_quantization_kwargs", "dtype_not_implemented", "flash_attn_missing", "flash_attn_unused",
        "weights_offloaded", "nccl_timeout", "device_side_assert", "sigbus", "sigfpe", "other",
    ]
    message: str
    line: int


class OOMReport(BaseModel):
    """Typed summary of one pasted log. Produced by `parse_log`; consumed by every later stage."""

    kind: OOMKind = "not_oom"
    message: str | None = Field(default=None, description="the primary error line, verbatim (trimmed)")
    requested_bytes: int | None = None
    gpu_index: int | None = None
    gpu_total_bytes: int | None = None
    gpu_free_bytes: int | None = None
    process_used_bytes: int | None = Field(default=None, description="'this process has X memory in use' (incl. non-PyTorch)")
    torch_allocated_bytes: int | None = None
    torch_reserved_bytes: int | None = Field(default=None, description="old format: 'X reserved in total by PyTorch'")
    torch_reserved_unallocated_bytes: int | None = None
    other_processes: list[OtherProcess] = Field(default_factory=list)
    phase: Phase = "unknown"
    operation: str | None = Field(
        default=None,
        description="cross_entropy | attention | vision_tower | moe_experts | zero3_allgather | optimizer | lm_head | embedding | None",
    )
    framework: str | None = Field(default=None, description=" | ".join(LOG_FRAMEWORKS) + " (the most specific one the log shows)")
    launcher: str | None = Field(default=None, description="torchrun | deepspeed | accelerate | python | llamafactory-cli")
    deepspeed_stage: int | None = None
    model: str | None = Field(default=None, description="model name or path as the log writes it")
    gpus: list[GPUSeen] = Field(default_factory=list)
    gpu_count: int | None = Field(default=None, description="GPUs in the run as the log shows it (world size, "
                                  "--nproc_per_node, nvidia-smi rows, CUDA_VISIBLE_DEVICES)")
    versions: dict[str, str] = Field(default_factory=dict, description="package → version, e.g. torch → 2.1.0")
    training_args: dict[str, LoggedArg] = Field(
        default_factory=dict, description="argument → value as printed (flags and numbers only when well-shaped); also "
        "banner counts: trainable_params and all_params (PEFT 'trainable params: N || all params: M'), num_examples, "
        "total_train_batch_size, eval_batch_size")
    ranks: list[int] = Field(default_factory=list, description="ranks that printed the same OOM (reported once): from "
                             "launcher prefixes ([rank3]:, [default0]:, 0: ), else the GPU indices that printed it")
    attn_implementation: str | None = Field(
        default=None, description="attention kernel the log shows: eager | sdpa | flash_attention_2 | flash_attention_3 "
        "| flex_attention | xformers, or eager_or_sdpa when it only says FlashAttention was unavailable (the library "
        "default then runs); evidence fact 'attn_implementation'")
    host_ram_total_bytes: int | None = Field(
        default=None, description="host RAM size as the log shows it (DeepSpeed's 'CPU Virtual Memory: used = U GB, "
        "percent = P%' gives U / P; GB there is GiB)")
    host_ram_used_bytes: int | None = Field(
        default=None, description="host RAM in use (total - available) at the highest such print in the log")
    optimizer_offloaded: bool = Field(
        default=False, description="the log shows DeepSpeed's CPU Adam (its op loaded or its banner): the optimizer and "
        "its states are offloaded to host RAM; evidence fact 'optimizer_offloaded'")
    exit_signal: str | None = Field(default=None, description="SIGKILL / SIGBUS / SIGFPE / exit code from launcher summaries")
    evidence: list[Evidence] = Field(default_factory=list)
    related_errors: list[RelatedError] = Field(default_factory=list)
    lines: int = 0
    truncated: bool = Field(default=False, description="input exceeded the size limit and only a part was read")

    @property
    def is_memory_error(self) -> bool:
        return self.kind not in ("not_oom", "related_error")
