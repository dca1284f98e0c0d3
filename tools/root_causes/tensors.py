"""The tensors a setup allocates in one piece (logits, attention scores, weight matrices, ZeRO partitions), each
with the causes a failing allocation of exactly its size points to."""

from __future__ import annotations

from pydantic import BaseModel, Field

from ..labels import Label
from ..memory.schema import MemoryEstimate
from ..training_setup import TrainingSetup
from ..units import GiB, KiB, MiB
from .facts import observed
from .weights import (BF16_BYTES, FP32_BYTES, FULL_SHARDING, QUANTIZED_BITS, QWEN2_VL_DEFAULT_MAX_PIXELS, THRESHOLDS,
                      Thresholds)


class TensorCandidate(BaseModel):
    """A tensor the setup would allocate in one piece, with the causes an allocation of exactly that size points to."""

    name: str
    bytes: int
    formula: str
    labels: dict[Label, str] = Field(description="label → the rule (its weights-table name) a request of this size fires")


def tensor_candidates(setup: TrainingSetup, estimate: MemoryEstimate | None = None) -> list[TensorCandidate]:
    """Tensors of this setup that are allocated in one piece (logits, weight matrices, ZeRO shards, attention scores)."""
    arch = setup.model
    if arch is None:
        return []
    out: list[TensorCandidate] = []
    b, s_len, vocab = setup.micro_batch, setup.seq_len, arch.vocab_size
    # Logits: the LM head emits b*s*V in bf16 and the loss upcasts them to fp32 (HF LlamaForCausalLM: logits.float());
    # the shifted copy drops one position (labels[..., 1:]).
    batches = {("train", b)}
    if setup.eval_batch:
        batches.add(("eval", setup.eval_batch))
    for mode, bb in sorted(batches):
        for ss, shift in ((s_len, ""), (s_len - 1, " (shifted)")):
            for nbytes, dt in ((FP32_BYTES, "fp32"), (BF16_BYTES, "bf16")):
                labels = {Label.logits_large_vocab: "match_logits",
                          Label.batch_too_large if bb > 1 else Label.seq_len_too_long: "match_logits_tokens"}
                if mode == "eval":
                    labels = {Label.eval_accumulation: "match_eval_logits", Label.logits_large_vocab: "match_eval_logits_vocab",
                              Label.batch_too_large: "match_eval_logits_batch"}
                out.append(TensorCandidate(
                    name=f"{mode} logits {dt}{shift}", bytes=bb * ss * vocab * nbytes,
                    formula=f"{bb} x {ss} tokens x {vocab:,} vocab x {nbytes} B", labels=labels))
    # Eager attention scores: b * heads * s * s (bf16 scores, fp32 softmax) — Vaswani et al. attention, no flash kernel.
    for nbytes, dt in ((BF16_BYTES, "bf16"), (FP32_BYTES, "fp32")):
        out.append(TensorCandidate(
            name=f"attention scores {dt}", bytes=b * arch.num_heads * s_len * s_len * nbytes,
            formula=f"{b} x {arch.num_heads} heads x {s_len}^2 x {nbytes} B",
            labels={Label.eager_attention: "match_attention_scores", Label.seq_len_too_long: "match_attention_scores_length"}))
    # Vision-tower attention over one image's patches: patches^2 x heads x dtype (ViT, Dosovitskiy et al. 2021);
    # patches = pixels / patch_size^2 before any spatial merge (Qwen2-VL merges 2x2 only after the tower).
    vis = arch.vision
    pixels, source = setup.image_max_pixels, "image_max_pixels"
    if vis is not None and not pixels:
        if vis.image_size:
            pixels, source = vis.image_size ** 2, "fixed image size"
        elif vis.kind in ("qwen2_vl", "qwen2_5_vl"):
            # Qwen2-VL's image processor default max_pixels = 28 x 28 x 16384 (preprocessor_config.json; oom-signals.md).
            pixels, source = QWEN2_VL_DEFAULT_MAX_PIXELS, "the processor's default max_pixels"
    if vis is not None and pixels:
        patches = pixels // max(vis.patch_size, 1) ** 2
        for nbytes, dt in ((BF16_BYTES, "bf16"), (FP32_BYTES, "fp32")):
            out.append(TensorCandidate(
                name=f"vision attention scores {dt}", bytes=patches * patches * vis.num_heads * nbytes,
                formula=f"{patches:,} patches^2 x {vis.num_heads} heads x {nbytes} B ({source} {pixels:,})",
                labels={Label.vision_tokens: "match_vision_scores"}))
    # One weight matrix (rows x cols x dtype): the run was still placing or upcasting weights.
    h = arch.hidden_size
    mats = {"MLP": arch.intermediate_size, "attention projection": arch.num_heads * arch.head_dim,
            "KV projection": arch.num_kv_heads * arch.head_dim, "embedding / LM head": arch.vocab_size}
    if arch.moe_intermediate_size:
        mats["MoE expert MLP"] = arch.moe_intermediate_size
    if arch.shared_expert_intermediate_size:
        mats["shared expert MLP"] = arch.shared_expert_intermediate_size
    full = setup.method == "full"
    for what, cols in mats.items():
        if not cols or cols == arch.num_kv_heads * arch.head_dim and what == "KV projection" and cols == h:
            continue
        for nbytes, dt in ((BF16_BYTES, "bf16/fp16"), (FP32_BYTES, "fp32")):
            if nbytes == BF16_BYTES:
                labels = {Label.model_load_oom: "match_weight16_loading", Label.weights_exceed_gpu: "match_weight16"}
                if arch.is_moe and "MoE" in what:
                    labels[Label.moe_memory] = "match_expert_weight16"
                if full and observed(setup, "method"):
                    # Full fine-tuning keeps a bf16 gradient of every weight: same shape and dtype as the weight.
                    labels[Label.full_ft_model_states] = "match_weight16_gradient"
                if setup.quantization_bit in QUANTIZED_BITS and observed(setup, "quantization_bit"):
                    # bitsandbytes stores 4/8-bit weights packed (1/4 or 1/2 of this size): a 16-bit copy of one means
                    # the quantization was not applied there, or the weight is being de-quantized.
                    labels[Label.quantization_setup] = "match_weight16_unquantized"
            elif full:
                labels = {Label.full_ft_model_states: "match_weight32_full_ft"}
            else:
                labels = {Label.weights_exceed_gpu: "match_weight32", Label.model_load_oom: "match_weight32_loading"}
            out.append(TensorCandidate(name=f"one {what} weight {dt}", bytes=h * cols * nbytes,
                                       formula=f"{h} x {cols} x {nbytes} B", labels=labels))
    # ZeRO partition of one fp32 optimizer tensor: trainable params / data-parallel GPUs x 4 B (ZeRO paper, Rajbhandari et al. 2020).
    n_train = estimate.n_trainable if estimate is not None and estimate.n_trainable else None
    if n_train and setup.num_gpus >= 1:
        parts = setup.num_gpus if setup.zero_stage >= 1 else 1
        labels = {Label.full_ft_model_states: "match_optimizer_partition"}
        if setup.zero_stage < FULL_SHARDING and setup.num_gpus > 1:
            labels[Label.zero_stage_insufficient] = "match_optimizer_partition_sharding"
        out.append(TensorCandidate(name="fp32 optimizer-state partition", bytes=n_train * FP32_BYTES // parts,
                                   formula=f"{n_train:,} trainable params / {parts} GPU x {FP32_BYTES} B", labels=labels))
    return [c for c in out if c.bytes > 0]


def matches_size(requested: int, candidate: int, th: Thresholds = THRESHOLDS) -> bool:
    """Equal up to the two-decimal rounding of the printed size (± one unit in the last digit, ≥ 1.2% slack)."""
    unit = GiB if requested >= GiB else MiB if requested >= MiB else KiB
    return abs(requested - candidate) <= max(th["size_match_slack"] * candidate, th["printed_size_rounding"] * unit)
