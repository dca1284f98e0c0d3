"""Every number of the root-cause ranking, by name: the points each rule adds (WEIGHTS), the cut-offs and
scalings the rules test against (THRESHOLDS), and the few fixed facts they compute with (dtype sizes, defaults).

The evidence families hold no numbers of their own; `rank_root_causes(..., weights=DEFAULT_WEIGHTS.replace(...))`
ranks with another table. The values below are the hand-written ones; those of the rules the labelled dev reports
exercise are replaced by the fit in fitted_weights.json (evals/fit_weights.py: a conditional logit pulled towards these
values, folds grouped by project), which also sets the probabilities' null option and temperature. Points become a score as 1 - exp(-points / score_scale):
about 6 points is a confident 0.78.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from ..gpus import LARGEST_GPU_BYTES
from .calibration import Knots
from ..units import GiB, MiB

Thresholds = Mapping[str, float]

# ---- points per rule (support: points = weight x the signal's value; discount: the label's points x weight) ------
_POINTS: dict[str, float] = {
    # request_size: the failing allocation's size
    "request_half_gpu_unsized": 1.2,            # one request of half the GPU or more, no model known: a quadratic tensor
    "request_above_gpu_multimodal": 3,          # one request larger than the GPU, in a vision-language run
    "request_above_gpu": 1,                     # one request larger than the GPU, text only
    "request_above_gpu_tokens": 1.5,            # ... too many tokens per step
    "request_above_gpu_scores": 1.0,            # ... the eager attention score matrix, the one tensor this large
    "request_fp32_logits": 2.5,                 # request = fp32 logits of a power-of-two token count (model known)
    "request_logits_beyond_training": 2.5,      # ... more tokens than a training step holds: evaluation
    "multimodal_large_request": 2.5,            # vision-language run, one unmatched request of a large GPU share
    "multimodal_mid_request": 1.0,              # vision-language run, one unmatched request of a mid GPU share
    "optimizer_state_partition_request": 2.5,   # large request in the optimizer step under ZeRO < 3: a state partition
    "optimizer_state_buffer_request": 1.5,      # ... an fp32 optimizer-state buffer of full fine-tuning
    "loss_request": 3,                          # large activation-sized request in the loss / LM head
    "eager_attention_request": 3,               # large request in attention, eager attention stated
    "attention_request": 2.5,                   # large request in attention: grows with the tokens
    "vision_tower_request": 3,                  # large request inside the vision tower
    "moe_dispatch_request": 2.5,                # large request in the MoE expert dispatch
    "activation_request_batch": 2.0,            # large activation at a stated micro-batch > 1 (x 1..2 with the batch)
    "activation_request_tokens": 1.5,           # large activation at micro-batch 1 or unknown: the tokens drive it
    "activation_request_batch_unstated": 0.8,   # ... the micro-batch scales it too
    "unsized_fp32_logits": 2.5,                 # no model: request = fp32 logits of a common large vocabulary
    "unsized_logits_tokens": 0.8,               # ... many tokens per step
    # request_size: the request equals one of the setup's one-piece tensors (tensors.py)
    "match_logits": 3.0,                        # training logits: the vocabulary
    "match_logits_tokens": 1.0,                 # training logits: the micro-batch (> 1) or the length
    "match_eval_logits": 3.0,                   # eval-batch logits: evaluation
    "match_eval_logits_vocab": 2.0,             # eval-batch logits: the vocabulary
    "match_eval_logits_batch": 1.0,             # eval-batch logits: the eval batch
    "match_attention_scores": 4.0,              # b x heads x s x s scores: eager attention
    "match_attention_scores_length": 2.0,       # ... the length
    "match_vision_scores": 4.0,                 # vision-tower attention over one image's patches
    "match_weight16_loading": 2.0,              # one 16-bit weight matrix: loading
    "match_weight16": 1.5,                      # ... the weights
    "match_expert_weight16": 1.5,               # ... an MoE expert's weight
    "match_weight16_gradient": 2.0,             # ... its gradient under full fine-tuning (stated)
    "match_weight16_unquantized": 3.0,          # ... a 16-bit copy of a weight meant to be 4/8-bit
    "match_weight32_full_ft": 3.0,              # one fp32 weight matrix under full fine-tuning: master weight / state
    "match_weight32": 2.0,                      # one fp32 weight matrix otherwise: the weights
    "match_weight32_loading": 1.0,              # ... loading
    "match_optimizer_partition": 3.0,           # one fp32 optimizer-state partition: full fine-tuning states
    "zero_partition_request": 3.0,              # request x ranks / 4 B = the model's parameter count: a ZeRO partition
    "zero_partition_request_sharding": 1.5,     # ... under ZeRO < 3
    "adapters_worked": 4.0,                     # the user says LoRA fit where full fine-tuning ran out
    "fix_said": 2.5,                            # the words say a change fixed it: the cause that change fixes
    "trigger_said": 1.5,                        # the words give a size knob as the error's condition
    "zero3_sub_group_request": 3.0,             # request = one ZeRO-3 optimizer sub group in fp32 (sub_group_size x 4 B)
    "match_optimizer_partition_sharding": 3.0,  # ... not sharded enough (ZeRO < 3 on several GPUs)
    # fragmentation
    "fragmented_cache": 3.5,                    # reserved-but-unallocated ≥ the request
    "fragmented_cache_excess": 0.5,             # ... per doubling of the request it exceeds (capped)
    "fragmented_cache_partial": 1.0,            # reserved-but-unallocated ≥ half the request
    # other_processes
    "memory_outside_process": 4,                # GPU memory held outside this process
    "memory_outside_share": 3,                  # ... x its share of the GPU (capped)
    "memory_outside_reserved": 5.0,             # old message: GPU share neither free nor in PyTorch's cache (x share / cap)
    "would_fit_alone": 3,                       # this process alone would have fit
    "several_processes": 4,                     # several processes listed on the GPU
    "cuda_contexts": 1.5,                       # several CUDA-context-sized processes: other ranks' contexts
    "cuda_context": 0.6,                        # one CUDA-context-sized process
    "cuda_contexts_memory": 0.8,                # ... they hold memory on this GPU
    "cuda_context_memory": 0.4,                 # ... it holds memory on this GPU
    "outside_allocator": 1.5,                   # this process holds much memory outside PyTorch's allocator
    "first_allocation_failed_small_weights": 6, # the runtime's error at the first transfer of small weights
    "raw_cuda_error_loading": 2.5,              # the runtime's error at the first transfer of the weights
    "colocated_vllm": 4.0,                      # OOM in vLLM's cumem allocator during training
    "held_before_start": 4.0,                   # memory already held when an engine started (vLLM's start-up check)
    "held_before_start_share": 3.0,             # ... x its share of the GPU (capped)
    "colocated_vllm_kv_cache": 2.5,             # ... its share is KV cache
    # full_gpu: a request that failed on a full GPU
    "replicas_fill_gpu": 1.5,                   # several GPUs without ZeRO/FSDP: full replicas
    "full_gpu_chunk_batch": 1.5,                # a mid-sized chunk on a full GPU at a stated micro-batch > 1
    "full_gpu_chunk_tokens": 0.7,               # ... the tokens per sample
    "full_gpu_chunk_length": 1.0,               # a mid-sized chunk at micro-batch 1 or unsized: the length
    "full_gpu_chunk_generation": 1.5,           # ... while generating: the KV cache grows with the tokens
    "full_gpu_chunk_batch_unstated": 0.7,       # ... the micro-batch
    "full_gpu_adapter_length": 2.0,             # tiny request, full GPU, adapter run, micro-batch 1/unknown: length
    "full_gpu_adapter_length_batched": 1.4,     # ... at a micro-batch > 1
    "full_gpu_adapter_batch_unstated": 1.2,     # ... the micro-batch, at 1/unknown
    "full_gpu_adapter_batch": 2.2,              # ... the micro-batch, stated > 1
    "full_gpu_adapter_merge": 1.1,              # ... outside the step: a merge's second copy of the weights
    "full_gpu_adapter_weights": 1.0,            # ... the weights
    "full_gpu_states": 2.5,                     # tiny request, full GPU, unsized: model states
    "full_gpu_full_ft": 1.0,                    # ... full fine-tuning (stated or assumed)
    "full_gpu_full_ft_unlikely": 0.2,           # ... full fine-tuning although the method is another
    "full_gpu_loading": 0.8,                    # ... outside the step: loading
    "full_gpu_sized": 0.5,                      # tiny request, full GPU, sized setup: the weights
    "full_gpu_engine_pool": 2.5,                # tiny request, full GPU, an engine that reserves its KV cache
    # host
    "bus_error": 8,                             # host OOM that is a bus error: not memory
    "host_oom": 6,                              # host (CPU) memory ran out
    "host_ram_at_limit": 1.5,                   # the log's host RAM readings at the limit
    "host_oom_loading": 5,                      # the host ran out while loading / merging / saving
    "host_offload": 2,                          # ZeRO offloads states to host RAM
    "offload_no_failure_shown": 2,              # ... and the paste stops without an error (the same evidence)
    "host_offload_full_ft": 1.5,                # ... of full fine-tuning
    "host_estimate_over": 2.5,                  # the calculator's host RAM needs above the host's
    "host_estimate_close": 1.0,                 # ... close to it
    "host_estimate_within": 0,                  # ... within it: no evidence
    "host_estimate_unfit": 2,                   # the calculator says host RAM does not fit (host size unknown)
    # budget: the calculator's breakdown against the budget
    "gc_off_stated": 2.0,                       # unsized, but gradient checkpointing stated off
    "stated_cutoff_unsized": 1.5,               # no model to size; a stated cutoff of 4096+ tokens
    "stated_cutoff_very_long_unsized": 1,       # ... 8192+ tokens
    "stated_batch_unsized": 1.5,                # no model to size; a stated micro-batch of 16+
    "weights_over_one_gpu_split_unknown": 1,    # inference on several GPUs, split unknown: a copy over one card
    "weights_over_budget_full_ft": 4,           # weights alone over the budget, full fine-tuning stated
    "weights_over_budget": 6,                   # weights alone over the budget
    "full_ft_weights_over_budget": 6,           # ... full fine-tuning adds states on top
    "weights_replicated": 2.5,                  # ... and every GPU keeps a full copy (ZeRO < 3)
    "moe_experts_resident": 2,                  # ... all MoE experts resident
    "zero3_would_fit": 3,                       # states over budget, ZeRO-3 over the run's GPUs would fit
    "full_ft_states_over_budget": 6,            # states over budget under full fine-tuning
    "states_over_budget": 3,                    # states over budget otherwise
    "states_unsharded": 4,                      # states over budget under ZeRO < 3 on several GPUs
    "states_fill_budget": 2,                    # states fill most of the budget (x 1..2 with how full)
    "states_unsharded_zero01": 2,               # ... gradients and optimizer states not sharded (ZeRO-0/1)
    "predicted_fit_ran_out": 1.0,               # the calculator predicts a fit, yet it ran out: growth
    "predicted_fit_fragmentation": 0.5,         # ... fragmentation
    "predicted_fit_eager": 1.5,                 # ... eager attention over a longer sample
    "estimate_host_unfit": 2,                   # the calculator's host RAM needs do not fit
    "batch_over_budget": 3.0,                   # activations drive the peak at micro-batch > 1
    "batch_over_budget_assumed": 1.5,           # ... at a micro-batch nobody stated (the framework's default)
    "batch_above_largest_fit": 2.0,             # ... above the largest micro-batch that fits
    "cutoff_over_budget": 2.0,                  # activations drive the peak at a long cutoff (or batch 1)
    "cutoff_over_budget_assumed": 1.0,          # ... at a length nobody stated (the framework's default)
    "cutoff_very_long": 1.5,                    # ... the cutoff is very long
    "cutoff_longer": 0.5,                       # ... the cutoff is long
    "cutoff_at_smallest_batch": 1.5,            # ... at micro-batch 1 (or none fits): only the length is left
    "gc_off_over_budget": 2.5,                  # per-layer activations a large share, checkpointing off
    "gc_off_dominant_stated": 3.0,              # ... most of the peak, checkpointing stated off
    "gc_off_dominant": 1.0,                     # ... most of the peak, checkpointing assumed off
    "eager_scores_over_budget": 3.5,            # eager attention scores a large share of the peak
    "logits_over_budget": 3,                    # logits and loss a large share (or the largest component)
    "vision_over_budget": 3,                    # vision-tower activations a large share
    "embeddings_trained_in_full": 3.0,          # LoRA targets include embed_tokens / lm_head
    "embeddings_large_vocab": 1.0,              # ... over a large vocabulary
    # comparison: "the same run worked with other models"
    "comparable_model_worked": 0.35,            # discount: the sizing causes keep this share of their points
    "comparison_large_vocab": 2.0,              # ... this model's large vocabulary is the difference
    "comparison_batch": 1.5,                    # ... the micro-batch scales the per-step activations
    "comparison_tokens": 0.8,                   # ... the tokens per sample too
    # memory_growth
    "growth_measured": 7,                       # measured memory rising across steps
    "growth_said": 4,                           # memory said to grow
    "failed_after_many_steps": 2,               # failed after many good steps, no growth seen
    "rare_long_sample": 0.8,                    # ... a rare long sample
    "growth_after_many_steps": 1,               # growing, and failed only after many steps
    "growth_uncapped_images": 4.5,              # said to grow, vision-language run with uncapped image size
    "growth_uncapped_length": 5.5,              # said to grow, no sequence-length cap in the config
    "growth_uncapped_length_gc_off": 2.5,       # ... and checkpointing off
    "growth_within_worst_case": -2.5,           # said to grow, but the configured worst case already does not fit
    # model_kind
    "moe_by_name_resident": 2.0,                # MoE by name, loading or full GPU: all experts resident
    "moe_by_name_dispatch": 1.0,                # MoE by name, in the step: dispatch buffers
    "quantization_in_play": 1.5,                # a quantization library or mismatch near the failure
    "quantization_method_named": 0.8,           # only QLoRA / 4-bit named as the method
    "quantization_only_detail": 2.0,            # ... and the report has no numbers
    "quantization_method_only_detail": 1.0,     # ... only the method, and no numbers
    "vision_model_without_numbers": 2.0,        # no numbers, vision-language model
    "moe_model_without_numbers": 1.5,           # no numbers, MoE model
    # held (memory snapshots and per-rank tables from the failing run)
    "snapshot_excess": 8.0,                     # a component held beyond its prediction, x its share of the rank
    "ranks_imbalanced": 2.0,                    # the ranks' memory differs by over 10%, with the source it suggests
    # multi_gpu
    "uneven_spread": 5,                         # one GPU full, the others nearly empty, one process
    "uneven_spread_distributed": 3,             # ... in a distributed launch
    "many_gpus_one_process": 2,                 # several GPUs visible, a single process
    "dataparallel_launch": 3.0,                 # several GPUs, plain `python`: DataParallel on GPU 0
    "device_map_first_gpu": 3.0,                # device_map split, GPU 0 (or unknown) ran out
    "device_map_split": 2.0,                    # device_map split, another GPU ran out
    "imbalance_said": 2.5,                      # the user says one GPU holds more than the others
    "mixed_gpu_models": 4.0,                    # GPUs of different models in one run
    # phase priors and the failing operation
    "phase_loading": 3.5,                       # failed while loading: loading
    "phase_loading_weights": 1.5,               # ... the weights
    "phase_lora_merge": 5,                      # failed while merging LoRA
    "phase_checkpoint_save": 4,                 # failed while saving
    "phase_evaluation": 5,                      # failed in evaluation
    "phase_evaluation_harness": 3,              # ... in an evaluation harness: one batch of inference
    "harness_keeps_no_logits": 0.35,            # discount: a harness keeps no logits across batches (no accumulation)
    "phase_generation": 5,                      # failed while generating
    "phase_optimizer_step": 2.5,                # failed in the optimizer step: states
    "phase_optimizer_step_sharding": 1.5,       # ... not sharded enough
    "phase_backward_activations": 0.5,          # failed in backward: the length and the micro-batch alike
    "phase_forward_activations": 0.4,           # failed in forward: the length and the micro-batch alike
    "eager_line": 3.5,                          # the failing line builds the score matrix
    "eager_line_length": 1.0,                   # ... which grows with the length squared
    "op_moe": 2.5,                              # failing operation: expert dispatch / gather
    "op_zero3_gather": 2.0,                     # failing operation: ZeRO-3 gathers parameters (the model states)
    "op_zero3_gather_assumed": 1.0,             # ... the method that says whose states is assumed
    "op_vision_tower": 2,                       # failing operation: vision tower
    "kbit_preparation_frame": 3.0,              # failed inside prepare_model_for_kbit_training (fp32 upcast)
    "op_loss": 2,                               # failing operation: loss / LM head
    "op_loss_large_request": 1.5,               # ... with a large request
    "op_loss_large_request_tokens": 1.0,        # ... many tokens per sample
    "op_optimizer": 2,                          # failing operation: optimizer, outside its phase
    "op_eager_attention": 2,                    # failing operation: attention, eager stated
    "vllm_kv_cache_cue": 5,                     # vLLM cannot fit its KV cache
    "vllm_loading": 2,                          # vLLM ran out loading the weights
    "engine_kv_preallocated": 3,                # vLLM, LMDeploy, SGLang... pre-allocate the KV cache
    "engine_context_long": 3,                   # llama.cpp created a very long context: its KV cache is reserved whole
    "conversation_grows": 2,                    # a chat ran out after some turns: its resent history grows the cache
    "serve_kv_pool_short": 3,                   # the calculator: vLLM's KV-cache pool holds no max_model_len sequence
    "vllm_profile_images": 1.5,                 # ... its profiling run feeds the most images
    "prefill_not_kv_cache": 0.4,                # discount: one huge request while generating is no KV-cache step
    "inference_keeps_no_states": 0.5,           # discount: full fine-tuning's states in a run that trains nothing
    "batch_of_one": 0.5,                        # discount: a micro-batch already at 1 cannot be the batch to reduce
    "memory_error_shown": 0.5,                  # discount: no memory error, where the log prints one
    "short_length_stated": 0.5,                 # discount: a stated length under long_cutoff_tokens is not long
    "adapters_trained": 0.5,                    # discount: adapters train, the base is frozen: no full fine-tuning states
    "weights_fit_with_room": 0.5,               # discount: the weights at their widest fill under states_ramp_start
    "prefill_visual_tokens": 4.0,               # ... the prefill over visual tokens
    "prefill_tokens": 2.5,                      # ... the prefill over every prompt token
    "prefill_eager": 1.0,                       # ... its attention scores without flash-attention
    "generation_kv": 1.5,                       # generation: the KV cache grows
    "eval_batch": 1.5,                          # evaluation / generation at an eval batch > 1
    # related_errors
    "sigbus_exit": 8,                           # no OOM: the launcher reports SIGBUS
    "sigfpe_exit": 8,                           # no OOM: the launcher reports SIGFPE
    "no_oom_message": 8,                        # no OOM message; the log fails with another error
    "other_error_oom_said": 4,                  # ... while the words say memory ran out: half the case
    "no_failure_shown": 4,                      # no OOM message and no failure at all: the error may be missing
    "traceback_cut": 2,                         # ... the paste stops inside a traceback: its error was cut off
    "error_without_oom": 3,                     # an error, but no OOM message
    "cublas_after_assert": 7,                   # cuBLAS failure after a device-side assert
    "related_error_alone": 6.0,                 # a related error, no OOM
    "impossible_request": 6.0,                  # a request past any memory that exists: a size computed wrong
    "related_error_beside_oom": 2.0,            # a related error beside an OOM
    "weights_offloaded": 6.0,                   # the device map offloaded weights off the GPU (meta tensors)
    "related_attention_beside_oom": 3.0,        # missing / unused flash-attn beside an OOM
    "related_not_oom_beside_oom": 1.0,          # an assert / SIGBUS beside an OOM
    "dtype_error_alone": 9.0,                   # a dtype error, no OOM: the diagnosis
    "dtype_error_beside_oom": 3.0,              # a dtype error beside an OOM
    "no_bf16_alone": 5.0,                       # bf16 on a GPU without it, no OOM
    "no_bf16_beside_oom": 2.5,                  # ... beside an OOM
    # similar_cases: value = 1 / rank (halved for a wording-only neighbour)
    "similar_case_primary": 1.2,                # a retrieved case's primary label
    "similar_case_phase_agrees": 0.5,           # ... for the cause the failing phase already names (same words)
    "similar_case_secondary": 1.2,              # its next labels (value divided by secondary_label_divisor)
    "labelled_report_votes": 3.0,               # x share: causes of the labelled public reports most like this one
    "labelled_report_votes_also": 1.0,          # x share: the causes those reports' threads accept after the first
    "labelled_report_words": 1.0,               # x ln(p / floor): the labelled reports' word model (kb/report_words.py)
    # ranking: nothing else spoke
    "no_evidence_batch": 0.5,                   # the per-step activations (micro-batch) are the usual suspect
    "no_evidence_length": 0.4,                  # ... and the sequence length
}

# ---- no log (`ask-oom fix` without --log): points = share of the peak x this scale, so that a 0.2 share scores
# 0.2, the bar the planner sets for a diagnosed cause (configs/planner.py), and the order follows the shares ----------
_SCORE_SCALE = 4.0
_PLANNER_BAR = 0.2
_PER_SHARE = -_SCORE_SCALE * math.log(1 - _PLANNER_BAR) / _PLANNER_BAR
_POINTS.update({
    "breakdown_weights_over_budget": 0.95 * _PER_SHARE,  # weights alone over the budget (a fixed 0.95 share)
    "breakdown_model_states": 1.0 * _PER_SHARE,          # x states' share: weights + gradients + optimizer states
    "breakdown_states_unsharded": 0.6 * _PER_SHARE,      # x states' share, ZeRO < 3 on several GPUs
    "breakdown_eager_scores": 1.0 * _PER_SHARE,          # x eager attention scores' share
    "breakdown_logits": 1.0 * _PER_SHARE,                # x logits and loss's share
    "breakdown_vision": 1.0 * _PER_SHARE,                # x vision activations' share
    "breakdown_gc_off": 0.9 * _PER_SHARE,                # x activations' share, checkpointing off
    "breakdown_long_cutoff": 1.0 * _PER_SHARE,           # x activations' share, a very long cutoff
    "breakdown_batch": 1.0 * _PER_SHARE,                 # x activations' share, micro-batch > 1
    "breakdown_cutoff": 0.8 * _PER_SHARE,                # x activations' share, the cutoff at micro-batch 1
    "breakdown_host_unfit": 0.9 * _PER_SHARE,            # host RAM does not fit (a fixed 0.9 share)
})
HAND_WEIGHTS: Mapping[str, float] = MappingProxyType(dict(_POINTS))   # the rules' weights as written, before fitting
FITTED_PATH = Path(__file__).with_name("fitted_weights.json")


def _fitted() -> dict:
    """The table evals/fit_weights.py fitted on the labelled dev cases (weights of the rules that fired there, the null
    option's points, the softmax temperature), or {} when none was written."""
    try:
        return json.loads(FITTED_PATH.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


_FIT = _fitted()
# Fitted weights replace the hand-written ones of the rules the dev cases exercise; the others keep theirs.
WEIGHTS: Mapping[str, float] = MappingProxyType({**_POINTS, **{k: float(v) for k, v in _FIT.get("points", {}).items()
                                                                if k in _POINTS}})
# The leading cause's probability → how often such answers were right on held-out reports (calibration.py), fitted
# with the weights; no map (an empty one) leaves the softmax's probability as it is.
CONFIDENCE_MAP: Knots = tuple((float(p), float(q)) for p, q in _FIT.get("confidence_map", []))

# ---- cut-offs and scalings the rules test against: fractions, byte sizes, counts ----------------------------------
THRESHOLDS: Thresholds = MappingProxyType({
    # scorer
    "score_scale": _SCORE_SCALE,                # points → score: 1 - exp(-points / score_scale)
    "min_points": 0.25,                         # a label needs more points than this to be ranked
    "max_causes": 6,                            # at most this many causes
    "partition_param_slack": 0.05,              # a back-solved parameter count this close to the model's matches
    # probabilities: P(label) = softmax over the labels with evidence and a null option ("none of these") of the points
    # / temperature; both fitted by evals/fit_weights.py (the null option learns from cases whose evidence missed)
    "unexplained_points": float(_FIT.get("thresholds", {}).get("unexplained_points", 2.0)),
    "probability_temperature": float(_FIT.get("thresholds", {}).get("probability_temperature", 1.0)),
    # matching a requested size (tensors.matches_size)
    "size_match_slack": 0.012,                  # relative slack of a size match
    "printed_size_rounding": 0.0051,            # ± one unit in the last of two printed decimals
    "shifted_copy_slack": 0.001,                # extra slack for the shifted (s-1) logits copy
    "power_of_two_slack": 0.005,                # token count within this of a power of two
    # request_size
    "largest_gpu_bytes": LARGEST_GPU_BYTES,     # the largest GPU in the catalogue (tools/gpus.py: MI300X)
    # a request of a pebibyte or more is a size computed wrong (an overflowed product, a negative size read as
    # unsigned: "1EB", "937.34PB", 16 EiB - 1), not a budget; the largest real single buffers seen are about a TiB
    "impossible_request_bytes": 2 ** 50,
    "quadratic_request_share": 0.5,             # a request of this GPU share or more is a quadratic tensor
    "stand_in_match_scale": 0.3,                # a size match on a stand-in model counts this share
    "logits_min_tokens": 256,                   # fewest tokens for a logits match (model known)
    "eval_tokens_over_training": 2,             # logits tokens over this x a training step's: evaluation
    "multimodal_request_share": 0.25,           # vision-language run: a request above this GPU share
    "multimodal_mid_request_share": 0.1,        # ... from this share up to the one above
    "one_piece_request_share": 0.15,            # an unmatched request of this GPU share is one big tensor
    "batch_scale_cap": 16,                      # the micro-batch that doubles activation_request_batch
    "unsized_logits_min_bytes": 256 * MiB,      # no model: smallest request read as logits
    "unsized_logits_min_tokens": 1024,          # no model: fewest tokens for a logits match
    # fragmentation
    "fragmented_min_gpu_share": 0.02,           # reserved-but-unallocated at least this GPU share
    "fragmented_excess_doublings_cap": 4,       # doublings over the request counted at most
    "partial_fragment_of_request": 0.5,         # reserved-but-unallocated at least this share of the request
    "partial_fragment_min_gpu_share": 0.03,     # ... and this GPU share
    # other_processes
    "same_process_slack": 0.01,                 # a listed process within this GPU share of ours is ours
    "outside_memory_share": 0.10,               # memory held outside the process, from this GPU share
    "outside_share_cap": 0.5,                   # memory_outside_share counts the share up to this
    "fit_alone_share": 0.9,                     # this process alone, in use + requested, under this GPU share
    "several_processes": 2,                     # this many processes (or contexts) are "several"
    "cuda_context_max_bytes": 1.5 * GiB,        # a foreign process this small is a CUDA context
    "cuda_contexts_max_share": 0.10,            # ... all of them under this GPU share
    "non_torch_min_bytes": 2 * GiB,             # memory outside PyTorch's allocator, at least this
    "non_torch_min_share": 0.10,                # ... and this GPU share
    "small_weights_share": 0.25,                # weights under this GPU share cannot fail a first transfer
    # full_gpu
    "torch_holds_share": 0.8,                   # PyTorch holds this GPU share: replicas fill the card
    "full_gpu_free_share": 0.05,                # free memory under this GPU share: the GPU is full
    "activation_chunk_share": 0.015,            # a request above this GPU share is an activation chunk
    # host
    "host_ram_full_share": 0.9,                 # the log's host RAM readings at this share of the host
    "host_ram_close_share": 0.8,                # the calculator's host needs above this share are close
    # budget
    "default_budget_share": 0.9,                # budget when the estimate has none: this share of the GPU
    "weights_over_held": 1.1,                   # the calculator's weights above this x what the log holds: wrong sizing
    "states_ramp_start": 0.6,                   # states above this budget share are a cause
    "states_ramp_span": 0.4,                    # ... rising to full weight over this further share
    "activations_share": 0.35,                  # activations from this share of the peak drive it
    "long_cutoff_tokens": 2048,                 # a cutoff this long drives activations
    "longer_cutoff_tokens": 4096,               # ... longer
    "very_long_cutoff_tokens": 8192,            # ... very long
    "layer_activations_share": 0.25,            # per-layer activations from this peak share: checkpointing
    "layer_activations_dominant_share": 0.5,    # ... from this share they dominate
    "attention_scores_share": 0.15,             # eager scores from this peak share
    "logits_share": 0.25,                       # logits and loss from this peak share
    "vision_share": 0.2,                        # vision activations from this peak share
    "assumed_method_scale": 0.5,                # the calculator's states evidence when the method is assumed
    "embeddings_large_vocab": 150_000,          # a vocabulary this large makes trained embeddings large
    # comparison
    "comparison_large_vocab": 100_000,          # a vocabulary this large is what differs from comparable models
    # memory_growth
    "many_steps": 50,                           # a failure after this many steps is not the first step's
    # multi_gpu
    "idle_gpu_share": 0.2,                      # another GPU holding under this share of the failing one's is idle
    # phase
    "large_loss_request_bytes": GiB,            # a loss-side request this large is many tokens of logits
    "max_cached_tokens": 256 * 1024,            # one layer's cache never holds more tokens than this
    "unsized_prefill_bytes": 8 * GiB,           # no model: a generation request this large is the prefill
    # similar_cases
    "similar_cases_counted": 5,                 # the first retrieved cases that vote
    "similar_case_labels_counted": 3,           # the labels of each that vote
    "wording_only_case_scale": 0.5,             # a case sharing no mechanism facet votes this much
    "secondary_label_divisor": 3,               # a case's next labels vote this much less than its first
    "report_words_floor": 0.01,                 # a cause the word model gives this or less does not speak (its
                                                # evidence is ln(p / floor), similar_cases.word_evidence)
    # breakdown (no log)
    "breakdown_states_share": 0.5,              # states above this budget share (full / freeze fine-tuning)
    "breakdown_scores_share": 0.1,              # eager scores above this peak share
    "breakdown_logits_share": 0.15,             # logits above this peak share
    "breakdown_vision_share": 0.1,              # vision activations above this peak share
    "breakdown_activations_share": 0.3,         # activations above this peak share
    "breakdown_long_cutoff_tokens": 8192,       # a cutoff this long is the knob (else the micro-batch)
})

# ---- fixed facts the rules compute with (not tunable) --------------------------------------------------------------
FP32_BYTES = 4                                  # bytes of one fp32 element
BF16_BYTES = 2                                  # bytes of one bf16 / fp16 element
EAGER_KEPT_BYTES = 6                            # per eager score element kept for backward: fp32 softmax + 16-bit copy
FULL_SHARDING = 3                               # the ZeRO stage that shards the weights too
QUANTIZED_BITS = (4, 8)                         # bitsandbytes weight widths
QWEN2_VL_DEFAULT_MAX_PIXELS = 28 * 28 * 16384   # Qwen2-VL image processor default (preprocessor_config.json)
TYPICAL_VOCAB = 32_000                          # vocabulary of Llama-2 / Mistral-era models
SCORE_DECIMALS = 3                              # scores are rounded to this many decimals
BILLION = 1e9                                   # parameters are counted in billions in model names
MILLION = 1e6                                   # parameters are counted in millions in reasons
# Vocabularies of at least 100k entries in the model registry: logits over these dominate a step (Llama-3 128,256,
# Qwen2 151,936/152,064, Gemma 256,000, ...). Powers of two (131,072, 262,144) and 5 x 2^15 are left out: any round
# request divides by them, so a match says nothing.
LARGE_VOCABS = (102400, 125696, 128256, 129280, 151936, 152064, 256000)
# How much of a log line or list a reason quotes.
QUOTE_SHORT, QUOTE_MEDIUM, QUOTE_SAID, QUOTE_LONG = 60, 80, 90, 120
DEEPSPEED_SUB_GROUP_SIZE = 1_000_000_000       # DeepSpeed zero_optimization.sub_group_size default (ZeRO-3)
LISTED_ITEMS = 4                                # processes / GPU models named in one reason
CITED_REPORTS = 3                               # labelled reports cited by source in one reason


@dataclass(frozen=True)
class Weights:
    """The table a ranking uses: points per rule, the thresholds the rules test against, and the map that calibrates
    the leading cause's probability."""

    points: Mapping[str, float] = field(default_factory=lambda: WEIGHTS)
    thresholds: Thresholds = field(default_factory=lambda: THRESHOLDS)
    confidence: Knots = field(default_factory=lambda: CONFIDENCE_MAP)

    def replace(self, points: Mapping[str, float] | None = None, thresholds: Mapping[str, float] | None = None,
                confidence: Knots | None = None) -> Weights:
        """A copy with some entries changed (for fitting); a name the table does not have raises KeyError."""
        return Weights(points=_merged(self.points, points or {}), thresholds=_merged(self.thresholds, thresholds or {}),
                       confidence=self.confidence if confidence is None else confidence)


def _merged(base: Mapping[str, float], changes: Mapping[str, float]) -> Mapping[str, float]:
    unknown = sorted(set(changes) - set(base))
    if unknown:
        raise KeyError(f"not in the weights table: {', '.join(unknown)}")
    return MappingProxyType({**base, **changes})


DEFAULT_WEIGHTS = Weights()
