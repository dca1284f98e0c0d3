"""Causes read off the calculator's breakdown alone, when there is no log (`ask-oom fix` without --log): which
component pushes the predicted peak over the budget, and which setting makes it so.

Each signal's value is the component's share of the peak, so the ranking follows the shares."""

from __future__ import annotations

from ..labels import Label
from ..memory.estimator import effective_attention
from ..memory.schema import MemoryEstimate
from ..training_setup import TrainingSetup
from ..units import format_bytes
from .signals import Signal, support
from .weights import FULL_SHARDING, THRESHOLDS, Thresholds


def breakdown_signals(setup: TrainingSetup | None, estimate: MemoryEstimate | None,
                      th: Thresholds = THRESHOLDS) -> list[Signal]:
    """The components of a predicted peak that does not fit (or host RAM that does not), as shares of the peak.
    Nothing when the estimate fits on the GPU and the host: there is no cause to rank."""
    if setup is None or estimate is None or (estimate.fits and estimate.host_fits is not False):
        return []
    budget = estimate.budget_bytes or estimate.peak_bytes
    if estimate.workload == "serve":
        from .budget import serving_signals

        return serving_signals(estimate, budget)
    parts = estimate.breakdown.as_dict()
    peak = max(estimate.peak_bytes, 1)
    out: list[Signal] = []

    def share(n: int) -> float:
        return min(n / peak, 1.0)

    weights, states = parts.get("weights", 0), estimate.breakdown.model_states()
    scores, logits = parts.get("attention_scores", 0), parts.get("logits_and_loss", 0)
    vision = parts.get("vision_activations", 0)
    acts = estimate.breakdown.step_activations()
    if weights > budget:
        out.append(support(Label.weights_exceed_gpu, "breakdown_weights_over_budget",
                           f"weights alone are {format_bytes(weights)} against a {format_bytes(budget)} budget"))
    if setup.method in ("full", "freeze") and states > th["breakdown_states_share"] * budget:
        out.append(support(Label.full_ft_model_states, "breakdown_model_states",
                           f"weights + gradients + optimizer states: {format_bytes(states)}", share(states)))
        if setup.num_gpus > 1 and setup.zero_stage < FULL_SHARDING:
            out.append(support(Label.zero_stage_insufficient, "breakdown_states_unsharded",
                               f"ZeRO-{setup.zero_stage} over {setup.num_gpus} GPUs leaves {format_bytes(states)} per GPU",
                               share(states)))
    if scores > th["breakdown_scores_share"] * peak and effective_attention(setup) == "eager":
        out.append(support(Label.eager_attention, "breakdown_eager_scores",
                           f"eager attention scores: {format_bytes(scores)}", share(scores)))
    if logits > th["breakdown_logits_share"] * peak:
        out.append(support(Label.logits_large_vocab, "breakdown_logits", f"logits and loss: {format_bytes(logits)}",
                           share(logits)))
    if vision > th["breakdown_vision_share"] * peak:
        out.append(support(Label.vision_tokens, "breakdown_vision", f"vision activations: {format_bytes(vision)}",
                           share(vision)))
    if acts > th["breakdown_activations_share"] * peak:
        out += _activation_knobs(setup, acts, share(acts), th)
    if estimate.host_fits is False:
        out.append(support(Label.offload_host_ram, "breakdown_host_unfit",
                           f"host RAM needed {format_bytes(estimate.host_bytes)}"))
    return out


def _activation_knobs(setup: TrainingSetup, acts: int, acts_share: float, th: Thresholds) -> list[Signal]:
    """Activations a large share of the peak: checkpointing off, then the length or the micro-batch that drives them."""
    out: list[Signal] = []
    if not setup.gradient_checkpointing:
        out.append(support(Label.no_gradient_checkpointing, "breakdown_gc_off",
                           f"activations {format_bytes(acts)} with gradient checkpointing off", acts_share))
    if setup.seq_len >= th["breakdown_long_cutoff_tokens"]:
        out.append(support(Label.seq_len_too_long, "breakdown_long_cutoff",
                           f"{setup.seq_len} tokens per sample drive {format_bytes(acts)} of activations", acts_share))
    elif setup.micro_batch > 1:
        out.append(support(Label.batch_too_large, "breakdown_batch",
                           f"micro-batch {setup.micro_batch} drives {format_bytes(acts)} of activations", acts_share))
    else:
        out.append(support(Label.seq_len_too_long, "breakdown_cutoff",
                           f"{setup.seq_len} tokens per sample drive {format_bytes(acts)} of activations", acts_share))
    return out
