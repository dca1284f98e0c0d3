"""Where the run failed: the phase (loading, evaluation, optimizer step, generation), the failing operation and
the serving engine, each a prior on the causes that live there."""

from __future__ import annotations

import re

from ..log_cues import LogCues
from ..report import OOMReport
from ..training_setup import TrainingSetup
from ..units import GiB, format_bytes
from .facts import observed
from .scores import Scores

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


def phase_and_operation(report: OOMReport, setup: TrainingSetup | None, s: Scores, multimodal: str | None = None,
                         cues: LogCues | None = None) -> None:
    """Priors of the phase, the failing operation and the engine (vLLM), each on the causes that live there."""
    for label, pts, reason in _PHASE_LABELS.get(report.phase, []):
        if label == "zero_stage_insufficient" and setup is not None and setup.zero_stage >= 3:
            continue
        if label == "full_ft_model_states" and setup is not None and setup.method != "full" and observed(setup, "method"):
            continue
        if report.kind == "host_oom" and label in ("weights_exceed_gpu", "model_load_oom"):
            continue  # host memory: loading was already weighed by host_memory
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
    elif op == "attention" and setup is not None and setup.attn_implementation == "eager" and observed(setup, "attn_implementation"):
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
    elif report.phase == "generation" and _prefill_sized(report, setup):
        _prefill(report, s, multimodal)
    elif report.phase == "generation":
        s.add("generation_kv_cache", 1.5, "generation: the KV cache grows with the tokens generated")
    if report.phase in ("evaluation", "generation") and setup is not None and setup.eval_batch and setup.eval_batch > 1:
        # every sequence of the eval batch holds its own KV cache and logits while it generates
        s.add("batch_too_large", 1.5, f"evaluation runs at per_device_eval_batch_size {setup.eval_batch}"
                                      + (": one KV cache per sequence of the batch" if report.phase == "generation" else ""))


# The score matrix of eager attention, as model code writes it (HF modeling_*.py, llama-recipes, remote code).
_EAGER_LINE = re.compile(r"attn_weights\s{0,3}=\s{0,3}(?:torch\.matmul|nn\.functional\.softmax|F\.softmax|torch\.softmax)|eager_attention_forward")


# One decoding step appends a token's keys and values to each layer's cache: even re-copied whole (torch.cat in HF's
# dynamic cache), one layer's cache this large would hold more tokens than any batch of prompts does.
MAX_CACHED_TOKENS = 256 * 1024
UNSIZED_PREFILL_REQUEST = 8 * GiB   # without the model: far above one layer's cache of a 7B MHA model at 64 x 16k tokens


def _prefill_sized(report: OOMReport, setup: TrainingSetup | None) -> bool:
    """Is the failed request too large for the KV cache of one decoding step, so it belongs to the prompt's prefill?"""
    req = report.requested_bytes
    if not req:
        return False
    model = setup.model if setup is not None else None
    if model is None:
        return req >= UNSIZED_PREFILL_REQUEST
    per_token_layer = model.num_kv_heads * model.head_dim * 2   # keys or values of one token in one layer, 16-bit
    return req > MAX_CACHED_TOKENS * per_token_layer


def _prefill(report: OOMReport, s: Scores, multimodal: str | None) -> None:
    """A generation OOM on one huge allocation: the prompt's first forward (prefill), not the growing cache."""
    size = format_bytes(report.requested_bytes)
    s.discount("generation_kv_cache", 0.4, f"but a single {size} request is no KV-cache step (a token adds KiB to each "
                                           "layer's cache): it is the prompt's first forward")
    if multimodal:
        s.add("vision_tokens", 4.0, f"{multimodal}: a {size} allocation while generating is the prefill over the prompt's "
                                    "visual tokens (thousands per image or video), whose attention grows with their square")
    s.add("seq_len_too_long", 2.5, f"a {size} allocation while generating is the prompt's prefill: attention and "
                                   "activations over every prompt token at once")
    s.add("eager_attention", 1.0, "without flash-attention the prefill materialises heads x s x s attention scores")
