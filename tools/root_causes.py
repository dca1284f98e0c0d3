"""Rank root causes of one OOM report: evidence-weighted scoring over every label in tools.labels.

Each signal (the requested size matched against tensor shapes of the setup, the numbers printed after
the request, the phase and operation, host signals, the calculator's breakdown against the budget, the
similar cases' labels) adds points to one or more labels together with a `why` sentence whose numbers
come from the parser or the calculator. The signals are the ones engineers use when they read an OOM
report (../shared/oom-signals.md); none of them decides alone, the sum does.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field

from .labels import ROOT_CAUSES, RootCause
from .log_cues import LogCues
from .memory.schema import MemoryEstimate
from .memory_trend import MemoryTrend
from .report import OOMReport
from .training_setup import TrainingSetup
from .units import GiB, MiB, format_bytes

# Points → score in [0, 1): score = 1 - exp(-points / _SCALE); ~6 points is a confident 0.78.
_SCALE = 4.0
_MAX_CAUSES = 6


class TensorCandidate(BaseModel):
    """A tensor the setup would allocate in one piece, with the causes an allocation of exactly that size points to."""

    name: str
    bytes: int
    formula: str
    labels: dict[str, float] = Field(description="label → points when the request matches this tensor")


@dataclass
class _Scores:
    """Accumulates points and reasons per label (keeps the order evidence arrived in)."""

    points: dict[str, float] = field(default_factory=dict)
    why: dict[str, list[str]] = field(default_factory=dict)
    explained: bool = False  # the failing allocation matched a tensor of the setup

    def add(self, label: str, pts: float, reason: str) -> None:
        if label not in ROOT_CAUSES or pts == 0:
            return
        self.points[label] = self.points.get(label, 0.0) + pts
        reasons = self.why.setdefault(label, [])
        if reason and reason not in reasons:
            reasons.append(reason)

    def ranked(self, limit: int = _MAX_CAUSES) -> list[RootCause]:
        order = sorted((p, -i, lab) for i, (lab, p) in enumerate(self.points.items()) if p > 0.25)
        out = []
        for pts, _, label in reversed(order[-limit:]):
            score = round(1.0 - math.exp(-pts / _SCALE), 3)
            out.append(RootCause(label=label, score=min(max(score, 0.0), 1.0), why=self.why.get(label, [])))
        return out


def rank_root_causes(
    report: OOMReport,
    setup: TrainingSetup | None = None,
    estimate: MemoryEstimate | None = None,
    hits: Sequence[Any] | None = None,
    trend: MemoryTrend | None = None,
    cues: LogCues | None = None,
) -> list[RootCause]:
    """Causes ranked by evidence, primary first. Never raises; an empty list only for an empty report.

    `hits` are retrieval hits (objects with `.case`, or cases themselves) whose labels count as weak evidence;
    `trend` is the log's memory over time (tools.memory_trend), when the agent has the raw log; `cues` the log's
    non-numeric cues (tools.log_cues: quantization, dtype errors).
    """
    s = _Scores()
    if not report.is_memory_error:
        _not_a_memory_error(report, s)
        _related_errors(report, s, memory_error=False)
        _dtype(report, setup, cues, s, memory_error=False)
        return s.ranked()
    if report.kind == "host_oom":
        _host_memory(report, setup, estimate, s)
        if "not_oom" in s.points:
            return s.ranked()
    elif report.kind == "cublas_alloc" and any(e.kind == "device_side_assert" for e in report.related_errors):
        line = next(e.line for e in report.related_errors if e.kind == "device_side_assert")
        s.add("not_oom", 7, f"the cuBLAS allocation failure follows a device-side assert (log line {line}): usually an "
                            "out-of-range index (token id, label) that broke the CUDA context, not memory")
        _related_errors(report, s, memory_error=False)
        return s.ranked()
    else:
        _request_vs_tensors(report, setup, estimate, s, _multimodal(report, setup, cues))
        _numbers_after_request(report, s)
        _gpu_already_full(report, setup, estimate, s)
        _multi_gpu(report, setup, s)
        _single_process_many_gpus(report, setup, s)
        _device_map(report, setup, cues, s)
        _moe_by_name(report, setup, s)
        _estimate_breakdown(report, setup, estimate, s)
    _phase_and_operation(report, setup, s, _multimodal(report, setup, cues), cues)
    if trend is not None and report.kind != "host_oom":
        _over_time(trend, s)
    _related_errors(report, s, memory_error=True)
    _dtype(report, setup, cues, s, memory_error=True)
    _quantization(report, cues, s)
    _without_numbers(report, setup, cues, s)
    _similar_cases(hits or [], s)
    if not s.points:
        s.add("batch_too_large", 0.5, "no specific evidence: the per-step activations (micro-batch) are the usual suspect")
        s.add("seq_len_too_long", 0.4, "no specific evidence: the sequence length drives activations and logits")
    return s.ranked()


# ---------------------------------------------------------------------------------------------------
# Not a memory error


def _not_a_memory_error(report: OOMReport, s: _Scores) -> None:
    signal = (report.exit_signal or "").upper()
    if "SIGBUS" in signal or "-7" in signal:
        s.add("not_oom", 8, f"the launcher reports {report.exit_signal} (bus error): usually /dev/shm too small in a container, not GPU memory")
    elif "SIGFPE" in signal or "-8" in signal:
        s.add("not_oom", 8, f"the launcher reports {report.exit_signal} (floating-point exception): a library bug (e.g. cuBLAS on H20), not memory")
    elif report.kind == "not_oom":
        s.add("not_oom", 8, "no out-of-memory message (CUDA, host, NCCL, cuBLAS) was found in the log")
    else:
        s.add("not_oom", 3, "the log shows an error met while fixing memory, but no out-of-memory message")


# ---------------------------------------------------------------------------------------------------
# Host memory


def _host_memory(report: OOMReport, setup: TrainingSetup | None, estimate: MemoryEstimate | None, s: _Scores) -> None:
    bus = next((e for e in report.related_errors if e.kind == "sigbus"), None)
    if bus is not None or "bus error" in (report.message or "").lower():
        # A worker killed by SIGBUS is shared memory (/dev/shm), not RAM or GPU memory running out.
        line = f" (log line {bus.line})" if bus is not None else ""
        s.add("not_oom", 8, f"the process died of a bus error{line}: /dev/shm too small for DataLoader workers "
                            "(raise --shm-size or use fewer workers); not a memory budget problem")
        return
    what = report.exit_signal or (report.message or "host allocation failure")
    s.add("offload_host_ram", 6, f"host (CPU) memory ran out: {what}")
    used, have = report.host_ram_used_bytes, report.host_ram_total_bytes
    if used and have and used >= 0.9 * have:
        # The log's own RAM readings (DeepSpeed's "CPU Virtual Memory") show the host at its limit before the kill.
        s.add("offload_host_ram", 1.5, f"the log shows host RAM at {format_bytes(used)} of {format_bytes(have)} ({used / have:.0%})")
    if report.phase in ("model_loading", "lora_merge", "checkpoint_save"):
        ranks = setup.num_gpus if setup else 1
        extra = f"; {ranks} ranks each load a copy" if ranks > 1 else ""
        s.add("model_load_oom", 5, f"the host ran out while {report.phase.replace('_', ' ')}{extra}")
    if setup is not None and (setup.offload_optimizer or setup.offload_param):
        parts = [n for n, on in (("optimizer", setup.offload_optimizer), ("parameters", setup.offload_param)) if on]
        s.add("offload_host_ram", 2, f"ZeRO-{setup.zero_stage} offloads the {' and '.join(parts)} to CPU RAM")
        if setup.method == "full":
            s.add("full_ft_model_states", 1.5, "full fine-tuning: fp32 master weights, gradients and Adam states all live in the offloaded RAM")
    if estimate is not None and estimate.host_bytes:
        have = setup.host_ram_bytes if setup else None
        if have:
            verdict = "more than" if estimate.host_bytes > have else "close to" if estimate.host_bytes > 0.8 * have else "within"
            pts = 2.5 if estimate.host_bytes > have else 1.0 if estimate.host_bytes > 0.8 * have else 0
            s.add("offload_host_ram", pts, f"the calculator puts host RAM needs at {format_bytes(estimate.host_bytes)}, "
                                           f"{verdict} the {format_bytes(have)} available")
        elif estimate.host_fits is False:
            s.add("offload_host_ram", 2, f"the calculator puts host RAM needs at {format_bytes(estimate.host_bytes)}: more than the host has")


# ---------------------------------------------------------------------------------------------------
# The requested size names the tensor


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
            for nbytes, dt in ((4, "fp32"), (2, "bf16")):
                labels = {"logits_large_vocab": 3.0, "batch_too_large" if bb > 1 else "seq_len_too_long": 1.0}
                if mode == "eval":
                    labels = {"eval_accumulation": 3.0, "logits_large_vocab": 2.0, "batch_too_large": 1.0}
                out.append(TensorCandidate(
                    name=f"{mode} logits {dt}{shift}", bytes=bb * ss * vocab * nbytes,
                    formula=f"{bb} x {ss} tokens x {vocab:,} vocab x {nbytes} B", labels=labels))
    # Eager attention scores: b * heads * s * s (bf16 scores, fp32 softmax) — Vaswani et al. attention, no flash kernel.
    for nbytes, dt in ((2, "bf16"), (4, "fp32")):
        out.append(TensorCandidate(
            name=f"attention scores {dt}", bytes=b * arch.num_heads * s_len * s_len * nbytes,
            formula=f"{b} x {arch.num_heads} heads x {s_len}^2 x {nbytes} B",
            labels={"eager_attention": 4.0, "seq_len_too_long": 2.0}))
    # Vision-tower attention over one image's patches: patches^2 x heads x dtype (ViT, Dosovitskiy et al. 2021);
    # patches = pixels / patch_size^2 before any spatial merge (Qwen2-VL merges 2x2 only after the tower).
    vis = arch.vision
    pixels, source = setup.image_max_pixels, "image_max_pixels"
    if vis is not None and not pixels:
        if vis.image_size:
            pixels, source = vis.image_size ** 2, "fixed image size"
        elif vis.kind in ("qwen2_vl", "qwen2_5_vl"):
            # Qwen2-VL's image processor default max_pixels = 28 x 28 x 16384 (preprocessor_config.json; oom-signals.md).
            pixels, source = 28 * 28 * 16384, "the processor's default max_pixels"
    if vis is not None and pixels:
        patches = pixels // max(vis.patch_size, 1) ** 2
        for nbytes, dt in ((2, "bf16"), (4, "fp32")):
            out.append(TensorCandidate(
                name=f"vision attention scores {dt}", bytes=patches * patches * vis.num_heads * nbytes,
                formula=f"{patches:,} patches^2 x {vis.num_heads} heads x {nbytes} B ({source} {pixels:,})",
                labels={"vision_tokens": 4.0}))
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
        for nbytes, dt in ((2, "bf16/fp16"), (4, "fp32")):
            if nbytes == 2:
                labels = {"model_load_oom": 2.0, "weights_exceed_gpu": 1.5}
                if arch.is_moe and "MoE" in what:
                    labels["moe_memory"] = 1.5
                if full and _observed(setup, "method"):
                    # Full fine-tuning keeps a bf16 gradient of every weight: same shape and dtype as the weight.
                    labels["full_ft_model_states"] = 2.0
                if setup.quantization_bit in (4, 8) and _observed(setup, "quantization_bit"):
                    # bitsandbytes stores 4/8-bit weights packed (1/4 or 1/2 of this size): a 16-bit copy of one means
                    # the quantization was not applied there, or the weight is being de-quantized.
                    labels["quantization_setup"] = 3.0
            elif full:
                labels = {"full_ft_model_states": 3.0}
            else:
                labels = {"weights_exceed_gpu": 2.0, "model_load_oom": 1.0}
            out.append(TensorCandidate(name=f"one {what} weight {dt}", bytes=h * cols * nbytes,
                                       formula=f"{h} x {cols} x {nbytes} B", labels=labels))
    # ZeRO partition of one fp32 optimizer tensor: trainable params / data-parallel GPUs x 4 B (ZeRO paper, Rajbhandari et al. 2020).
    n_train = estimate.n_trainable if estimate is not None and estimate.n_trainable else None
    if n_train and setup.num_gpus >= 1:
        parts = setup.num_gpus if setup.zero_stage >= 1 else 1
        labels = {"full_ft_model_states": 3.0}
        if setup.zero_stage < 3 and setup.num_gpus > 1:
            labels["zero_stage_insufficient"] = 3.0
        out.append(TensorCandidate(name="fp32 optimizer-state partition", bytes=n_train * 4 // parts,
                                   formula=f"{n_train:,} trainable params / {parts} GPU x 4 B", labels=labels))
    return [c for c in out if c.bytes > 0]


def _matches(requested: int, candidate: int) -> bool:
    """Equal up to the two-decimal rounding of the printed size (± one unit in the last digit, ≥ 1.2% slack)."""
    unit = GiB if requested >= GiB else MiB if requested >= MiB else 1024
    return abs(requested - candidate) <= max(0.012 * candidate, 0.0051 * unit)


def _request_vs_tensors(report: OOMReport, setup: TrainingSetup | None, estimate: MemoryEstimate | None, s: _Scores,
                        multimodal: str | None = None) -> None:
    req = report.requested_bytes
    if not req:
        return
    total = report.gpu_total_bytes or (setup.gpu.memory_bytes if setup and setup.gpu else None)
    if total and 0.5 * total <= req <= total and (setup is None or setup.model is None):
        s.add("vision_tokens", 1.2, f"one {format_bytes(req)} tensor ({req / total:.0%} of the GPU): only quadratic tensors get this "
                                    "large, e.g. attention over thousands of visual patches")
    if total and req > total:
        s.add("vision_tokens", 3 if multimodal else 1,
              f"one allocation of {format_bytes(req)} is larger than the whole GPU ({format_bytes(total)}): "
              "a quadratic tensor over far too many (visual) tokens")
        s.add("seq_len_too_long", 1.5, f"a single {format_bytes(req)} tensor exceeds the {format_bytes(total)} GPU: too many tokens per step")
    matched = False
    if setup is not None and setup.model is not None:
        # Several candidates can have the same size (an MoE expert and a dense MLP of equal width): the request is one
        # tensor, so each label counts its best match once instead of summing look-alikes.
        best: dict[str, tuple[float, str]] = {}
        for cand in tensor_candidates(setup, estimate):
            if _matches(req, cand.bytes):
                matched = s.explained = True
                for label, pts in cand.labels.items():
                    if pts > best.get(label, (0.0, ""))[0]:
                        best[label] = (pts, f"the {format_bytes(req)} request equals the {cand.name}: {cand.formula} = {format_bytes(cand.bytes)}")
        for label, (pts, reason) in best.items():
            s.add(label, pts, reason)
        vocab = max(setup.model.vocab_size, 1)
        tokens = req / (vocab * 4)
        in_training = setup.micro_batch * setup.seq_len
        if not matched and tokens >= 256 and _near_power_of_two(tokens):
            s.add("logits_large_vocab", 2.5, f"{format_bytes(req)} / ({vocab:,} vocab x 4 B) = {tokens:,.0f} tokens: "
                                             "an fp32 logits tensor of a power-of-two token count")
            if tokens > 2 * in_training:
                s.add("eval_accumulation", 2.5, f"{tokens:,.0f} tokens in flight, more than the training step's "
                                                f"{setup.micro_batch} x {setup.seq_len}: the failing step is evaluation")
    if multimodal and total and req > 0.25 * total and not matched and report.phase not in _STATE_PHASES:
        # Visual tokens per sample are the one input of a multimodal run that makes a single tensor this large
        # (Qwen2-VL's default max_pixels is ~12.8 MP per image; video multiplies by frames: oom-signals.md).
        s.add("vision_tokens", 2.5, f"{multimodal}, and one {format_bytes(req)} allocation takes {req / total:.0%} of the "
                                    "GPU: visual tokens per sample are the likely driver")
    elif multimodal and total and 0.1 * total <= req <= 0.25 * total and not matched and \
            report.phase in ("forward", "backward", "unknown", "generation"):
        s.add("vision_tokens", 1.0, f"{multimodal}: activations grow with the visual tokens of each sample")
    if not matched and (setup is None or setup.model is None):
        _logits_without_model(report, req, s)
    if total and not matched and req >= 0.15 * total and report.phase in _STATE_PHASES:
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
            if setup is not None and setup.attn_implementation == "eager" and _observed(setup, "attn_implementation"):
                s.add("eager_attention", 3, f"a {format_bytes(req)} allocation in eager attention: the score matrix grows with seq^2")
            s.add("seq_len_too_long", 2.5, f"a {format_bytes(req)} allocation ({frac:.0%} of the GPU) in attention: it grows with the tokens per sample")
        elif op == "vision_tower":
            s.add("vision_tokens", 3, f"a {format_bytes(req)} allocation ({frac:.0%} of the GPU) inside the vision tower")
        elif op == "moe_experts":
            s.add("moe_memory", 2.5, f"a {format_bytes(req)} allocation ({frac:.0%} of the GPU) in the MoE expert dispatch")
        # An assumed micro-batch is no evidence: only a batch the log, config or user stated scales the blame.
        b = setup.micro_batch if setup is not None and _observed(setup, "micro_batch") else None
        if b and b > 1:
            s.add("batch_too_large", 2.0 + min(b, 16) / 8, f"one {format_bytes(req)} activation ({frac:.0%} of the GPU) at micro-batch {b}: "
                                                          "activations scale linearly with the batch")
        else:
            s.add("seq_len_too_long", 1.5, f"one {format_bytes(req)} activation ({frac:.0%} of the GPU) at micro-batch {b or 'unknown'}: "
                                           "the tokens per sample drive it")
            s.add("batch_too_large", 0.8, f"a {format_bytes(req)} activation-sized allocation scales with the micro-batch")


_STATE_PHASES = ("optimizer_step", "model_loading", "checkpoint_save", "lora_merge")
# Vocabularies of at least 100k entries in the model registry: logits over these dominate a step
# (Llama-3 128,256, Qwen2 151,936/152,064, Gemma 256,000, ...). Powers of two (131,072, 262,144) and 5 x 2^15 are
# left out: any round request divides by them, so a match says nothing.
_LARGE_VOCABS = (102400, 125696, 128256, 129280, 151936, 152064, 256000)


def _logits_without_model(report: OOMReport, req: int, s: _Scores) -> None:
    """No model known: a request that is fp32 logits of a power-of-two token count for a common large vocabulary
    (oom-signals.md: requested / (vocab x 4 B) = tokens in flight)."""
    if req < 256 * MiB or report.phase in _STATE_PHASES or report.phase == "generation":
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
    p = 2 ** round(math.log2(x))
    return abs(x - p) <= rel * p


# ---------------------------------------------------------------------------------------------------
# The numbers after the request


def _numbers_after_request(report: OOMReport, s: _Scores) -> None:
    req = report.requested_bytes or 0
    total = report.gpu_total_bytes
    unalloc = report.torch_reserved_unallocated_bytes
    if unalloc is None and report.torch_reserved_bytes is not None and report.torch_allocated_bytes is not None:
        unalloc = max(report.torch_reserved_bytes - report.torch_allocated_bytes, 0)
    if unalloc and req and total:
        if unalloc >= req and unalloc >= 0.02 * total:
            pts = 3.5 + min(math.log2(unalloc / req), 4) / 2
            s.add("fragmentation", pts, f"{format_bytes(unalloc)} is reserved by PyTorch but unallocated, more than the "
                                        f"{format_bytes(req)} requested: the cache is fragmented (expandable_segments helps)")
        elif unalloc >= 0.5 * req and unalloc >= 0.03 * total:
            s.add("fragmentation", 1.0, f"{format_bytes(unalloc)} reserved but unallocated against a {format_bytes(req)} request")
    # Other processes on the same GPU: memory in use that is neither ours nor free.
    used = report.process_used_bytes
    others = [p for p in report.other_processes]
    if total:
        reliable = used is not None and (report.torch_allocated_bytes is None or used >= report.torch_allocated_bytes)
        if reliable and report.gpu_free_bytes is not None:
            outside = total - report.gpu_free_bytes - used
            if outside >= 0.10 * total:
                listed = ", ".join(f"PID {p.pid} {format_bytes(p.bytes)}" for p in others if abs(p.bytes - used) > 0.01 * total)
                s.add("other_process", 4 + 3 * min(outside / total, 0.5),
                      f"{format_bytes(outside)} of the GPU is held outside this process ({listed or 'other processes'}); "
                      f"this process has only {format_bytes(used)}")
                if used + req <= 0.9 * total:
                    s.add("other_process", 3, f"alone, this process would have fit: {format_bytes(used)} in use + "
                                              f"{format_bytes(req)} requested < 90% of {format_bytes(total)}")
        elif len(others) >= 2:
            biggest = sorted(others, key=lambda p: -p.bytes)
            s.add("other_process", 4, "several processes share the GPU: " + ", ".join(f"PID {p.pid} {format_bytes(p.bytes)}" for p in biggest))
    small = [p for p in others if p.bytes <= 1.5 * GiB and (used is None or abs(p.bytes - used) > 0.01 * (total or GiB))]
    if small and total and sum(p.bytes for p in small) < 0.10 * total:
        # A few hundred MiB per foreign process is a CUDA context: other ranks touching this GPU (no set_device per
        # rank, tensors created on cuda:0), which piles up on GPU 0 (tools.gpus.CUDA_CONTEXT_BYTES).
        listed = ", ".join(f"PID {p.pid} {format_bytes(p.bytes)}" for p in small[:4])
        s.add("multi_gpu_imbalance", 1.5 if len(small) >= 2 else 0.6,
              f"{listed}: CUDA-context-sized processes on this GPU, other ranks creating their context here")
        s.add("other_process", 0.8 if len(small) >= 2 else 0.4, f"{listed} also hold memory on this GPU")
    if used and report.torch_allocated_bytes and used >= report.torch_allocated_bytes:
        non_torch = used - report.torch_allocated_bytes - (unalloc or 0)
        if total and non_torch >= max(2 * GiB, 0.10 * total):
            s.add("other_process", 1.5, f"{format_bytes(non_torch)} of this process's memory is outside PyTorch's allocator "
                                        "(NCCL buffers, cuBLAS workspaces, another library)")


def _gpu_already_full(report: OOMReport, setup: TrainingSetup | None, estimate: MemoryEstimate | None, s: _Scores) -> None:
    """A tiny request on a full GPU: what filled it matters, not the last allocation."""
    req, total, free = report.requested_bytes, report.gpu_total_bytes, report.gpu_free_bytes
    alloc = report.torch_allocated_bytes
    if req and total and alloc and alloc >= 0.8 * total and free is not None and free > 0.05 * total:
        # PyTorch already holds most of the card: with several data-parallel GPUs, each holds a full replica.
        _replicas(setup, s, f"PyTorch held {format_bytes(alloc)} of the {format_bytes(total)} GPU")
    if not (req and total) or (free is not None and free > 0.05 * total):
        return
    if req > 0.015 * total:
        # Not a few MiB: a mid-sized chunk on a full card, activations that scale with the tokens in a step.
        b = setup.micro_batch if setup is not None and _observed(setup, "micro_batch") else None
        held = format_bytes(report.torch_allocated_bytes)
        if b and b > 1:
            s.add("batch_too_large", 1.5, f"a {format_bytes(req)} activation-sized request on a full GPU ({held} allocated) "
                                          f"at micro-batch {b}")
            s.add("seq_len_too_long", 0.7, f"a {format_bytes(req)} activation-sized request grows with the tokens per sample")
        elif setup is None or setup.model is None or b == 1:
            s.add("seq_len_too_long", 1.0, f"a {format_bytes(req)} request on a full GPU ({held} allocated): "
                                           "activation-sized, it grows with the tokens per step")
            s.add("batch_too_large", 0.7, f"a {format_bytes(req)} activation-sized request on a full GPU")
        _replicas(setup, s, f"the GPU was full ({held} allocated)")
        return
    held = report.torch_allocated_bytes or report.process_used_bytes
    filled = f"the GPU was already full ({format_bytes(held)} allocated) when a small {format_bytes(req)} request failed" if held \
        else f"a small {format_bytes(req)} request failed on a full GPU"
    if setup is None or setup.model is None or estimate is None:
        s.add("weights_exceed_gpu", 2.5, filled + ": the model states (weights first) fill the card")
        _replicas(setup, s, filled)
        s.add("full_ft_model_states", 1.0 if not setup or setup.method == "full" else 0.2, filled)
        s.add("model_load_oom", 0.8, filled)
        return
    s.add("weights_exceed_gpu", 0.5, filled)


def _replicas(setup: TrainingSetup | None, s: _Scores, filled: str) -> None:
    """Several GPUs without ZeRO/FSDP: each one holds a full replica of the model states."""
    if setup is None or setup.num_gpus <= 1 or not _observed(setup, "num_gpus") or setup.fsdp:
        return
    if setup.zero_stage == 0 or (setup.zero_stage < 3 and _observed(setup, "zero_stage")):
        s.add("zero_stage_insufficient", 1.5, f"{filled}, and each of the {setup.num_gpus} GPUs keeps a full replica "
                                              f"(ZeRO-{setup.zero_stage}, no FSDP): sharding would divide the model states")


# ---------------------------------------------------------------------------------------------------
# Multi-GPU placement


def _multi_gpu(report: OOMReport, setup: TrainingSetup | None, s: _Scores) -> None:
    gpus = report.gpus
    total = report.gpu_total_bytes
    if len(gpus) < 2 or not total:
        return
    idx = report.gpu_index if report.gpu_index is not None else 0
    oom_used = report.process_used_bytes or report.torch_allocated_bytes
    others = [g for g in gpus if g.index is not None and g.index != idx and g.used_bytes is not None]
    distributed = bool(report.ranks) or report.launcher in ("torchrun", "deepspeed", "accelerate") or \
        (setup is not None and setup.num_gpus > 1 and _observed(setup, "num_gpus") and setup.zero_stage > 0)
    if oom_used and others and all(g.used_bytes < 0.2 * oom_used for g in others):
        names = ", ".join(f"GPU {g.index} {format_bytes(g.used_bytes)}" for g in others)
        pts = 5 if not distributed else 3
        s.add("multi_gpu_imbalance", pts, f"GPU {idx} ran out with {format_bytes(oom_used)} in use while the other GPUs "
                                          f"hold little ({names}): the model is not spread over the {len(gpus)} GPUs")
    elif not distributed:
        s.add("multi_gpu_imbalance", 2, f"{len(gpus)} GPUs are visible but the run is a single process: "
                                        f"everything lands on GPU {idx} unless device_map splits the model")


def _single_process_many_gpus(report: OOMReport, setup: TrainingSetup | None, s: _Scores) -> None:
    """Several GPUs, started with plain `python`: HF Trainer then wraps the model in nn.DataParallel, which
    gathers every replica's outputs (and the loss) on GPU 0."""
    if len(report.gpus) >= 2 or setup is None or setup.num_gpus < 2 or not _observed(setup, "num_gpus"):
        return  # with an nvidia-smi table, _multi_gpu reads the real spread
    if report.launcher != "python" or report.ranks or setup.zero_stage > 0 or setup.fsdp:
        return
    s.add("multi_gpu_imbalance", 3.0, f"{setup.num_gpus} GPUs but a plain `python` launch: DataParallel keeps the "
                                      "master copy and gathers outputs on GPU 0 (use torchrun for DDP)")


def _moe_by_name(report: OOMReport, setup: TrainingSetup | None, s: _Scores) -> None:
    """An MoE model the calculator cannot size: all experts are resident (oom-signals.md, "Defaults that bite")."""
    if setup is not None and setup.model is not None:
        return  # sized: the estimate's breakdown and the expert-weight candidates weigh it
    why = _moe(report, setup)
    if why is None:
        return
    req, total, free = report.requested_bytes, report.gpu_total_bytes, report.gpu_free_bytes
    full = bool(req and total and free is not None and free <= 0.05 * total)
    if report.phase in ("model_loading", "lora_merge", "checkpoint_save") or full:
        s.add("moe_memory", 2.0, f"{why}: every expert's weights are resident although few are active per token")
    elif report.phase in ("forward", "backward", "generation", "unknown"):
        s.add("moe_memory", 1.0, f"{why}: expert dispatch buffers and all experts' weights share the GPU")


def _device_map(report: OOMReport, setup: TrainingSetup | None, cues: LogCues | None, s: _Scores) -> None:
    """One process spreading the layers over several GPUs (accelerate device_map): the split is rarely even."""
    if cues is None or cues.device_map is None:
        return
    gpus = max(len(report.gpus), report.gpu_count or 0, setup.num_gpus if setup is not None and _observed(setup, "num_gpus") else 0)
    distributed = bool(report.ranks) or report.launcher in ("torchrun", "deepspeed", "accelerate")
    if gpus < 2 or distributed:
        return
    idx = report.gpu_index
    # accelerate fills GPUs in order and GPU 0 also holds the embeddings, the inputs and generate's outputs
    # (its docs offer balanced_low_0 for this); the failing GPU shows where the split was uneven.
    where = f"GPU {idx}" if idx is not None else "one GPU"
    s.add("multi_gpu_imbalance", 3.0 if idx in (0, None) else 2.0,
          f"{cues.device_map.text[:80]} splits the model over {gpus} GPUs in one process and {where} ran out: "
          "the split is uneven (set max_memory per GPU or balanced_low_0)")


# ---------------------------------------------------------------------------------------------------
# The calculator's breakdown against the budget


def _estimate_breakdown(report: OOMReport, setup: TrainingSetup | None, estimate: MemoryEstimate | None, s: _Scores) -> None:
    if setup is not None and estimate is None and not setup.gradient_checkpointing and \
            _observed(setup, "gradient_checkpointing") and report.phase in ("forward", "backward", "unknown"):
        # Unsized, but stated: without checkpointing every layer's activations stay alive until backward.
        s.add("no_gradient_checkpointing", 2.0, "gradient checkpointing is off (stated): every layer's activations are "
                                                "kept for backward, the largest share of a training step")
    if setup is None or estimate is None:
        return
    budget = estimate.budget_bytes or (report.gpu_total_bytes and int(report.gpu_total_bytes * 0.9))
    if not budget:
        return
    if estimate.peak_bytes <= 0:
        return
    bd = estimate.breakdown
    weights = bd.get("weights")
    states = weights + bd.get("gradients") + bd.get("optimizer_states") + bd.get("master_weights")
    acts = bd.get("activations") + bd.get("attention_scores") + bd.get("logits_and_loss") + bd.get("vision_activations")
    peak = estimate.peak_bytes
    over = peak > budget
    gib = lambda n: format_bytes(n)  # noqa: E731 - local shorthand
    # Evidence from the calculator is only as good as the setup it sized: halve it when the method is assumed.
    states_conf = 1.0 if _observed(setup, "method") else 0.5
    add = lambda label, pts, why: s.add(label, pts * states_conf, why)  # noqa: E731
    full_ft = setup.method == "full" and _observed(setup, "method")
    if weights > budget:
        # The weights' size depends on the model, dtype and sharding, not on the training method: no discount for an
        # assumed method.
        s.add("weights_exceed_gpu", 4 if full_ft else 6, f"the weights alone take {gib(weights)} per GPU, above the {gib(budget)} budget")
        if full_ft:
            add("full_ft_model_states", 6, f"full fine-tuning: even the weights ({gib(weights)} per GPU) exceed the "
                                           f"{gib(budget)} budget before gradients and optimizer states")
        if setup.num_gpus > 1 and setup.zero_stage < 3 and not setup.fsdp:
            add("zero_stage_insufficient", 2.5, f"{setup.num_gpus} GPUs each keep a full copy of the weights under "
                                                  f"ZeRO-{setup.zero_stage}; ZeRO-3 would shard them")
        if setup.model is not None and setup.model.is_moe:
            add("moe_memory", 2, f"{setup.model.num_experts} experts per MoE layer are all resident although only "
                                   f"{setup.model.num_experts_per_tok} are active per token")
    elif states > budget:
        # ZeRO-3 / FSDP divide weights, gradients and optimizer states alike over the data-parallel GPUs.
        if setup.num_gpus > 1 and setup.zero_stage < 3 and not setup.fsdp and states / setup.num_gpus + acts < budget:
            # Sharding over the GPUs already in the run would make it fit: that is the actionable cause (ZeRO paper).
            add("zero_stage_insufficient", 3, f"sharded over the {setup.num_gpus} GPUs (ZeRO-3) the {gib(states)} of model "
                                              f"states would take {gib(states // setup.num_gpus)} per GPU and fit")
        if setup.method == "full":
            add("full_ft_model_states", 6, f"full fine-tuning keeps weights, gradients and optimizer states: "
                                             f"{gib(states)} per GPU against a {gib(budget)} budget")
        else:
            add("weights_exceed_gpu", 3, f"model states take {gib(states)} per GPU against a {gib(budget)} budget")
        if setup.num_gpus > 1 and setup.zero_stage < 3 and not setup.fsdp:
            add("zero_stage_insufficient", 4, f"ZeRO-{setup.zero_stage} on {setup.num_gpus} GPUs leaves {gib(states)} of "
                                                "states on each GPU; ZeRO-3 shards all of them")
    elif states > 0.6 * budget and over:
        label = "full_ft_model_states" if setup.method == "full" else "weights_exceed_gpu"
        add(label, 2, f"model states already take {gib(states)} of the {gib(budget)} budget ({states / budget:.0%})")
        if setup.num_gpus > 1 and setup.zero_stage < 2 and setup.method == "full":
            add("zero_stage_insufficient", 2, f"ZeRO-{setup.zero_stage}: gradients and optimizer states are not sharded "
                                                f"over the {setup.num_gpus} GPUs")
    if over and acts > 0 and acts >= 0.35 * peak:
        _activation_drivers(setup, estimate, budget, acts, s)
    elif not over and not s.explained and report.phase in ("forward", "backward", "unknown", "optimizer_step"):
        s.add("memory_growth", 1.0, f"the calculator predicts a {gib(peak)} peak that fits the {gib(budget)} budget, yet the "
                                    "run ran out: something grows or stays alive beyond one step")
        s.add("fragmentation", 0.5, f"predicted {gib(peak)} fits {gib(budget)}: the allocator may have lost the difference to fragmentation")
    if estimate.host_fits is False:
        s.add("offload_host_ram", 2, f"host RAM needs of {gib(estimate.host_bytes)} exceed what the host has")


def _activation_drivers(setup: TrainingSetup, estimate: MemoryEstimate, budget: int, acts: int, s: _Scores) -> None:
    bd = estimate.breakdown
    gib = lambda n: format_bytes(n)  # noqa: E731
    peak = estimate.peak_bytes
    base = f"activations take {gib(acts)} of the {gib(peak)} predicted peak (budget {gib(budget)})"
    b, seq = setup.micro_batch, setup.seq_len
    mmb, msl = estimate.max_micro_batch, estimate.max_seq_len
    if b > 1:
        pts = 3.0
        if mmb is not None and 1 <= mmb < b:
            pts += 2.0
            base_b = f"{base}; micro-batch {b} is above the largest that fits ({mmb})"
        else:
            base_b = f"{base} at micro-batch {b}"
        s.add("batch_too_large", pts, base_b)
    if seq >= 2048 or b == 1 or (mmb is not None and mmb < 1):
        pts = 2.0 + (1.5 if seq >= 8192 else 0.5 if seq >= 4096 else 0)
        if b == 1 or (mmb is not None and mmb < 1):
            pts += 1.5
        reason = f"{base}; cutoff {seq} tokens"
        if msl:
            reason += f", the longest that fits at micro-batch {b} is {msl}"
        s.add("seq_len_too_long", pts, reason)
    if not setup.gradient_checkpointing and bd.get("activations") >= 0.25 * peak:
        s.add("no_gradient_checkpointing", 2.5, f"gradient checkpointing is off: {gib(bd.get('activations'))} of per-layer activations are kept")
    scores = bd.get("attention_scores")
    if setup.attn_implementation == "eager" and scores >= 0.15 * peak:
        s.add("eager_attention", 3.5, f"eager attention materialises {gib(scores)} of b x heads x s x s scores")
    logits = bd.get("logits_and_loss")
    if logits >= 0.25 * peak or (logits and logits == max(c.bytes for c in bd.components)):
        s.add("logits_large_vocab", 3, f"the logits and fp32 loss take {gib(logits)} ({logits / peak:.0%} of the peak)")
    vis = bd.get("vision_activations")
    if vis >= 0.2 * peak:
        s.add("vision_tokens", 3, f"the vision tower's activations take {gib(vis)} ({vis / peak:.0%} of the peak)")


# ---------------------------------------------------------------------------------------------------
# Memory over time


def _over_time(trend: MemoryTrend, s: _Scores) -> None:
    if trend.growing and trend.readings:
        s.add("memory_growth", 7, f"{trend.describe()}: +{format_bytes(trend.growth_bytes)} while training, "
                                  "so something stays alive or grows from step to step")
    elif trend.growing:
        s.add("memory_growth", 4, f"{trend.describe()}: memory that grows over time points at something kept alive "
                                  "or growing shapes")
    done = trend.steps_done
    if done is not None and done >= 50:
        where = f"{done} of {trend.total_steps} steps" if trend.total_steps else f"{done} steps"
        if not trend.growing:
            s.add("memory_growth", 2, f"the run trained {where} before it failed: the first steps fit, so memory grew "
                                      "or a rare batch was larger")
            s.add("seq_len_too_long", 0.8, f"after {where}, a longer-than-usual sample can push the peak over")
        else:
            s.add("memory_growth", 1, f"it failed only after {where}")


# ---------------------------------------------------------------------------------------------------
# Phase, operation, related errors, similar cases


_PHASE_LABELS: dict[str, list[tuple[str, float, str]]] = {
    "model_loading": [("model_load_oom", 3.5, "it failed while loading the model: a smaller batch cannot fix that"),
                      ("weights_exceed_gpu", 1.5, "weights are being placed on the GPU when it fails")],
    "lora_merge": [("model_load_oom", 5, "it failed while merging the LoRA adapter into the weights")],
    "checkpoint_save": [("model_load_oom", 4, "it failed while saving / gathering a checkpoint")],
    "evaluation": [("eval_accumulation", 5, "it failed in evaluation / prediction, not in the training step")],
    "generation": [("generation_kv_cache", 5, "it failed while generating: the KV cache grows with max_new_tokens")],
    "optimizer_step": [("full_ft_model_states", 2.5, "it failed in the optimizer step: optimizer states and their temporaries"),
                       ("zero_stage_insufficient", 1.5, "optimizer-step OOM: the states are not sharded enough")],
    "backward": [("seq_len_too_long", 0.5, "it failed in backward: activations saved for the gradient"),
                 ("batch_too_large", 0.5, "it failed in backward: activations saved for the gradient")],
    "forward": [("seq_len_too_long", 0.4, "it failed in the forward pass"), ("batch_too_large", 0.4, "it failed in the forward pass")],
}


def _phase_and_operation(report: OOMReport, setup: TrainingSetup | None, s: _Scores, multimodal: str | None = None,
                         cues: LogCues | None = None) -> None:
    for label, pts, reason in _PHASE_LABELS.get(report.phase, []):
        if label == "zero_stage_insufficient" and setup is not None and setup.zero_stage >= 3:
            continue
        if label == "full_ft_model_states" and setup is not None and setup.method != "full" and _observed(setup, "method"):
            continue
        if report.kind == "host_oom" and label in ("weights_exceed_gpu", "model_load_oom"):
            continue  # host memory: loading was already weighed by _host_memory
        s.add(label, pts, reason)
    op_line = next((e for e in report.evidence if e.fact == "operation"), None)
    if op_line is not None and _EAGER_LINE.search(op_line.text):
        s.add("eager_attention", 3.5, f"the failing line builds the attention score matrix explicitly (log line {op_line.line}: "
                                      "eager attention; sdpa / flash-attn never materialise it)")
        s.add("seq_len_too_long", 1.0, "the score matrix grows with the square of the sequence length")
    op = report.operation
    if op == "moe_experts" or (op == "zero3_allgather" and setup is not None and setup.model is not None and setup.model.is_moe):
        s.add("moe_memory", 2.5, f"the failing operation is {op.replace('_', ' ')}")
    elif op == "vision_tower":
        s.add("vision_tokens", 2, "the failing operation is in the vision tower")
    elif op in ("cross_entropy", "lm_head"):
        s.add("logits_large_vocab", 2, f"the failing operation is the {op.replace('_', ' ')} over the vocabulary")
        if report.requested_bytes and report.requested_bytes >= GiB:
            s.add("logits_large_vocab", 1.5, f"a {format_bytes(report.requested_bytes)} allocation in the loss: "
                                             "logits scale with tokens x vocabulary")
            s.add("seq_len_too_long", 1.0, f"{format_bytes(report.requested_bytes)} of logits for one step: many tokens per sample")
    elif op == "optimizer" and report.phase != "optimizer_step":
        s.add("full_ft_model_states", 2, "the failing operation is the optimizer")
    elif op == "attention" and setup is not None and setup.attn_implementation == "eager" and _observed(setup, "attn_implementation"):
        s.add("eager_attention", 2, "the failing operation is attention and the run uses eager attention")
    if cues is not None and cues.kv_cache is not None:
        s.add("generation_kv_cache", 5, f"vLLM cannot fit its KV cache (line {cues.kv_cache.line}): max_model_len x "
                                        "layers x KV heads needs more than gpu_memory_utilization leaves after the weights")
    if report.framework == "vllm" and report.phase == "model_loading":
        # vLLM places the weights before it profiles and sizes the KV cache: an OOM while loading is the weights.
        s.add("weights_exceed_gpu", 2, "vLLM ran out while loading the weights, before any KV cache exists: the weights "
                                       "per GPU (tensor_parallel_size splits them) do not fit")
    elif report.framework == "vllm":
        # vLLM sizes its KV cache up front (gpu_memory_utilization) after a profile run at the longest inputs.
        s.add("generation_kv_cache", 3, "vLLM pre-allocates the KV cache from gpu_memory_utilization after a profiling run")
        if multimodal:
            s.add("vision_tokens", 1.5, f"{multimodal}: vLLM's profiling run feeds the most images/video frames the "
                                        "limits allow (limit_mm_per_prompt, max pixels)")
    elif report.phase == "generation":
        s.add("generation_kv_cache", 1.5, "generation: the KV cache grows with the tokens generated")
    if report.phase == "evaluation" and setup is not None and setup.eval_batch and setup.eval_batch > 1:
        s.add("batch_too_large", 1.5, f"evaluation runs at per_device_eval_batch_size {setup.eval_batch}")


# The score matrix of eager attention, as model code writes it (HF modeling_*.py, llama-recipes, remote code).
_EAGER_LINE = re.compile(r"attn_weights\s{0,3}=\s{0,3}(?:torch\.matmul|nn\.functional\.softmax|F\.softmax|torch\.softmax)|eager_attention_forward")

_RELATED: dict[str, tuple[str, str]] = {
    "bnb_quantization_kwargs": ("quantization_setup", "bitsandbytes: load_in_4bit/8bit passed together with quantization_config"),
    "dtype_not_implemented": ("dtype_unsupported", "an op is not implemented for this dtype (version incompatibility)"),
    "flash_attn_missing": ("eager_attention", "flash-attn is not installed: attention falls back to a slower, memory-hungrier path"),
    "flash_attn_unused": ("eager_attention", "the log warns that FlashAttention-2 is not used"),
    "device_side_assert": ("not_oom", "a device-side assert fired: an allocation failure after it is not a memory budget problem"),
    "sigbus": ("not_oom", "SIGBUS: shared memory (/dev/shm) exhausted, not GPU memory"),
    "sigfpe": ("not_oom", "SIGFPE: a library bug, not memory"),
}


def _related_errors(report: OOMReport, s: _Scores, *, memory_error: bool) -> None:
    seen: set[str] = set()
    for err in report.related_errors:
        if err.kind not in _RELATED or err.kind in seen:
            continue
        seen.add(err.kind)
        label, meaning = _RELATED[err.kind]
        pts = 2.0 if memory_error else 6.0
        if label == "eager_attention" and memory_error:
            pts = 3.0
        if label == "not_oom" and memory_error:
            pts = 1.0
        s.add(label, pts, f"{meaning} (log line {err.line})")


def _dtype(report: OOMReport, setup: TrainingSetup | None, cues: LogCues | None, s: _Scores, *, memory_error: bool) -> None:
    """A dtype the GPU or an op cannot run: an error to fix before memory, or the whole story when nothing ran out."""
    if cues is not None and cues.dtype_error is not None:
        # Without an OOM, a named dtype error is the specific diagnosis (it outranks the generic not_oom).
        s.add("dtype_unsupported", 3.0 if memory_error else 9.0,
              f"the log shows a dtype error (line {cues.dtype_error.line}: {cues.dtype_error.text[:120]})")
    gpu = setup.gpu if setup is not None else None
    if gpu is not None and not gpu.bf16 and "bf16" in setup.precision and _observed(setup, "precision") \
            and _observed(setup, "gpu"):
        # bf16 needs compute capability 8.0 (Ampere); V100 / T4 emulate it slowly or refuse it (PyTorch, vLLM checks).
        s.add("dtype_unsupported", 2.5 if memory_error else 5.0, f"{setup.precision} is asked for on a {gpu.name}, "
                                                                  "which has no native bf16 (pre-Ampere): use fp16 or fp32")


def _quantization(report: OOMReport, cues: LogCues | None, s: _Scores) -> None:
    """4/8-bit weights in play: bitsandbytes frames or quantization flags near the failure."""
    if cues is None or cues.quantization is None or any(_RELATED.get(e.kind, ("",))[0] == "quantization_setup"
                                                        for e in report.related_errors):
        return  # a quantization error the parser named was already weighed; the same fact counts once
    cue = cues.quantization
    s.add("quantization_setup", 1.5, f"quantized weights are in play (line {cue.line}: {cue.text[:120]}): a quantization "
                                     "that is not applied, or de-quantized copies, changes the memory the run planned for")
    if report.requested_bytes is None and report.gpu_total_bytes is None and report.phase in ("unknown", "forward", "backward"):
        # A report without any number whose one concrete detail is how the weights are quantized.
        s.add("quantization_setup", 2.0, "the report gives no memory numbers; the quantization it describes is the one "
                                         "concrete detail of the setup")


_MECHANISM_FACETS = {"phase", "modality"}  # kb.facets facets that tell how memory was spent


def _without_numbers(report: OOMReport, setup: TrainingSetup | None, cues: LogCues | None, s: _Scores) -> None:
    """A report with no memory numbers: what kind of model it is says which tensors usually dominate."""
    if report.requested_bytes is not None or report.gpu_total_bytes is not None or report.kind == "host_oom":
        return
    if report.phase not in ("unknown", "forward", "backward"):
        return  # a named phase already says where the memory went
    mm = _multimodal(report, setup, cues)
    if mm:
        # Images and video frames become thousands of tokens each (oom-signals.md, vision-tower attention).
        s.add("vision_tokens", 2.0, f"{mm}: without numbers, the visual tokens per sample are the usual driver")
    moe = _moe(report, setup)
    if moe:
        s.add("moe_memory", 1.5, f"{moe}: all experts' weights are resident on every GPU that holds a layer")


def _similar_cases(hits: Iterable[Any], s: _Scores) -> None:
    """Labels of the retrieved cases: weak evidence, decaying with rank."""
    for rank, hit in enumerate(list(hits)[:5]):
        case = getattr(hit, "case", hit)
        labels = list(getattr(case, "root_causes", []) or [])
        cid = getattr(case, "id", "?")
        weight = 1.2 / (rank + 1)
        shared = set(getattr(hit, "matched_facets", None) or [])
        if hasattr(hit, "matched_facets") and not shared & _MECHANISM_FACETS:
            # Sharing only the error kind, framework or method makes a case a neighbour in wording, not in mechanism.
            weight /= 2
        for i, label in enumerate(labels[:3]):
            s.add(label, weight if i == 0 else weight / 3, f"similar documented case {cid} had {label.replace('_', ' ')}")


# ---------------------------------------------------------------------------------------------------


def _observed(setup: TrainingSetup, field_name: str) -> bool:
    """True when a fact came from the log, the config or the user (not an assumed default)."""
    prov = setup.provenance.get(field_name)
    return prov is not None and prov.origin in ("log", "config", "user", "registry", "derived")


# Model names of vision-language families (HF / vLLM / llama.cpp naming): "-VL", "Vision", LLaVA, InternVL, ...
_VL_NAME = re.compile(r"(?<![a-z])vl(?![a-z])|vision|llava|internvl|minicpm-?v|pixtral|idefics|paligemma|cogvlm|mllama|"
                      r"glm-?4v|molmo|blip|kosmos|fuyu|(?<![a-z])ovis|deepseek-vl|janus|gemma-?3-(?:4|12|27)b", re.IGNORECASE)


# Mixture-of-experts families by name (Mixtral, Qwen-MoE / -A3B, DeepSeek-V2/V3, gpt-oss, DBRX, Jamba, OLMoE, ...).
_MOE_NAME = re.compile(r"(?<![a-z])moe(?![a-z])|mixtral|-a\d{1,2}(?:\.\d)?b(?![a-z])|deepseek-v[23]|gpt-oss|dbrx|jamba|"
                       r"olmoe|arctic|grok-?1|switch-", re.IGNORECASE)


def _moe(report: OOMReport, setup: TrainingSetup | None) -> str | None:
    """Why this run is a mixture-of-experts model (architecture or name), or None."""
    if setup is not None and setup.model is not None:
        return f"{setup.model.num_experts} experts per MoE layer" if setup.model.is_moe else None
    for name in (setup.model_name if setup is not None else None, report.model):
        if name and _MOE_NAME.search(name):
            return f"{name} is a mixture-of-experts model"
    return None


def _multimodal(report: OOMReport, setup: TrainingSetup | None, cues: LogCues | None) -> str | None:
    """Why this run has a vision encoder in the step (architecture, model name, or the log's inputs), or None."""
    if _is_multimodal(setup):
        return f"the {setup.model.model_type} model has a vision tower"
    for name in (setup.model_name if setup is not None else None, report.model):
        if name and _VL_NAME.search(name):
            return f"{name} is a vision-language model"
    if cues is not None and cues.vision is not None:
        return f"the run feeds images (line {cues.vision.line}: {cues.vision.text[:60]})"
    return None


def _is_multimodal(setup: TrainingSetup | None) -> bool:
    return bool(setup is not None and setup.model is not None and setup.model.vision is not None)
