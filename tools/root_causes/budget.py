"""The calculator's breakdown against the GPU budget: model states, then the activations that drive the peak."""

from __future__ import annotations

from ..labels import Label
from ..memory.activations import score_elements
from ..memory.estimator import bytes_per_weight, trained_bytes
from ..memory.schema import MemoryEstimate
from ..report import TORCH_ALLOCATOR_KINDS, OOMReport
from ..training_setup import ADAPTER_METHODS, PAIRED_STAGES, TrainingSetup
from ..units import format_bytes
from .facts import observed
from .signals import Signal, discount, support
from .weights import BILLION, EAGER_KEPT_BYTES, FP32_BYTES, FULL_SHARDING, MILLION, THRESHOLDS, Thresholds


def estimate_vs_budget(report: OOMReport, setup: TrainingSetup | None, estimate: MemoryEstimate | None,
                       explained: bool = False, th: Thresholds = THRESHOLDS, split: int = 1) -> list[Signal]:
    """Model states and activations from the calculator's breakdown against the per-GPU budget; `explained` says the
    failing request equals one of the setup's tensors (request_size.request_explained). `split` is the number of GPUs
    one process spreads the model over (a device_map): evenly split, each holds 1/split of the weights and states,
    and none holds a replica."""
    out: list[Signal] = []
    if setup is not None and estimate is None:
        out += _stated_knobs_unsized(report, setup, th) + _stated_size_weights(report, setup, th)
    if setup is None or estimate is None:
        return out
    budget = estimate.budget_bytes or (report.gpu_total_bytes and int(report.gpu_total_bytes * th["default_budget_share"]))
    if estimate.peak_bytes <= 0:
        return out
    if not budget:
        # The GPU is unknown, but a training step ran out of it: the knobs behind a predicted peak that is mostly
        # activations are the suspects, whatever the card (the shares do not depend on its size).
        acts = estimate.breakdown.step_activations()
        if report.kind in TORCH_ALLOCATOR_KINDS and report.phase in ("forward", "backward", "unknown") and \
                estimate.workload == "train" and acts >= th["activations_share"] * estimate.peak_bytes:
            out += _activation_drivers(setup, estimate, None, acts, th)
        return out
    bd = estimate.breakdown
    weights = bd.all_weights() // split
    held = (report.torch_allocated_bytes or 0) + (report.requested_bytes or 0) if report.torch_allocated_bytes else None
    past_loading = report.phase in ("forward", "backward", "optimizer_step", "evaluation", "generation") and \
        report.framework != "vllm"
    if held is not None and weights > th["weights_over_held"] * held and past_loading:
        # Past loading, the log shows less memory in use than the calculator's weights alone: its assumed dtype or
        # method is wrong for this run, so its breakdown is no evidence here.
        return out
    out += _model_states(setup, estimate, budget, th, split)
    peak = estimate.peak_bytes
    acts = bd.step_activations()
    over = peak > budget
    if over and acts > 0 and acts >= th["activations_share"] * peak:
        out += _activation_drivers(setup, estimate, budget, acts, th)
    elif not over and not explained and report.phase in ("forward", "backward", "unknown", "optimizer_step"):
        out += _predicted_fit_ran_out(setup, peak, budget)
    if estimate.host_fits is False:
        out.append(support(Label.offload_host_ram, "estimate_host_unfit",
                           f"host RAM needs of {format_bytes(estimate.host_bytes)} exceed what the host has"))
    return out


def _stated_knobs_unsized(report: OOMReport, setup: TrainingSetup, th: Thresholds) -> list[Signal]:
    """No model to size, but the run states an extreme knob of a training step: activations grow linearly with the
    micro-batch and at least linearly with the sequence (attention scores and fp32 logits with it), so a stated long
    cutoff or large micro-batch is the first suspect, as a calculator would find it once the model is known; and
    without checkpointing every layer's activations stay alive until backward."""
    if report.phase not in ("forward", "backward", "unknown"):
        return []
    out: list[Signal] = []
    if not setup.gradient_checkpointing and observed(setup, "gradient_checkpointing"):
        out.append(support(Label.no_gradient_checkpointing, "gc_off_stated",
                           "gradient checkpointing is off (stated): every layer's activations are "
                           "kept for backward, the largest share of a training step"))
    if setup.workload != "train":
        return out
    seq, batch = setup.seq_len, setup.micro_batch
    if observed(setup, "seq_len") and seq >= th["longer_cutoff_tokens"]:
        reason = (f"the model is not known, so the step cannot be sized, but the stated cutoff of {seq} tokens is long: "
                  "activations, attention and the logits all grow with it")
        out.append(support(Label.seq_len_too_long, "stated_cutoff_unsized", reason))
        if seq >= th["very_long_cutoff_tokens"]:
            out.append(support(Label.seq_len_too_long, "stated_cutoff_very_long_unsized", reason))
    if observed(setup, "micro_batch") and batch >= th["batch_scale_cap"]:
        out.append(support(Label.batch_too_large, "stated_batch_unsized",
                           f"the model is not known, so the step cannot be sized, but the stated micro-batch of {batch} "
                           f"is large: every activation is {batch} times that of one sample"))
    return out


def _split_unknown(setup: TrainingSetup, workload: str, split: int) -> bool:
    """Inference on several GPUs with no split stated (no tensor parallelism, device map, ZeRO-3 or FSDP): each process
    may load its own copy, or the engine may split one. (A training run's data-parallel ranks each keep a copy unless
    ZeRO-3 or FSDP shards it.)"""
    return workload != "train" and setup.num_gpus > 1 and split == 1 and setup.tensor_parallel_size == 1


def _split_unknown_signal(copy: int, budget: int, gpus: int) -> Signal:
    return support(Label.weights_exceed_gpu, "weights_over_one_gpu_split_unknown",
                   f"a full copy of the weights takes {format_bytes(copy)}, above one GPU's {format_bytes(budget)} "
                   f"budget, while split over the {gpus} GPUs it would fit: it runs out if each process loads its own "
                   "copy (no tensor parallelism or device map)")


def _weights_fit(setup: TrainingSetup, weights: int, params: int, split: int, budget: int,
                 th: Thresholds) -> list[Signal]:
    """weights_exceed_gpu discounted when the weights, at the widest width the setup leaves open (fp32, 4 B a
    parameter, from_pretrained's default without a torch_dtype, unless a precision or a quantization was stated), fill
    at most states_ramp_start of the budget."""
    widest = weights if setup.quantization_bit or observed(setup, "precision") else max(weights, params * FP32_BYTES // split)
    if widest > th["states_ramp_start"] * budget:
        return []
    return [discount(Label.weights_exceed_gpu, "weights_fit_with_room",
                     f"but the weights take at most {format_bytes(widest)} per GPU, well inside the "
                     f"{format_bytes(budget)} budget: they alone do not fill the card")]


def _fill(used: int, budget: int, th: Thresholds) -> float:
    """How far into the states ramp a share of the budget lies: 0 at the ramp's start, 1 at its end."""
    return min(1.0, max(0.0, (used / budget - th["states_ramp_start"]) / th["states_ramp_span"]))


def _stated_weight_terms(setup: TrainingSetup) -> tuple[int, float, int] | None:
    """(parameters, bytes a weight, GPUs one copy is split over) for a model known only by the size its name states: the
    calculator's bytes for the checkpoint's quantization (4-bit, 8-bit/FP8), else 16-bit (the usual load; fp32 only
    when stated), split over the GPUs that shard one copy (tensor parallelism, ZeRO-3, FSDP)."""
    if not setup.stated_params:
        return None
    per = bytes_per_weight(setup.quantization_bit, setup.precision == "fp32" and observed(setup, "precision"))
    split = setup.tensor_parallel_size if setup.tensor_parallel_size > 1 else \
        setup.num_gpus if setup.sharding_stage == FULL_SHARDING else 1
    return setup.stated_params, per, split


def _stated_size_weights(report: OOMReport, setup: TrainingSetup, th: Thresholds) -> list[Signal]:
    """No architecture to size, but the model's name states its size: its weights alone against the card, the
    calculator's first check (weights, then states, then activations), with the same reading of several GPUs as for
    a sized model. A full fine-tune's states are sized too: what a trained parameter keeps does not depend on the
    architecture (estimator.trained_bytes). Its activations do, and are left out."""
    terms = _stated_weight_terms(setup)
    cap = report.gpu_total_bytes or (setup.gpu.memory_bytes if setup.gpu is not None else 0)
    if terms is None or not cap:
        return []
    params, per, split = terms
    weights = int(params * per / split)
    budget = int(cap * th["default_budget_share"])
    full_ft = setup.workload == "train" and setup.method == "full"
    fit = _weights_fit(setup, weights, params, split, budget, th)
    if fit:
        return fit + (_stated_size_states(setup, params, budget, th) if full_ft else [])
    several = _split_unknown(setup, setup.workload, split)
    arith = (f"{params / BILLION:g}B parameters x {per:g} B" + (f" / {split} GPUs" if split > 1 else "")
             + f" = {format_bytes(weights)}" + (" for a whole copy" if several else " per GPU"))
    if weights > budget and several and weights <= budget * setup.num_gpus:
        return [_split_unknown_signal(weights, budget, setup.num_gpus)]
    if weights > budget:
        spread = (f", and {format_bytes(weights // setup.num_gpus)} per GPU even split over all {setup.num_gpus} GPUs"
                  if several else "")   # (a copy the run may split: over all its GPUs it is still too large)
        out = [support(Label.weights_exceed_gpu, "weights_over_budget",
                       f"the weights alone take {arith}, above the {format_bytes(budget)} budget{spread}")]
        if full_ft:
            out.append(support(Label.full_ft_model_states, "full_ft_weights_over_budget",
                               f"full fine-tuning: even the weights ({arith}) exceed the {format_bytes(budget)} budget "
                               "before gradients and optimizer states",
                               1.0 if observed(setup, "method") else th["assumed_method_scale"]))
        return out
    if full_ft:
        return _stated_size_states(setup, params, budget, th)
    if weights > th["states_ramp_start"] * budget:
        # as for a sized model's states: the fuller the card is with weights, the more they are the cause
        return [support(Label.weights_exceed_gpu, "states_fill_budget",
                        f"the weights alone take {arith}, {weights / budget:.0%} of the {format_bytes(budget)} budget",
                        1 + _fill(weights, budget, th))]
    return []


def _stated_size_states(setup: TrainingSetup, params: int, budget: int, th: Thresholds) -> list[Signal]:
    """Full fine-tuning of a model known by its stated size: weights, gradients and optimizer states per trained
    parameter, sharded as ZeRO or FSDP shard them, against the budget, read as for a sized model's states."""
    per = trained_bytes(setup)
    zero, gpus = setup.sharding_stage, setup.num_gpus
    states = per.per_gpu(params, zero, gpus)
    sharded = f" under ZeRO-{zero} over {gpus} GPUs" if zero and gpus > 1 else ""
    arith = (f"{params / BILLION:g}B parameters x {per.total:g} B ({per.formula()}){sharded} = "
             f"{format_bytes(states)} per GPU")
    conf = 1.0 if observed(setup, "method") else th["assumed_method_scale"]
    if states > budget:
        out = [support(Label.full_ft_model_states, "full_ft_states_over_budget",
                       f"full fine-tuning keeps weights, gradients and optimizer states: {arith}, above the "
                       f"{format_bytes(budget)} budget before any activation", conf)]
        everything = per.per_gpu(params, FULL_SHARDING, gpus)
        if gpus > 1 and zero < FULL_SHARDING and everything <= th["states_ramp_start"] * budget:
            out.append(support(Label.zero_stage_insufficient, "zero3_would_fit",
                               f"sharded over the {gpus} GPUs (ZeRO-3) the same states would take "
                               f"{format_bytes(everything)} per GPU, leaving room for activations", conf))
        return out
    if states > th["states_ramp_start"] * budget:
        return [support(Label.full_ft_model_states, "states_fill_budget",
                        f"model states already take {arith}, {states / budget:.0%} of the {format_bytes(budget)} "
                        "budget before any activation", (1 + _fill(states, budget, th)) * conf)]
    return []


def _model_states(setup: TrainingSetup, estimate: MemoryEstimate, budget: int, th: Thresholds,
                  split: int = 1) -> list[Signal]:
    """Weights, then weights + gradients + optimizer states, against the budget; ZeRO and MoE where they decide.
    Under a device_map `split` over several GPUs each holds its share, and none a replica."""
    out: list[Signal] = []
    if estimate.workload == "serve":
        return serving_signals(estimate, budget)
    bd = estimate.breakdown
    weights = bd.all_weights() // split
    states = bd.model_states() // split
    acts = bd.step_activations()
    over = estimate.peak_bytes > budget
    gib = format_bytes
    # Evidence from the calculator is only as good as the setup it sized: scale it down when the method is assumed.
    conf = 1.0 if observed(setup, "method") else th["assumed_method_scale"]
    # inference keeps no gradients or optimizer states: full fine-tuning's states are a cause of training runs only
    training = estimate.workload == "train"
    full_method = setup.method == "full" and training
    full_ft = full_method and observed(setup, "method")
    unsharded = setup.num_gpus > 1 and setup.zero_stage < FULL_SHARDING and not setup.fsdp and split == 1
    loaded = weights_in_16_bit(setup, estimate) // split
    several = _split_unknown(setup, estimate.workload, split)   # inference on several GPUs, split not stated
    out += _weights_fit(setup, weights, estimate.n_params, split, budget, th)
    if weights > budget and loaded <= budget:
        # Only an assumed width makes the weights this large: loaded in 16-bit they fit, so they are no evidence that
        # the weights exceed the GPU. Under assumed full fine-tuning the fp32 states are the suspect.
        if full_method:
            out.append(support(Label.full_ft_model_states, "full_ft_weights_over_budget",
                               f"if this is full fine-tuning, its fp32 weights alone take {gib(weights)} per GPU, "
                               f"above the {gib(budget)} budget (in 16-bit, {gib(loaded)})", conf))
    elif weights > budget and several and loaded <= budget * setup.num_gpus:
        # a copy over one card is evidence only as far as each process loading its own goes
        out.append(_split_unknown_signal(loaded, budget, setup.num_gpus))
    elif weights > budget:
        # The weights' size depends on the model, dtype and sharding, not on the training method: no discount for an
        # assumed method.
        # a copy the run may split over its GPUs is shown whole, then split: over all of them it is still too large
        where = " for a whole copy" if several else " per GPU"
        spread = (f" even split over the {split} GPUs of the device map" if split > 1 else
                  f", {gib(loaded // setup.num_gpus)} per GPU even split over all {setup.num_gpus} GPUs" if several else "")
        # an assumed width is shown at 16 bits, the usual load, with the calculator's wider size beside it
        size = (f"{gib(weights)}{where}" if loaded == weights
                else f"{gib(loaded)}{where} in 16-bit ({gib(weights)} at the assumed width)")
        out.append(support(Label.weights_exceed_gpu, "weights_over_budget_full_ft" if full_ft else "weights_over_budget",
                           f"the weights alone take {size}{spread}, above the {gib(budget)} budget"))
        if full_method:
            # assumed full fine-tuning (scaled down): the states it would add are as much the suspect as the weights
            out.append(support(Label.full_ft_model_states, "full_ft_weights_over_budget",
                               f"full fine-tuning: even the weights ({gib(weights)} per GPU) exceed the "
                               f"{gib(budget)} budget before gradients and optimizer states", conf))
        if unsharded:
            out.append(support(Label.zero_stage_insufficient, "weights_replicated",
                               f"{setup.num_gpus} GPUs each keep a full copy of the weights under "
                               f"ZeRO-{setup.zero_stage}; ZeRO-3 would shard them", conf))
        if setup.model is not None and setup.model.is_moe:
            out.append(support(Label.moe_memory, "moe_experts_resident",
                               f"{setup.model.num_experts} experts per MoE layer are all resident although only "
                               f"{setup.model.num_experts_per_tok} are active per token", conf))
    elif states > budget:
        # ZeRO-3 / FSDP divide weights, gradients and optimizer states alike over the data-parallel GPUs.
        if unsharded and states / setup.num_gpus + acts < budget:
            # Sharding over the GPUs already in the run would make it fit: that is the actionable cause (ZeRO paper).
            out.append(support(Label.zero_stage_insufficient, "zero3_would_fit",
                               f"sharded over the {setup.num_gpus} GPUs (ZeRO-3) the {gib(states)} of model "
                               f"states would take {gib(states // setup.num_gpus)} per GPU and fit", conf))
        if full_method:
            out.append(support(Label.full_ft_model_states, "full_ft_states_over_budget",
                               f"full fine-tuning keeps weights, gradients and optimizer states: "
                               f"{gib(states)} per GPU against a {gib(budget)} budget", conf))
        else:
            out.append(support(Label.weights_exceed_gpu, "states_over_budget",
                               f"model states take {gib(states)} per GPU against a {gib(budget)} budget", conf))
        if unsharded:
            out.append(support(Label.zero_stage_insufficient, "states_unsharded",
                               f"ZeRO-{setup.zero_stage} on {setup.num_gpus} GPUs leaves {gib(states)} of "
                               "states on each GPU; ZeRO-3 shards all of them", conf))
    elif states > th["states_ramp_start"] * budget and over:
        label = Label.full_ft_model_states if full_method else Label.weights_exceed_gpu
        # the fuller the card is with states before any activation, the more the states are the cause:
        # points = weight x (1 + fill), fill rising from 0 at the ramp's start to 1 at its end
        out.append(support(label, "states_fill_budget",
                           f"model states already take {gib(states)} of the {gib(budget)} budget ({states / budget:.0%})",
                           (1 + _fill(states, budget, th)) * conf))
        if setup.num_gpus > 1 and setup.zero_stage < 2 and setup.method == "full":
            out.append(support(Label.zero_stage_insufficient, "states_unsharded_zero01",
                               f"ZeRO-{setup.zero_stage}: gradients and optimizer states are not sharded "
                               f"over the {setup.num_gpus} GPUs", conf))
    return out


def weights_in_16_bit(setup: TrainingSetup, estimate: MemoryEstimate) -> int:
    """The weights at 16 bits a parameter when their width rests on an assumption: an assumed fp32 run, or assumed full
    fine-tuning (which keeps its trainable weights in fp32 under autocast), sizes them at up to 4 B a parameter, while a
    16-bit load, the usual way to load a model, takes 2 B. Stated method and precision keep the calculator's size."""
    weights = estimate.breakdown.all_weights()
    if observed(setup, "method") and observed(setup, "precision") or estimate.n_params <= 0:
        return weights
    per_param = weights / estimate.n_params
    return int(weights * 2 / per_param) if per_param > 2 else weights


def serving_signals(estimate: MemoryEstimate, budget: int) -> list[Signal]:
    """A vLLM server (tools/memory/serve.py) has no training states: its weights fit the GPU or not, then its KV-cache
    pool holds one max_model_len sequence or not (vLLM's own start-up check)."""
    gib = format_bytes
    weights = estimate.breakdown.all_weights()
    if weights > budget:
        return [support(Label.weights_exceed_gpu, "weights_over_budget",
                        f"the weights alone take {gib(weights)} per GPU, above the {gib(budget)} budget")]
    z = estimate.serving
    if z is None or z.fits:
        return []
    return [support(Label.generation_kv_cache, "serve_kv_pool_short",
                    f"vLLM's KV-cache pool of {gib(max(z.kv_available, 0))} cannot hold one {z.max_model_len}-token "
                    f"sequence ({gib(z.kv_needed)} at {z.kv_bytes_per_token} B per token); the longest it holds is "
                    f"{z.max_len_that_fits} tokens")]


def _predicted_fit_ran_out(setup: TrainingSetup, peak: int, budget: int) -> list[Signal]:
    """The calculator says the step fits, yet it ran out (and the request is no known tensor): growth, fragmentation,
    or eager attention over a longer sample than the one sized."""
    gib = format_bytes
    out = [support(Label.memory_growth, "predicted_fit_ran_out",
                   f"the calculator predicts a {gib(peak)} peak that fits the {gib(budget)} budget, yet the "
                   "run ran out: something grows or stays alive beyond one step"),
           support(Label.fragmentation, "predicted_fit_fragmentation",
                   f"predicted {gib(peak)} fits {gib(budget)}: the allocator may have lost the difference to fragmentation")]
    if setup.attn_implementation == "eager":
        # The estimate sizes the configured length; eager scores grow with the square of the longest sample drawn,
        # plus fp32 softmax copies: the first setting to change when a predicted fit still runs out.
        prov = setup.provenance.get("attn_implementation")
        sized = ""
        if setup.model is not None:
            rows = setup.micro_batch * (2 if setup.stage in PAIRED_STAGES else 1)   # chosen and rejected together
            sized = f" ({gib(EAGER_KEPT_BYTES * score_elements(setup.model, rows, setup.seq_len))} per layer at {setup.seq_len} tokens)"
        out.append(support(Label.eager_attention, "predicted_fit_eager",
                           f"the run uses eager attention ({prov.detail if prov else 'configured'}): its "
                           f"b x heads x s x s scores{sized} grow with the square of the longest sample; "
                           "flash attention removes them"))
    return out


def _activation_drivers(setup: TrainingSetup, estimate: MemoryEstimate, budget: int | None, acts: int,
                        th: Thresholds) -> list[Signal]:
    """Over budget with activations a large share of the peak: which knob (batch, length, checkpointing, kernel) drives
    them. `budget` None: the GPU is unknown, and the run ran out of it."""
    out: list[Signal] = []
    bd = estimate.breakdown
    gib = format_bytes
    peak = estimate.peak_bytes
    base = (f"activations take {gib(acts)} of the {gib(peak)} predicted peak "
            + (f"(budget {gib(budget)})" if budget else "(the GPU that ran out is not named)"))
    b, seq = setup.micro_batch, setup.seq_len
    mmb, msl = estimate.max_micro_batch, estimate.max_seq_len
    # A knob the run only assumed (the framework's default) is weaker evidence than a stated one: its own rule, fitted
    # on its own (an HF Trainer default of micro-batch 8 says little about what the user ran).
    batch_rule = "batch_over_budget" if observed(setup, "micro_batch") else "batch_over_budget_assumed"
    if b > 1:
        if mmb is not None and 1 <= mmb < b:
            reason = f"{base}; micro-batch {b} is above the largest that fits ({mmb})"
            out += [support(Label.batch_too_large, batch_rule, reason),
                    support(Label.batch_too_large, "batch_above_largest_fit", reason)]
        else:
            out.append(support(Label.batch_too_large, batch_rule, f"{base} at micro-batch {b}"))
    no_batch_fits = mmb is not None and mmb < 1
    if seq >= th["long_cutoff_tokens"] or b == 1 or no_batch_fits:
        reason = f"{base}; cutoff {seq} tokens"
        if msl:
            reason += f", the longest that fits at micro-batch {b} is {msl}"
        out.append(support(Label.seq_len_too_long,
                           "cutoff_over_budget" if observed(setup, "seq_len") else "cutoff_over_budget_assumed", reason))
        if seq >= th["very_long_cutoff_tokens"]:
            out.append(support(Label.seq_len_too_long, "cutoff_very_long", reason))
        elif seq >= th["longer_cutoff_tokens"]:
            out.append(support(Label.seq_len_too_long, "cutoff_longer", reason))
        if b == 1 or no_batch_fits:
            out.append(support(Label.seq_len_too_long, "cutoff_at_smallest_batch", reason))
    layer_acts = bd.get("activations")
    if not setup.gradient_checkpointing and layer_acts >= th["layer_activations_share"] * peak:
        # Checkpointing removes most of this share at once, whatever the batch and length: when it is most of the
        # peak and the config says it is off, it is the first lever (the batch and length ones trade data away).
        reason = (f"gradient checkpointing is off: {gib(layer_acts)} of per-layer activations "
                  f"({layer_acts / peak:.0%} of the peak) are kept")
        out.append(support(Label.no_gradient_checkpointing, "gc_off_over_budget", reason))
        if layer_acts >= th["layer_activations_dominant_share"] * peak:
            stated = observed(setup, "gradient_checkpointing")
            out.append(support(Label.no_gradient_checkpointing, "gc_off_dominant_stated" if stated else "gc_off_dominant",
                               reason))
    scores = bd.get("attention_scores")
    if setup.attn_implementation == "eager" and scores >= th["attention_scores_share"] * peak:
        out.append(support(Label.eager_attention, "eager_scores_over_budget",
                           f"eager attention materialises {gib(scores)} of b x heads x s x s scores"))
    logits = bd.get("logits_and_loss")
    if logits >= th["logits_share"] * peak or (logits and logits == max(c.bytes for c in bd.components)):
        out.append(support(Label.logits_large_vocab, "logits_over_budget",
                           f"the logits and fp32 loss take {gib(logits)} ({logits / peak:.0%} of the peak)"))
    vis = bd.get("vision_activations")
    if vis >= th["vision_share"] * peak:
        out.append(support(Label.vision_tokens, "vision_over_budget",
                           f"the vision tower's activations take {gib(vis)} ({vis / peak:.0%} of the peak)"))
    return out


def fully_trained_embeddings(setup: TrainingSetup | None, th: Thresholds = THRESHOLDS) -> list[Signal]:
    """embed_tokens / lm_head among the LoRA targets: trained whole (modules_to_save), with fp32 copies, gradients and
    Adam states of vocab x hidden parameters each; a large vocabulary makes them the biggest trainable tensors."""
    if setup is None or setup.model is None or setup.method not in ADAPTER_METHODS:
        return []
    from ..memory.estimator import fully_trained_embedding_params
    from ..memory.params import count_params

    n = fully_trained_embedding_params(count_params(setup.model), setup.lora_targets)
    if not n:
        return []
    out = [support(Label.full_ft_model_states, "embeddings_trained_in_full",
                   f"the LoRA targets include embed_tokens / lm_head: {n / MILLION:,.0f}M parameters train in "
                   "full (modules_to_save) with fp32 copies, gradients and Adam states (~16 B each)")]
    if setup.model.vocab_size >= th["embeddings_large_vocab"]:
        out.append(support(Label.logits_large_vocab, "embeddings_large_vocab",
                           f"a {setup.model.vocab_size:,}-token vocabulary: both the trained embedding matrices "
                           "and the logits scale with it"))
    return out
