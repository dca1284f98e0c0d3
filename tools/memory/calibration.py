"""Map a calibration measurement row (../shared/calibration protocol) to the TrainingSetup it ran."""

from __future__ import annotations

from typing import Literal

from ..training_setup import TrainingSetup
from .arch_loader import load_model_arch

# Protocol methods (calibration README) → ask-oom's method/precision vocabulary.
_METHODS: dict[str, tuple[str, str]] = {
    "full_fp32_master": ("full", "bf16_mixed"),  # fp32 weights, bf16 autocast, AdamW on fp32 params
    "full_bf16": ("full", "pure_bf16"),  # bf16 weights and AdamW states
    "lora": ("lora", "bf16_mixed"),  # frozen bf16 base, fp32 adapters
    "qlora": ("qlora", "bf16_mixed"),
    "eval": ("full", "pure_bf16"),  # forward under no_grad of a bf16 model
}

# The stack every row was measured on (calibration README: torch 2.11.0+cu130, transformers 5.17.0, peft 0.21.0): the PEFT
# release decides which MoE modules all-linear wraps (params.PEFT_MOE_RETARGETING). A row that records its own wins.
PROTOCOL_PEFT = "0.21.0"


def row_family(row: dict) -> str:
    """The model family a row measured, for leave-one-family-out: every Qwen row is one family (Qwen2.5 dense, MoE and VL
    share the tokenizer and the layer code), Llama-2 and Llama-3.x are two (MHA + 32k vocabulary vs GQA + 128k)."""
    name = str(row.get("model", "")).lower()
    if name.startswith("qwen"):
        return "qwen"
    if name.startswith("llama"):
        return "-".join(name.split("-")[:2]).split(".")[0]   # llama-2, llama-3
    return name.split("-")[0]


def row_to_setup(row: dict) -> tuple[TrainingSetup, Literal["train", "eval"]]:
    """The setup a calibration row measured, and whether it was a training or an eval step."""
    method, precision = _METHODS[row["method"]]
    arch = load_model_arch(row["architecture"], name=row.get("model"))
    vision = arch.vision is not None and bool(row.get("image_px"))
    setup = TrainingSetup(
        framework="other", model_name=row.get("model"), model=arch, method=method, precision=precision,
        lora_rank=int(row.get("lora_r", 16)), peft_version=str(row.get("peft", PROTOCOL_PEFT)), lora_targets=[row.get("lora_targets", "all")] if isinstance(row.get("lora_targets", "all"), str) else list(row["lora_targets"]),
        quantization_bit=4 if method == "qlora" else None,
        optimizer="adamw_fused" if row.get("fused") else "adamw",
        micro_batch=int(row["micro_batch"]), seq_len=int(row["seq_len"]),
        gradient_checkpointing=bool(row.get("gradient_checkpointing")),
        attn_implementation=row.get("attn_implementation", "sdpa"),
        # PEFT all-linear reaches the vision tower and merger unless excluded; full_bf16 rows froze them
        freeze_vision_tower=bool(row.get("freeze_vision", method != "lora")),
        freeze_projector=bool(row.get("freeze_vision", method != "lora")),
        image_max_pixels=int(row["image_px"]) ** 2 if vision else None,
        images_per_sample=1 if vision else 0,
    )
    return setup, ("eval" if row["method"] == "eval" else "train")
