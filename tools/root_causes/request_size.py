"""The requested size names the tensor: the failing allocation matched against the setup's one-piece tensors,
against fp32 logits of a power-of-two token count, or against its share of the GPU."""

from __future__ import annotations

import math

from ..memory.schema import MemoryEstimate
from ..report import OOMReport
from ..training_setup import TrainingSetup
from ..units import GiB, MiB, format_bytes
from .facts import STATE_PHASES, observed, stand_in_model, stated_micro_batch
from .scores import Scores
from .tensors import matches_size, tensor_candidates


LARGEST_GPU_BYTES = 192 * GiB   # MI300X; H200 141 GB
STAND_IN_MATCH_WEIGHT = 0.3


def request_vs_tensors(report: OOMReport, setup: TrainingSetup | None, estimate: MemoryEstimate | None, s: Scores,
                        multimodal: str | None = None) -> None:
    """The failing allocation's size against the setup's tensors and the GPU; `multimodal` says why a vision tower is in the step."""
    req = report.requested_bytes
    if not req:
        return
    total = report.gpu_total_bytes or (setup.gpu.memory_bytes if setup and setup.gpu else None)
    where = f"the whole GPU ({format_bytes(total)})" if total else ""
    if not total and req > LARGEST_GPU_BYTES:
        total = LARGEST_GPU_BYTES   # the GPU is unknown, but no GPU holds this much: compare with the largest there is
        where = f"any GPU (the largest hold {format_bytes(total)})"
    if total and 0.5 * total <= req <= total and (setup is None or setup.model is None):
        s.add("vision_tokens", 1.2, f"one {format_bytes(req)} tensor ({req / total:.0%} of the GPU): only quadratic tensors get this "
                                    "large, e.g. attention over thousands of visual patches")
    if total and req > total:
        s.add("vision_tokens", 3 if multimodal else 1,
              f"one allocation of {format_bytes(req)} is larger than {where}: a quadratic tensor over far too many "
              "(visual) tokens")
        s.add("seq_len_too_long", 1.5, f"a single {format_bytes(req)} tensor is larger than {where}: too many tokens per step")
    matched = False
    if setup is not None and setup.model is not None:
        # Several candidates can have the same size (an MoE expert and a dense MLP of equal width): the request is one
        # tensor, so each label counts its best match once instead of summing look-alikes.
        best: dict[str, tuple[float, str]] = {}
        # A stand-in model (the registry's nearest of the named size) has its own shapes, not the user's: a size match
        # on it is a coincidence as often as a clue.
        weight = STAND_IN_MATCH_WEIGHT if stand_in_model(setup) else 1.0
        for cand in tensor_candidates(setup, estimate):
            if matches_size(req, cand.bytes):
                matched = True
                s.explained = s.explained or weight == 1.0
                for label, pts in cand.labels.items():
                    if pts > best.get(label, (0.0, ""))[0]:
                        best[label] = (pts, f"the {format_bytes(req)} request equals the {cand.name}: {cand.formula} = "
                                            f"{format_bytes(cand.bytes)}" + (" (of the stand-in model)" if weight < 1 else ""))
        for label, (pts, reason) in best.items():
            s.add(label, pts * weight, reason)
        vocab = max(setup.model.vocab_size, 1)
        tokens = req / (vocab * 4)
        in_training = setup.micro_batch * setup.seq_len
        if not matched and tokens >= 256 and _near_power_of_two(tokens):
            s.add("logits_large_vocab", 2.5, f"{format_bytes(req)} / ({vocab:,} vocab x 4 B) = {tokens:,.0f} tokens: "
                                             "an fp32 logits tensor of a power-of-two token count")
            if tokens > 2 * in_training:
                s.add("eval_accumulation", 2.5, f"{tokens:,.0f} tokens in flight, more than the training step's "
                                                f"{setup.micro_batch} x {setup.seq_len}: the failing step is evaluation")
    if multimodal and total and req > 0.25 * total and not matched and report.phase not in STATE_PHASES:
        # Visual tokens per sample are the one input of a multimodal run that makes a single tensor this large
        # (Qwen2-VL's default max_pixels is ~12.8 MP per image; video multiplies by frames: oom-signals.md).
        share = f"takes {req / total:.0%} of the GPU" if where.startswith("the whole") else "is more than any GPU holds"
        s.add("vision_tokens", 2.5, f"{multimodal}, and one {format_bytes(req)} allocation {share}: visual tokens per "
                                    "sample are the likely driver")
    elif multimodal and total and 0.1 * total <= req <= 0.25 * total and not matched and \
            report.phase in ("forward", "backward", "unknown", "generation"):
        s.add("vision_tokens", 1.0, f"{multimodal}: activations grow with the visual tokens of each sample")
    if not matched and (setup is None or setup.model is None):
        _logits_without_model(report, req, s)
    if total and not matched and req >= 0.15 * total and report.phase in STATE_PHASES:
        # A large one-piece allocation while loading, saving or stepping the optimizer is a weight or state tensor
        # (ZeRO flattens each partition into one buffer), not an activation (../shared/oom-signals.md, ZeRO shard).
        if report.phase == "optimizer_step" and setup is not None and setup.num_gpus > 1 and setup.zero_stage < 3:
            s.add("zero_stage_insufficient", 2.5, f"one {format_bytes(req)} allocation ({req / total:.0%} of the GPU) in the "
                                                  f"optimizer step: a flat fp32 state partition of ZeRO-{setup.zero_stage} "
                                                  f"over {setup.num_gpus} GPUs; ZeRO-3 (or offload) shards it further")
            s.add("full_ft_model_states", 1.5, f"a {format_bytes(req)} optimizer-state buffer: fp32 master weights and Adam "
                                               "moments of every trained parameter")
        return
    if total and not matched and req >= 0.15 * total and req <= total:
        # A single activation-sized tensor (no weight is that large): it scales with tokens per step.
        frac = req / total
        op = report.operation
        if op in ("cross_entropy", "lm_head"):
            s.add("logits_large_vocab", 3, f"a {format_bytes(req)} allocation ({frac:.0%} of the GPU) in the loss / LM head")
        elif op == "attention":
            if setup is not None and setup.attn_implementation == "eager" and observed(setup, "attn_implementation"):
                s.add("eager_attention", 3, f"a {format_bytes(req)} allocation in eager attention: the score matrix grows with seq^2")
            s.add("seq_len_too_long", 2.5, f"a {format_bytes(req)} allocation ({frac:.0%} of the GPU) in attention: it grows with the tokens per sample")
        elif op == "vision_tower":
            s.add("vision_tokens", 3, f"a {format_bytes(req)} allocation ({frac:.0%} of the GPU) inside the vision tower")
        elif op == "moe_experts":
            s.add("moe_memory", 2.5, f"a {format_bytes(req)} allocation ({frac:.0%} of the GPU) in the MoE expert dispatch")
        # An assumed micro-batch is no evidence: only a batch the log, config or user stated scales the blame.
        b = stated_micro_batch(setup)
        if b and b > 1:
            s.add("batch_too_large", 2.0 + min(b, 16) / 8, f"one {format_bytes(req)} activation ({frac:.0%} of the GPU) at micro-batch {b}: "
                                                          "activations scale linearly with the batch")
        else:
            s.add("seq_len_too_long", 1.5, f"one {format_bytes(req)} activation ({frac:.0%} of the GPU) at micro-batch {b or 'unknown'}: "
                                           "the tokens per sample drive it")
            s.add("batch_too_large", 0.8, f"a {format_bytes(req)} activation-sized allocation scales with the micro-batch")


# Vocabularies of at least 100k entries in the model registry: logits over these dominate a step
# (Llama-3 128,256, Qwen2 151,936/152,064, Gemma 256,000, ...). Powers of two (131,072, 262,144) and 5 x 2^15 are
# left out: any round request divides by them, so a match says nothing.
_LARGE_VOCABS = (102400, 125696, 128256, 129280, 151936, 152064, 256000)


def _logits_without_model(report: OOMReport, req: int, s: Scores) -> None:
    """No model known: a request that is fp32 logits of a power-of-two token count for a common large vocabulary
    (oom-signals.md: requested / (vocab x 4 B) = tokens in flight)."""
    if req < 256 * MiB or report.phase in STATE_PHASES or report.phase == "generation":
        return
    # Without the model's vocabulary a size match can be chance: it needs the phase or operation of the loss.
    corroborated = report.phase in ("forward", "backward", "evaluation") or report.operation in ("cross_entropy", "lm_head")
    unit = GiB if req >= GiB else MiB
    rel = 0.0051 * unit / req + 0.001  # the printed size's rounding, plus slack for the shifted (s-1) copy
    for vocab in _LARGE_VOCABS:
        tokens = req / (vocab * 4)
        if tokens >= 1024 and _near_power_of_two(tokens, rel) and corroborated:
            n = 2 ** round(math.log2(tokens))
            s.add("logits_large_vocab", 2.5, f"{format_bytes(req)} = {n:,} tokens x {vocab:,} vocab x 4 B: the fp32 logits "
                                             "(or their gradient) of a large-vocabulary model")
            s.add("seq_len_too_long", 0.8, f"{n:,} tokens of logits in one step: the tokens per sample drive it")
            return


def _near_power_of_two(x: float, rel: float = 0.005) -> bool:
    """Within `rel` of a power of two (token counts of padded batches are)."""
    p = 2 ** round(math.log2(x))
    return abs(x - p) <= rel * p
