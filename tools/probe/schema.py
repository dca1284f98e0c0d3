"""Contracts of the live CUDA probe: what to run, what each trial measured, the verdict."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from ..report import OOMReport


class ProbeSpec(BaseModel):
    """Everything the child process needs to build the model and run steps (JSON-serialisable)."""

    hf_config: dict = Field(description="the model's config.json content (model_type required)")
    weights_path: str | None = Field(default=None, description="local checkpoint dir: load real weights instead of random ones")
    trust_remote_code: bool = False
    device: str = "cuda:0"
    method: Literal["full", "freeze", "lora", "qlora"] = "lora"
    precision: Literal["bf16_mixed", "fp16_mixed", "pure_bf16", "fp32"] = "bf16_mixed"
    lora_rank: int = 8
    lora_targets: list[str] = Field(default_factory=lambda: ["all"])
    optimizer: str = "adamw"
    gradient_checkpointing: bool = False
    attn_implementation: str = "sdpa"
    freeze_vision_tower: bool = True
    freeze_projector: bool = False
    image_px: int | None = Field(default=None, description="square image side in pixels for vision-language models")
    steps: int = Field(default=3, ge=1, le=50)
    eval_only: bool = False
    inject_oom_above_tokens: int | None = Field(default=None, description="tests: raise a real OutOfMemoryError when micro_batch*seq_len exceeds this")


class Trial(BaseModel):
    micro_batch: int
    seq_len: int


class TrialResult(BaseModel):
    micro_batch: int
    seq_len: int
    result: Literal["ok", "oom", "error", "timeout"]
    peak_allocated_bytes: int | None = None
    peak_reserved_bytes: int | None = None
    step_seconds: list[float] = Field(default_factory=list)
    tokens_per_s: float | None = None
    error: str | None = None
    oom_report: OOMReport | None = None
    fits_margin: bool | None = Field(default=None, description="ok and peak reserved within the margin of the GPU")


class ProbeResult(BaseModel):
    """The probe's answer: the device, the build, every trial, and the calculator's estimate beside the measurement."""

    device_name: str | None = None
    gpu_total_bytes: int | None = None
    cuda_context_bytes: int | None = None
    n_params: int | None = None
    n_trainable: int | None = None
    after_load_bytes: int | None = None
    build_seconds: float | None = None
    trials: list[TrialResult] = Field(default_factory=list)
    find_max: Literal["batch", "seq"] | None = None
    max_fitting: int | None = Field(default=None, description="largest micro-batch / seq_len that fitted (find-max)")
    estimate_peak_bytes: int | None = None
    estimate_error: float | None = Field(default=None, description="(estimate - measured) / measured for the main trial")
    headroom_bytes: int | None = None
    versions: dict[str, str] = Field(default_factory=dict)
    error: str | None = None

    @property
    def main(self) -> TrialResult | None:
        return self.trials[0] if self.trials else None
