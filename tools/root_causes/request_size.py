"""The requested size names the tensor: the failing allocation matched against the setup's one-piece tensors,
against fp32 logits of a power-of-two token count, or against its share of the GPU."""

from __future__ import annotations

import math
import re

from ..labels import Label
from ..log_cues import Cue
from ..memory.schema import MemoryEstimate
from ..report import OOMReport
from ..training_setup import TrainingSetup
from ..units import GiB, MiB, format_bytes
from .facts import STATE_PHASES, observed, stand_in_model, stated_micro_batch
from .signals import Signal, support
from .tensors import matches_size, tensor_candidates
from .weights import (BF16_BYTES, BILLION, DEEPSPEED_SUB_GROUP_SIZE, DEFAULT_WEIGHTS, FP32_BYTES, FULL_SHARDING, LARGE_VOCABS,
                      MILLION, QUOTE_SHORT, THRESHOLDS, Thresholds, Weights)


def request_explained(report: OOMReport, setup: TrainingSetup | None, estimate: MemoryEstimate | None,
                      th: Thresholds = THRESHOLDS) -> bool:
    """The failing allocation equals one of the user's own tensors (not a stand-in model's): its size is explained,
    so a predicted fit that still ran out needs no growth or fragmentation story."""
    req = report.requested_bytes
    if not req or setup is None or setup.model is None or stand_in_model(setup):
        return False
    return any(matches_size(req, cand.bytes, th) for cand in tensor_candidates(setup, estimate))


def impossible_request(report: OOMReport, th: Thresholds = THRESHOLDS) -> bool:
    """Is the failed request past any memory that exists (weights.py: impossible_request_bytes)?"""
    return bool(report.requested_bytes) and report.requested_bytes >= th["impossible_request_bytes"]


def impossible_request_signals(report: OOMReport) -> list[Signal]:
    """A request past any memory that exists, on the GPU or the host (ggml's CPU buffer of 2^64 - 2048 bytes): the
    size is wrong, not the budget."""
    return [support(Label.not_oom, "impossible_request",
                    f"the request, {format_bytes(report.requested_bytes or 0)}, is more than any machine holds: a size "
                    "computed wrong (an overflowed product or a negative size read as unsigned), not a memory budget; "
                    "look for the shape or dtype that produced it")]


def gathers_parameters(report: OOMReport, setup: TrainingSetup | None) -> bool:
    """The request failed while ZeRO-3 gathered parameters (a dense model's: an MoE's gather is its experts'): a
    parameter buffer, not an activation. With a ZeRO-3 sub-group or ZeRO-partition match (their own families), the
    request is explained as a state buffer, and no activation reading of its size applies."""
    return report.operation == "zero3_allgather" and not (setup is not None and setup.model is not None
                                                          and setup.model.is_moe)


def request_vs_tensors(report: OOMReport, setup: TrainingSetup | None, estimate: MemoryEstimate | None,
                       multimodal: str | None = None, weights: Weights = DEFAULT_WEIGHTS,
                       state_buffer: bool = False) -> list[Signal]:
    """The failing allocation's size against the setup's tensors and the GPU; `multimodal` says why a vision tower is
    in the step. `weights` picks each label's best-matching tensor (several can share a size); `state_buffer` says
    the request is a parameter or state buffer (a ZeRO-3 gather, sub group or partition), so its size is no
    activation's."""
    th = weights.thresholds
    req = report.requested_bytes
    if not req:
        return []
    if impossible_request(report, th):
        return impossible_request_signals(report)
    out: list[Signal] = []
    total = report.gpu_total_bytes or (setup.gpu.memory_bytes if setup and setup.gpu else None)
    where = f"the whole GPU ({format_bytes(total)})" if total else ""
    if not total and req > th["largest_gpu_bytes"]:
        total = int(th["largest_gpu_bytes"])   # the GPU is unknown, but no GPU holds this much: compare with the largest
        where = f"any GPU (the largest hold {format_bytes(total)})"
    if state_buffer:
        # the size is a state buffer's: only the setup's own tensors of that size speak (no activation reading)
        return _matched_tensors(req, setup, estimate, weights)[0] if setup is not None and setup.model is not None else []
    if total and th["quadratic_request_share"] * total <= req <= total and (setup is None or setup.model is None):
        out.append(support(Label.vision_tokens, "request_half_gpu_unsized",
                           f"one {format_bytes(req)} tensor ({req / total:.0%} of the GPU): only quadratic tensors get this "
                           "large, e.g. attention over thousands of visual patches"))
    if total and req > total:
        out.append(support(Label.vision_tokens, "request_above_gpu_multimodal" if multimodal else "request_above_gpu",
                           f"one allocation of {format_bytes(req)} is larger than {where}: a quadratic tensor over far too "
                           "many (visual) tokens"))
        out.append(support(Label.seq_len_too_long, "request_above_gpu_tokens",
                           f"a single {format_bytes(req)} tensor is larger than {where}: too many tokens per step"))
        flash = setup is not None and setup.attn_implementation == "flash_attention_2" and \
            observed(setup, "attn_implementation")
        if not flash:
            # The one tensor that outgrows a whole GPU at sane token counts is the attention score matrix,
            # batch x heads x s x s, which only eager (naive) attention materialises: flash attention never does.
            out.append(support(Label.eager_attention, "request_above_gpu_scores",
                               f"a single {format_bytes(req)} tensor is larger than {where}: the attention score "
                               "matrix (batch x heads x tokens x tokens) of eager attention grows this large; flash "
                               "attention never allocates it"))
    matched = False
    if setup is not None and setup.model is not None:
        signals, matched = _matched_tensors(req, setup, estimate, weights)
        out += signals
        vocab = max(setup.model.vocab_size, 1)
        tokens = req / (vocab * FP32_BYTES)
        in_training = setup.micro_batch * setup.seq_len
        if not matched and tokens >= th["logits_min_tokens"] and _near_power_of_two(tokens, th["power_of_two_slack"]):
            out.append(support(Label.logits_large_vocab, "request_fp32_logits",
                               f"{format_bytes(req)} / ({vocab:,} vocab x {FP32_BYTES} B) = {tokens:,.0f} tokens: "
                               "an fp32 logits tensor of a power-of-two token count"))
            serving = estimate is not None and estimate.workload == "serve"   # no training step to compare with
            if tokens > th["eval_tokens_over_training"] * in_training and not serving:
                out.append(support(Label.eval_accumulation, "request_logits_beyond_training",
                                   f"{tokens:,.0f} tokens in flight, more than the training step's "
                                   f"{setup.micro_batch} x {setup.seq_len}: the failing step is evaluation"))
    if multimodal and total and req > th["multimodal_request_share"] * total and not matched and \
            report.phase not in STATE_PHASES:
        # Visual tokens per sample are the one input of a multimodal run that makes a single tensor this large
        # (Qwen2-VL's default max_pixels is ~12.8 MP per image; video multiplies by frames: oom-signals.md).
        share = f"takes {req / total:.0%} of the GPU" if where.startswith("the whole") else "is more than any GPU holds"
        out.append(support(Label.vision_tokens, "multimodal_large_request",
                           f"{multimodal}, and one {format_bytes(req)} allocation {share}: visual tokens per "
                           "sample are the likely driver"
                           + ("" if report.operation == "vision_tower" else _patches_behind(req, setup))))
    elif multimodal and total and th["multimodal_mid_request_share"] * total <= req <= th["multimodal_request_share"] * total \
            and not matched and report.phase in ("forward", "backward", "unknown", "generation"):
        out.append(support(Label.vision_tokens, "multimodal_mid_request",
                           f"{multimodal}: activations grow with the visual tokens of each sample"))
    if not matched and (setup is None or setup.model is None):
        out += _logits_without_model(report, req, th)
    if total and not matched and req >= th["one_piece_request_share"] * total:
        out += _one_piece_request(report, setup, req, total, th)
    return out


def _matched_tensors(req: int, setup: TrainingSetup, estimate: MemoryEstimate | None,
                     weights: Weights) -> tuple[list[Signal], bool]:
    """Signals of the setup's tensors the request equals, each label once at its best match; and whether any matched."""
    # Several candidates can have the same size (an MoE expert and a dense MLP of equal width): the request is one
    # tensor, so each label counts its best match once instead of summing look-alikes.
    best: dict[Label, tuple[float, str, str]] = {}
    # A stand-in model (the registry's nearest of the named size) has its own shapes, not the user's: a size match
    # on it is a coincidence as often as a clue.
    stand_in = stand_in_model(setup)
    scale = weights.thresholds["stand_in_match_scale"] if stand_in else 1.0
    matched = False
    for cand in tensor_candidates(setup, estimate):
        if not matches_size(req, cand.bytes, weights.thresholds):
            continue
        matched = True
        for label, name in cand.labels.items():
            pts = weights.points[name]
            if pts > best.get(label, (0.0, "", ""))[0]:
                best[label] = (pts, name, f"the {format_bytes(req)} request equals the {cand.name}: {cand.formula} = "
                                          f"{format_bytes(cand.bytes)}" + (" (of the stand-in model)" if stand_in else ""))
    return [support(label, name, reason, scale) for label, (_, name, reason) in best.items()], matched


def _one_piece_request(report: OOMReport, setup: TrainingSetup | None, req: int, total: int,
                       th: Thresholds) -> list[Signal]:
    """An unmatched allocation of a large share of the GPU: a state buffer in a state phase, else one activation."""
    if report.phase in STATE_PHASES:
        # A large one-piece allocation while loading, saving or stepping the optimizer is a weight or state tensor
        # (ZeRO flattens each partition into one buffer), not an activation (../shared/oom-signals.md, ZeRO shard).
        if report.phase == "optimizer_step" and setup is not None and setup.num_gpus > 1 and setup.zero_stage < FULL_SHARDING:
            return [support(Label.zero_stage_insufficient, "optimizer_state_partition_request",
                            f"one {format_bytes(req)} allocation ({req / total:.0%} of the GPU) in the optimizer step: a "
                            f"flat fp32 state partition of ZeRO-{setup.zero_stage} over {setup.num_gpus} GPUs; ZeRO-3 "
                            "(or offload) shards it further"),
                    support(Label.full_ft_model_states, "optimizer_state_buffer_request",
                            f"a {format_bytes(req)} optimizer-state buffer: fp32 master weights and Adam moments of every "
                            "trained parameter")]
        return []
    if req > total:
        return []
    # A single activation-sized tensor (no weight is that large): it scales with tokens per step.
    out: list[Signal] = []
    frac = req / total
    op = report.operation
    if op in ("cross_entropy", "lm_head"):
        out.append(support(Label.logits_large_vocab, "loss_request",
                           f"a {format_bytes(req)} allocation ({frac:.0%} of the GPU) in the loss / LM head"))
    elif op == "attention":
        if setup is not None and setup.attn_implementation == "eager" and observed(setup, "attn_implementation"):
            out.append(support(Label.eager_attention, "eager_attention_request",
                               f"a {format_bytes(req)} allocation in eager attention: the score matrix grows with seq^2"))
        out.append(support(Label.seq_len_too_long, "attention_request",
                           f"a {format_bytes(req)} allocation ({frac:.0%} of the GPU) in attention: it grows with the "
                           "tokens per sample"))
    elif op == "vision_tower":
        out.append(support(Label.vision_tokens, "vision_tower_request",
                           f"a {format_bytes(req)} allocation ({frac:.0%} of the GPU) inside the vision tower"
                           + _patches_behind(req, setup)))
    elif op == "moe_experts":
        out.append(support(Label.moe_memory, "moe_dispatch_request",
                           f"a {format_bytes(req)} allocation ({frac:.0%} of the GPU) in the MoE expert dispatch"))
    # An assumed micro-batch is no evidence: only a batch the log, config or user stated scales the blame.
    b = stated_micro_batch(setup)
    if b and b > 1:
        # points = weight x (1 + min(b, cap) / cap): from 1x the weight at batch 1 up to 2x at the cap
        cap = th["batch_scale_cap"]
        out.append(support(Label.batch_too_large, "activation_request_batch",
                           f"one {format_bytes(req)} activation ({frac:.0%} of the GPU) at micro-batch {b}: "
                           "activations scale linearly with the batch", 1 + min(b, cap) / cap))
    else:
        out.append(support(Label.seq_len_too_long, "activation_request_tokens",
                           f"one {format_bytes(req)} activation ({frac:.0%} of the GPU) at micro-batch {b or 'unknown'}: "
                           "the tokens per sample drive it"))
        out.append(support(Label.batch_too_large, "activation_request_batch_unstated",
                           f"a {format_bytes(req)} activation-sized allocation scales with the micro-batch"))
    return out


def _logits_without_model(report: OOMReport, req: int, th: Thresholds) -> list[Signal]:
    """No model known: a request that is fp32 logits of a power-of-two token count for a common large vocabulary
    (oom-signals.md: requested / (vocab x 4 B) = tokens in flight)."""
    if req < th["unsized_logits_min_bytes"] or report.phase in STATE_PHASES or report.phase == "generation":
        return []
    # Without the model's vocabulary a size match can be chance: it needs the phase or operation of the loss.
    corroborated = report.phase in ("forward", "backward", "evaluation") or report.operation in ("cross_entropy", "lm_head")
    unit = GiB if req >= GiB else MiB
    # the printed size's rounding, plus slack for the shifted (s-1) copy
    rel = th["printed_size_rounding"] * unit / req + th["shifted_copy_slack"]
    for vocab in LARGE_VOCABS:
        tokens = req / (vocab * FP32_BYTES)
        if tokens >= th["unsized_logits_min_tokens"] and _near_power_of_two(tokens, rel) and corroborated:
            n = 2 ** round(math.log2(tokens))
            return [support(Label.logits_large_vocab, "unsized_fp32_logits",
                            f"{format_bytes(req)} = {n:,} tokens x {vocab:,} vocab x {FP32_BYTES} B: the fp32 logits "
                            "(or their gradient) of a large-vocabulary model"),
                    support(Label.seq_len_too_long, "unsized_logits_tokens",
                            f"{n:,} tokens of logits in one step: the tokens per sample drive it")]
    return []


def _patches_behind(req: int, setup: TrainingSetup | None) -> str:
    """The image a vision-attention request back-solves to, for the reason's arithmetic: read as the tower's attention
    scores over one image or video (heads x patches^2 x 2 B, oom-signals.md), patches = sqrt(request / (heads x 2 B)),
    with the pixels they cover and the tokens the LM gets after the spatial merge. Empty when the tower is unknown."""
    vis = setup.model.vision if setup is not None and setup.model is not None else None
    if vis is None or vis.num_heads <= 0:
        return ""
    patches = math.isqrt(req // (vis.num_heads * BF16_BYTES))
    merge = max(vis.spatial_merge_size, 1)
    tokens = f", {patches // merge ** 2:,} tokens after its {merge}x{merge} merge" if merge > 1 else ""
    return (f"; read as the tower's attention scores over one image (or video), sqrt({format_bytes(req)} / "
            f"({vis.num_heads} heads x {BF16_BYTES} B)) = {patches:,} patches of {vis.patch_size}x{vis.patch_size} px, about "
            f"{patches * vis.patch_size ** 2 / MILLION:.1f} megapixels{tokens}: cap the pixels per image (max_pixels)")


def _near_power_of_two(x: float, rel: float) -> bool:
    """Within `rel` of a power of two (token counts of padded batches are)."""
    p = 2 ** round(math.log2(x))
    return abs(x - p) <= rel * p


def zero3_sub_group_request(report: OOMReport, sub_group: Cue | None, th: Thresholds = THRESHOLDS) -> list[Signal]:
    """ZeRO-3 steps its optimizer in sub groups of `sub_group_size` parameters (DeepSpeed default 1e9): a request of one
    sub group's fp32 copy (1e9 x 4 B = 3.73 GiB) in those frames is the optimizer states of full fine-tuning, not an
    activation (DeepSpeed's stage3 _prepare_fp32_grad_for_sub_group)."""
    req = report.requested_bytes
    if not req or sub_group is None:
        return []
    size = DEEPSPEED_SUB_GROUP_SIZE * FP32_BYTES
    if not matches_size(req, size, th):
        return []
    return [support(Label.full_ft_model_states, "zero3_sub_group_request",
                    f"the {format_bytes(req)} request is one ZeRO-3 optimizer sub group: {DEEPSPEED_SUB_GROUP_SIZE:.0e} "
                    f"params (DeepSpeed's default sub_group_size) x {FP32_BYTES} B fp32 = {format_bytes(size)}, at "
                    f"line {sub_group.line} ({sub_group.text[:QUOTE_SHORT]}): the optimizer states of full fine-tuning")]


_SIZE_IN_NAME = re.compile(r"(?<![\d.])(\d{1,4}(?:\.\d{1,2})?)\s?[bB](?![a-zA-Z])")


def zero_partition_request(report: OOMReport, setup: TrainingSetup | None, th: Thresholds = THRESHOLDS) -> list[Signal]:
    """Back-solve a ZeRO partition: the request x the data-parallel ranks / 4 B is a parameter count; when it is the
    model's (counted, or the size its name states), the request is one rank's flat fp32 partition of the full model's
    master weights or Adam moments (ZeRO, Rajbhandari et al. 2020): the model states of full fine-tuning, not an
    activation. Only with a GPU count that was stated, not assumed."""
    req = report.requested_bytes
    if not req or setup is None or setup.num_gpus < 2 or not observed(setup, "num_gpus"):
        return []
    implied = req * setup.num_gpus / FP32_BYTES
    if setup.model is not None and not stand_in_model(setup):
        from ..memory.params import count_params

        total, what = count_params(setup.model).total, f"{setup.model.name or 'the model'}'s parameter count"
    else:
        m = _SIZE_IN_NAME.search(setup.model_name or "")
        if m is None:
            return []
        total, what = float(m.group(1)) * BILLION, f"the {m.group(1)}B its name states"
    if not total or abs(implied - total) > th["partition_param_slack"] * total:
        return []
    reason = (f"{format_bytes(req)} x {setup.num_gpus} ranks / {FP32_BYTES} B = {implied / BILLION:.1f}B parameters, "
              f"{what}: the request is one rank's fp32 partition of the whole model (master weights or an Adam moment)")
    out = [support(Label.full_ft_model_states, "zero_partition_request", reason)]
    if setup.zero_stage < FULL_SHARDING:
        out.append(support(Label.zero_stage_insufficient, "zero_partition_request_sharding",
                           f"{reason}; ZeRO-{setup.zero_stage} keeps the weights and activations whole on every rank"))
    return out
