"""The calculator's breakdown against the GPU budget: model states, then the activations that drive the peak."""

from __future__ import annotations

from ..memory.activations import score_elements
from ..memory.schema import MemoryEstimate
from ..report import OOMReport
from ..training_setup import PAIRED_STAGES, TrainingSetup
from ..units import format_bytes
from .facts import observed
from .scores import Scores

EAGER_KEPT_BYTES = 6   # per score element kept for backward: the fp32 softmax output and its 16-bit copy


def estimate_vs_budget(report: OOMReport, setup: TrainingSetup | None, estimate: MemoryEstimate | None, s: Scores) -> None:
    """Model states and activations from the calculator's breakdown against the per-GPU budget."""
    if setup is not None and estimate is None and not setup.gradient_checkpointing and \
            observed(setup, "gradient_checkpointing") and report.phase in ("forward", "backward", "unknown"):
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
    states_conf = 1.0 if observed(setup, "method") else 0.5
    add = lambda label, pts, why: s.add(label, pts * states_conf, why)  # noqa: E731
    full_ft = setup.method == "full" and observed(setup, "method")
    held = (report.torch_allocated_bytes or 0) + (report.requested_bytes or 0) if report.torch_allocated_bytes else None
    past_loading = report.phase in ("forward", "backward", "optimizer_step", "evaluation", "generation") and \
        report.framework != "vllm"
    if held is not None and weights > 1.1 * held and past_loading:
        # Past loading, the log shows less memory in use than the calculator's weights alone: its assumed dtype or
        # method is wrong for this run, so its breakdown is no evidence here.
        return
    if weights > budget:
        # The weights' size depends on the model, dtype and sharding, not on the training method: no discount for an
        # assumed method.
        s.add("weights_exceed_gpu", 4 if full_ft else 6, f"the weights alone take {gib(weights)} per GPU, above the {gib(budget)} budget")
        if full_ft or setup.method == "full":
            # assumed full fine-tuning (add() halves it): the states it would add are as much the suspect as the weights
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
        # the fuller the card is with states before any activation, the more the states are the cause
        add(label, 2 + 2 * min(1.0, max(0.0, (states / budget - 0.6) / 0.4)),
            f"model states already take {gib(states)} of the {gib(budget)} budget ({states / budget:.0%})")
        if setup.num_gpus > 1 and setup.zero_stage < 2 and setup.method == "full":
            add("zero_stage_insufficient", 2, f"ZeRO-{setup.zero_stage}: gradients and optimizer states are not sharded "
                                                f"over the {setup.num_gpus} GPUs")
    if over and acts > 0 and acts >= 0.35 * peak:
        _activation_drivers(setup, estimate, budget, acts, s)
    elif not over and not s.explained and report.phase in ("forward", "backward", "unknown", "optimizer_step"):
        s.add("memory_growth", 1.0, f"the calculator predicts a {gib(peak)} peak that fits the {gib(budget)} budget, yet the "
                                    "run ran out: something grows or stays alive beyond one step")
        s.add("fragmentation", 0.5, f"predicted {gib(peak)} fits {gib(budget)}: the allocator may have lost the difference to fragmentation")
        if setup.attn_implementation == "eager":
            # The estimate sizes the configured length; eager scores grow with the square of the longest sample drawn,
            # plus fp32 softmax copies: the first setting to change when a predicted fit still runs out.
            prov = setup.provenance.get("attn_implementation")
            sized = ""
            if setup.model is not None:
                rows = setup.micro_batch * (2 if setup.stage in PAIRED_STAGES else 1)   # chosen and rejected together
                sized = f" ({gib(EAGER_KEPT_BYTES * score_elements(setup.model, rows, setup.seq_len))} per layer at {setup.seq_len} tokens)"
            s.add("eager_attention", 1.5, f"the run uses eager attention ({prov.detail if prov else 'configured'}): its "
                                          f"b x heads x s x s scores{sized} grow with the square of the longest sample; "
                                          "flash attention removes them")
    if estimate.host_fits is False:
        s.add("offload_host_ram", 2, f"host RAM needs of {gib(estimate.host_bytes)} exceed what the host has")


def _activation_drivers(setup: TrainingSetup, estimate: MemoryEstimate, budget: int, acts: int, s: Scores) -> None:
    """Over budget with activations a large share of the peak: which knob (batch, length, checkpointing, kernel) drives them."""
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
    layer_acts = bd.get("activations")
    if not setup.gradient_checkpointing and layer_acts >= 0.25 * peak:
        # Checkpointing removes most of this share at once, whatever the batch and length: when it is most of the
        # peak and the config says it is off, it is the first lever (the batch and length ones trade data away).
        pts = 2.5 + ((3.0 if observed(setup, "gradient_checkpointing") else 1.0) if layer_acts >= 0.5 * peak else 0.0)
        s.add("no_gradient_checkpointing", pts, f"gradient checkpointing is off: {gib(layer_acts)} of per-layer activations "
                                                f"({layer_acts / peak:.0%} of the peak) are kept")
    scores = bd.get("attention_scores")
    if setup.attn_implementation == "eager" and scores >= 0.15 * peak:
        s.add("eager_attention", 3.5, f"eager attention materialises {gib(scores)} of b x heads x s x s scores")
    logits = bd.get("logits_and_loss")
    if logits >= 0.25 * peak or (logits and logits == max(c.bytes for c in bd.components)):
        s.add("logits_large_vocab", 3, f"the logits and fp32 loss take {gib(logits)} ({logits / peak:.0%} of the peak)")
    vis = bd.get("vision_activations")
    if vis >= 0.2 * peak:
        s.add("vision_tokens", 3, f"the vision tower's activations take {gib(vis)} ({vis / peak:.0%} of the peak)")


def fully_trained_embeddings(setup: TrainingSetup | None, s: Scores) -> None:
    """embed_tokens / lm_head among the LoRA targets: trained whole (modules_to_save), with fp32 copies, gradients and
    Adam states of vocab x hidden parameters each; a large vocabulary makes them the biggest trainable tensors."""
    if setup is None or setup.model is None or setup.method not in ("lora", "qlora"):
        return
    from ..memory.estimator import fully_trained_embedding_params
    from ..memory.params import count_params

    n = fully_trained_embedding_params(count_params(setup.model), setup.lora_targets)
    if not n:
        return
    s.add("full_ft_model_states", 3.0, f"the LoRA targets include embed_tokens / lm_head: {n / 1e6:,.0f}M parameters train in "
                                       "full (modules_to_save) with fp32 copies, gradients and Adam states (~16 B each)")
    if setup.model.vocab_size >= 150_000:
        s.add("logits_large_vocab", 1.0, f"a {setup.model.vocab_size:,}-token vocabulary: both the trained embedding matrices "
                                         "and the logits scale with it")
