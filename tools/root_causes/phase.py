"""Where the run failed: the phase (loading, evaluation, optimizer step, generation), the failing operation and
the serving engine, each a prior on the causes that live there."""

from __future__ import annotations

import re

from ..labels import Label
from ..frameworks import KV_POOL_ENGINES
from ..log_cues import EngineContext, LogCues, pool_engine
from ..memory.estimator import kv_bytes_per_token
from ..report import OOMReport
from ..training_setup import TrainingSetup
from ..units import format_bytes
from .facts import observed
from .request_size import gathers_parameters
from .signals import Signal, discount, support
from .weights import BF16_BYTES, FULL_SHARDING, QUOTE_SHORT, THRESHOLDS, Thresholds

# phase → (label, rule name, reason): the causes that live in that phase
_PHASE_LABELS: dict[str, list[tuple[Label, str, str]]] = {
    "model_loading": [(Label.model_load_oom, "phase_loading",
                       "it failed while loading the model: a smaller batch cannot fix that"),
                      (Label.weights_exceed_gpu, "phase_loading_weights", "weights are being placed on the GPU when it fails")],
    "lora_merge": [(Label.model_load_oom, "phase_lora_merge", "it failed while merging the LoRA adapter into the weights")],
    "checkpoint_save": [(Label.model_load_oom, "phase_checkpoint_save", "it failed while saving / gathering a checkpoint")],
    "evaluation": [(Label.eval_accumulation, "phase_evaluation",
                    "it failed in evaluation / prediction, not in the training step")],
    "generation": [(Label.generation_kv_cache, "phase_generation",
                    "it failed while generating: the KV cache grows with max_new_tokens")],
    "optimizer_step": [(Label.full_ft_model_states, "phase_optimizer_step",
                        "it failed in the optimizer step: optimizer states and their temporaries"),
                       (Label.zero_stage_insufficient, "phase_optimizer_step_sharding",
                        "optimizer-step OOM: the states are not sharded enough")],
    # activations scale with the micro-batch and the length alike (b x s tokens): the phase favours neither, so both
    # share one rule and one weight; what was stated (a batch, a length, a request's size) tells them apart
    "backward": [(Label.seq_len_too_long, "phase_backward_activations", "it failed in backward: activations saved for the gradient"),
                 (Label.batch_too_large, "phase_backward_activations", "it failed in backward: activations saved for the gradient")],
    "forward": [(Label.seq_len_too_long, "phase_forward_activations", "it failed in the forward pass"),
                (Label.batch_too_large, "phase_forward_activations", "it failed in the forward pass")],
}


# The phases outside the training step each name their cause by where the run failed (their first rule above); the
# similar cases are retrieved with the same words (ranking.votes_beside_the_phase).
PHASE_PRIOR_RULES = frozenset(_PHASE_LABELS[phase][0][1] for phase in
                              ("model_loading", "lora_merge", "checkpoint_save", "evaluation", "generation"))


def phase_and_operation(report: OOMReport, setup: TrainingSetup | None, multimodal: str | None = None,
                        cues: LogCues | None = None, th: Thresholds = THRESHOLDS) -> list[Signal]:
    """Priors of the phase, the failing operation and the engine (vLLM), each on the causes that live there."""
    out = _phase_priors(report, setup)
    if report.phase == "evaluation" and cues is not None and cues.harness is not None:
        out = [s for s in out if s.name != "phase_evaluation"] + [support(
            Label.batch_too_large, "phase_evaluation_harness",
            f"the evaluation runs in a harness (line {cues.harness.line}: {cues.harness.text[:QUOTE_SHORT]}): it scores "
            "batch by batch and keeps no logits across batches, so one batch of inference (its size, its lengths) ran out"),
            discount(Label.eval_accumulation, "harness_keeps_no_logits",
                     "a harness keeps no predictions across batches: the Trainer's accumulation does not happen there")]
    op_line = next((e for e in report.evidence if e.fact == "operation"), None)
    if op_line is not None and _EAGER_LINE.search(op_line.text):
        out.append(support(Label.eager_attention, "eager_line",
                           f"the failing line builds the attention score matrix explicitly (log line {op_line.line}: "
                           "eager attention; sdpa / flash-attn never materialise it)"))
        out.append(support(Label.seq_len_too_long, "eager_line_length",
                           "the score matrix grows with the square of the sequence length"))
    out += _operation(report, setup, th)
    if setup is not None and setup.workload != "train" and not observed(setup, "method"):
        # inference keeps no gradients and no optimizer states: whatever else points at full fine-tuning's states
        # (the neighbours' votes, a full card) speaks of training runs, which this is not
        out.append(discount(Label.full_ft_model_states, "inference_keeps_no_states",
                            f"nothing in the paste trains a model ({setup.workload} workload): inference keeps no "
                            "gradients or optimizer states"))
    if cues is not None and cues.kv_cache is not None:
        out.append(support(Label.generation_kv_cache, "vllm_kv_cache_cue",
                           f"vLLM cannot fit its KV cache (line {cues.kv_cache.line}): max_model_len x "
                           "layers x KV heads needs more than gpu_memory_utilization leaves after the weights"))
    if cues is not None and cues.kbit_preparation is not None:
        out.append(support(Label.quantization_setup, "kbit_preparation_frame",
                           f"it failed in PEFT's prepare_model_for_kbit_training (line {cues.kbit_preparation.line}), "
                           "which casts every parameter that is not quantized to fp32: norms, embeddings and lm_head, "
                           "and the whole model when it was not loaded in 4/8-bit (load it with a BitsAndBytesConfig "
                           "first, or skip the call for a 16-bit LoRA run)"))
    if cues is not None and cues.conversation is not None and report.phase in ("unknown", "generation"):
        out.append(support(Label.generation_kv_cache, "conversation_grows",
                           f"a chat that runs out after some turns (line {cues.conversation.line}: "
                           f"{cues.conversation.text[:QUOTE_SHORT]}): the history is resent every turn, so the prompt "
                           "and the KV cache built over it grow with the conversation (cap the history or max_length)"))
    if cues is not None and cues.engine_context is not None:
        out += _engine_context(cues.engine_context, setup, th)
    engine = pool_engine(report, cues)
    if report.framework == "vllm" and report.phase == "model_loading":
        # vLLM places the weights before it profiles and sizes the KV cache: an OOM while loading is the weights.
        out.append(support(Label.weights_exceed_gpu, "vllm_loading",
                           "vLLM ran out while loading the weights, before any KV cache exists: the weights "
                           "per GPU (tensor_parallel_size splits them) do not fit"))
    elif engine is not None and (report.framework == engine
                                 or not (report.phase == "generation" and _prefill_sized(report, setup, th))):
        # the engine sizes its KV cache up front as a share of the card (vLLM after a profile run at the longest
        # inputs); a request sized as the prompt's own activations (below) says more than an engine the words name
        out += _kv_pool(engine, multimodal)
    elif report.phase == "generation" and _prefill_sized(report, setup, th):
        out += _prefill(report, multimodal)
    elif report.phase == "generation":
        out.append(support(Label.generation_kv_cache, "generation_kv",
                           "generation: the KV cache grows with the tokens generated"))
    if report.phase in ("evaluation", "generation") and setup is not None and setup.eval_batch and setup.eval_batch > 1:
        # every sequence of the eval batch holds its own KV cache and logits while it generates
        out.append(support(Label.batch_too_large, "eval_batch",
                           f"evaluation runs at per_device_eval_batch_size {setup.eval_batch}"
                           + (": one KV cache per sequence of the batch" if report.phase == "generation" else "")))
    return out


def _engine_context(context: EngineContext, setup: TrainingSetup | None, th: Thresholds) -> list[Signal]:
    """llama.cpp allocates the keys and values of every one of its n_ctx tokens when it creates the context: a very
    long context is a KV cache sized for it, whatever the prompt. The arithmetic is the one llama.cpp printed, else
    tokens x the model's KV bytes per token (f16 keys and values, llama.cpp's default cache type)."""
    if context.tokens < th["very_long_cutoff_tokens"]:
        return []
    model = setup.model if setup is not None else None
    if context.kv_bytes:
        size = f"it allocated {format_bytes(context.kv_bytes)} of KV cache for them (line {context.kv_line})"
    elif model is not None:
        per_token = kv_bytes_per_token(model, BF16_BYTES)
        size = (f"{context.tokens:,} tokens x {per_token:,} B of f16 keys and values per token ({model.name}) = "
                f"{format_bytes(context.tokens * per_token)}")
    else:
        size = "its keys and values grow with every token of it"
    return [support(Label.generation_kv_cache, "engine_context_long",
                    f"llama.cpp reserves the KV cache for its whole context when it creates it: n_ctx = "
                    f"{context.tokens:,} (line {context.line}); {size}. A smaller context (-c / n_ctx / num_ctx) shrinks it")]


def _kv_pool(engine: str, multimodal: str | None) -> list[Signal]:
    """An engine that reserves its KV cache as a share of the card (frameworks.KV_POOL_ENGINES)."""
    out = [support(Label.generation_kv_cache, "engine_kv_preallocated",
                   f"{engine} pre-allocates its KV cache as a share of the card ({KV_POOL_ENGINES[engine]})"
                   + (" after a profiling run" if engine == "vllm" else ""))]
    if multimodal and engine == "vllm":
        out.append(support(Label.vision_tokens, "vllm_profile_images",
                           f"{multimodal}: vLLM's profiling run feeds the most images/video frames the limits allow "
                           "(limit_mm_per_prompt, max pixels)"))
    return out


def _phase_priors(report: OOMReport, setup: TrainingSetup | None) -> list[Signal]:
    """The phase's own causes, less those the setup or the kind of failure rules out."""
    out: list[Signal] = []
    for label, name, reason in _PHASE_LABELS.get(report.phase, []):
        if label == Label.zero_stage_insufficient and setup is not None and setup.zero_stage >= FULL_SHARDING:
            continue
        if label == Label.full_ft_model_states and setup is not None and setup.method != "full" and observed(setup, "method"):
            continue
        if report.kind == "host_oom" and label in (Label.weights_exceed_gpu, Label.model_load_oom):
            continue  # host memory: loading was already weighed by host_memory
        out.append(support(label, name, reason))
    return out


def _operation(report: OOMReport, setup: TrainingSetup | None, th: Thresholds) -> list[Signal]:
    """The failing operation (expert dispatch, vision tower, loss, optimizer, attention) names its cause."""
    op = report.operation
    if op == "moe_experts" or (op == "zero3_allgather" and setup is not None and setup.model is not None and setup.model.is_moe):
        return [support(Label.moe_memory, "op_moe", f"the failing operation is {op.replace('_', ' ')}")]
    if gathers_parameters(report, setup):
        # ZeRO-3 gathers each layer's parameters on top of every rank's partitions: what runs out is the model states
        full = setup is None or setup.method == "full"
        return [support(Label.full_ft_model_states if full else Label.weights_exceed_gpu,
                        "op_zero3_gather" if setup is None or observed(setup, "method") else "op_zero3_gather_assumed",
                        "the failing operation is ZeRO-3 gathering parameters: the model states (partitions plus the "
                        "gathered layers) fill the card, not activations")]
    if op == "vision_tower":
        return [support(Label.vision_tokens, "op_vision_tower", "the failing operation is in the vision tower")]
    if op in ("cross_entropy", "lm_head"):
        out = [support(Label.logits_large_vocab, "op_loss",
                       f"the failing operation is the {op.replace('_', ' ')} over the vocabulary")]
        if report.requested_bytes and report.requested_bytes >= th["large_loss_request_bytes"]:
            out.append(support(Label.logits_large_vocab, "op_loss_large_request",
                               f"a {format_bytes(report.requested_bytes)} allocation in the loss: logits scale with "
                               "tokens x vocabulary"))
            out.append(support(Label.seq_len_too_long, "op_loss_large_request_tokens",
                               f"{format_bytes(report.requested_bytes)} of logits for one step: many tokens per sample"))
        return out
    if op == "optimizer" and report.phase != "optimizer_step":
        return [support(Label.full_ft_model_states, "op_optimizer", "the failing operation is the optimizer")]
    if op == "attention" and setup is not None and setup.attn_implementation == "eager" and observed(setup, "attn_implementation"):
        return [support(Label.eager_attention, "op_eager_attention",
                        "the failing operation is attention and the run uses eager attention")]
    return []


# The score matrix of eager attention, as model code writes it (HF modeling_*.py, llama-recipes, remote code).
_EAGER_LINE = re.compile(r"attn_weights\s{0,3}=\s{0,3}(?:torch\.matmul|nn\.functional\.softmax|F\.softmax|torch\.softmax)|eager_attention_forward")


def _prefill_sized(report: OOMReport, setup: TrainingSetup | None, th: Thresholds) -> bool:
    """Is the failed request too large for the KV cache of one decoding step, so it belongs to the prompt's prefill?"""
    req = report.requested_bytes
    if not req:
        return False
    model = setup.model if setup is not None else None
    if model is None:
        return req >= th["unsized_prefill_bytes"]
    per_token_layer = model.num_kv_heads * model.head_dim * BF16_BYTES   # keys or values of one token in one layer
    # One decoding step appends a token's keys and values to each layer's cache: even re-copied whole (torch.cat in
    # HF's dynamic cache), one layer's cache this large would hold more tokens than any batch of prompts does.
    return req > th["max_cached_tokens"] * per_token_layer


def _prefill(report: OOMReport, multimodal: str | None) -> list[Signal]:
    """A generation OOM on one huge allocation: the prompt's first forward (prefill), not the growing cache."""
    size = format_bytes(report.requested_bytes)
    out = [discount(Label.generation_kv_cache, "prefill_not_kv_cache",
                    f"but a single {size} request is no KV-cache step (a token adds KiB to each layer's cache): it is "
                    "the prompt's first forward")]
    if multimodal:
        out.append(support(Label.vision_tokens, "prefill_visual_tokens",
                           f"{multimodal}: a {size} allocation while generating is the prefill over the prompt's "
                           "visual tokens (thousands per image or video), whose attention grows with their square"))
    out.append(support(Label.seq_len_too_long, "prefill_tokens",
                       f"a {size} allocation while generating is the prompt's prefill: attention and "
                       "activations over every prompt token at once"))
    out.append(support(Label.eager_attention, "prefill_eager",
                       "without flash-attention the prefill materialises heads x s x s attention scores"))
    return out
