"""Predict the peak memory of one training (or evaluation) step on the busiest GPU.

The step is walked through its moments (end of forward, start of backward at the loss, late
backward, optimizer step, evaluation forward); each moment lists what is live and the largest is
the peak. Model states follow the ZeRO paper (Rajbhandari et al. 2020, sec. 3: 2+2+12 bytes/param
for mixed-precision Adam), activations follow activations.py, and every constant names its source.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..errors import InputError
from ..frameworks import HF_TRAINER_FRAMEWORKS
from ..gpus import CUDA_CONTEXT_BYTES
from ..training_setup import PAIRED_STAGES, TrainingSetup
from ..units import GiB
from .activations import (
    ActPolicy, attention_score_bytes, eager_backward_units, eager_forward_transient_units, eager_mask_bytes,
    final_norm_bytes, score_elements, layer_activation_bytes, liger_loss_bytes,
    lora_inputs_per_layer, model_activation_bytes,
    loss_peak_units, vision_block_bytes, vision_tokens, vision_transient_bytes,
)
from .arch_loader import KNOWN_TEXT_TYPES
from .params import ParamCount, count_params, lora_params, moe_layer_indices
from .schema import MemoryBreakdown, MemoryComponent, MemoryEstimate

Mode = Literal["train", "eval"]

# QLoRA (Dettmers et al. 2023, sec. 3): NF4 = 4 bits/param; blockwise absmax per 64 weights, and with
# double quantization those constants are 8-bit with one fp32 constant per 256 blocks: 0.127 bits/param.
NF4_BYTES = 0.5
NF4_DQ_CONST_BYTES = 1 / 64 + 4 / (64 * 256)
# LLM.int8 (Dettmers et al. 2022): int8 weights plus one fp32 scale per output row (negligible).
INT8_BYTES = 1.0
# bitsandbytes 8-bit Adam (Dettmers et al. 2021): two uint8 states + fp32 absmax per 2048-value block.
ADAM8BIT_BYTES = 2 + 2 * 4 / 2048
# DeepSpeed ZeRO-3 defaults (deepspeed/runtime/zero/config.py): stage3_prefetch_bucket_size 5e7,
# stage3_max_live_parameters 1e9 (elements, in the 16-bit param dtype).
ZERO3_PREFETCH = 50_000_000
ZERO3_MAX_LIVE = 1_000_000_000
# DeepSpeed ZeRO-1/2 default reduce_bucket_size / allgather_bucket_size: 5e8 elements (zero/config.py).
ZERO_BUCKET = 500_000_000
# DeepSpeed estimate_zero{2,3}_model_states_mem_needs: additional_buffer_factor for host (pinned) memory.
HOST_BUFFER_FACTOR = 1.5
# huggingface_hub / transformers save_pretrained default max_shard_size ("5GB").
LOAD_SHARD_BYTES = 5 * 10**9
# cuBLAS/cuBLASLt workspaces come from PyTorch's caching allocator (torch >= 2.3) on every GPU.
CUBLAS_WORKSPACE = 32 * 1024 * 1024


@dataclass
class _Plan:
    """Resolved per-parameter byte costs for one setup (independent of batch and sequence length)."""

    pc: ParamCount
    n_trainable: int
    weights: int
    gradients: int
    optimizer_states: int
    master_weights: int
    optimizer_temporaries: int
    zero_gathered: int
    ddp_buckets: int
    host: int
    host_parts: dict[str, int]
    policy: ActPolicy
    autocast_weight_copies: int  # bf16 copies of fp32 weights that autocast makes (all weights run through Linear)
    lm_head_copy: int  # autocast copy of the lm_head weight, saved for backward even with checkpointing
    vision_trainable: bool
    trainable_layers: int
    notes: list[str] = field(default_factory=list)


def _plan(setup: TrainingSetup, mode: Mode) -> _Plan:
    arch = setup.model
    assert arch is not None
    pc = count_params(arch)
    notes: list[str] = []
    N = setup.num_gpus
    zero = setup.zero_stage if not setup.fsdp else 3  # FSDP FULL_SHARD shards like ZeRO-3
    deepspeed = zero > 0
    pure = setup.precision == "pure_bf16"
    fp32 = setup.precision == "fp32"
    lm_total = pc.total - pc.vision - pc.projector
    vision_total = pc.vision
    proj_total = pc.projector
    half = 2

    # ---- which parameters train, and in which dtype they live
    lora_like = setup.method in ("lora", "qlora")
    vision_trainable = arch.vision is not None and not setup.freeze_vision_tower and not setup.train_mm_proj_only
    projector_trainable = arch.vision is not None and not setup.freeze_projector
    trainable_layers = arch.num_layers
    if mode == "eval":
        n_trainable = 0
    elif lora_like:
        n_trainable = lora_params(arch, setup.lora_rank, setup.lora_targets, vision=vision_trainable)
        full_rows = fully_trained_embedding_params(pc, setup.lora_targets)
        if full_rows:
            n_trainable += full_rows
            notes.append(f"embed_tokens / lm_head among the LoRA targets train in full (modules_to_save): "
                         f"{full_rows / 1e6:.0f}M parameters with fp32 copies, gradients and optimizer states")
    elif setup.method == "freeze":
        # LLaMA-Factory freeze tuning: freeze_trainable_layers (default 2) last layers train
        trainable_layers = min(2, arch.num_layers)
        per_layer = (pc.attention + pc.mlp_dense + pc.experts + pc.shared_experts + pc.routers) // max(arch.num_layers, 1)
        n_trainable = per_layer * trainable_layers
    elif setup.train_mm_proj_only:
        n_trainable = proj_total
    else:
        n_trainable = lm_total + (vision_total if vision_trainable else 0) + (proj_total if projector_trainable else 0)

    # trainable parameter dtype: fp32 master in the model (HF autocast; LLaMA-Factory upcasts trainable
    # params to fp32 unless pure_bf16: llamafactory/model/adapter.py), DeepSpeed keeps bf16 in the model
    # and its fp32 master copy inside the optimizer (ZeRO paper: 2 + 2 + 12 bytes/param).
    if fp32:
        train_b = 4
    elif pure or (deepspeed and not lora_like):
        train_b = 2
    else:
        train_b = 4
    frozen_b = 4 if fp32 else half

    # ---- weights resident on each GPU
    quantized = setup.method == "qlora" or (setup.quantization_bit in (4, 8) and setup.method != "full")
    if quantized:
        bits = setup.quantization_bit or 4
        q_params = pc.linear_weights
        per = (NF4_BYTES + NF4_DQ_CONST_BYTES) if bits == 4 else INT8_BYTES
        # embeddings, lm_head, norms, biases stay bf16 (bitsandbytes skips lm_head); vision tower kept 16-bit
        weights = int(q_params * per) + (pc.total - q_params) * half
        notes.append(f"QLoRA {bits}-bit: {q_params / 1e9:.2f}B Linear weights at {per:.3f} B/param, the rest bf16")
    else:
        frozen = pc.total - (n_trainable if not lora_like else 0)
        weights = frozen * frozen_b + (0 if lora_like else n_trainable * train_b)
    if lora_like:
        weights += n_trainable * train_b  # adapters (fp32 unless pure_bf16)
    if setup.reference_model and mode == "train":
        # DPO/KTO/PPO/GRPO keep a frozen reference copy of the base for the KL term (TRL create_reference_model,
        # OpenRLHF's ref actor, LLaMA-Factory create_ref_model): the base weights once more, sharded like the policy
        ref = (int(pc.linear_weights * ((NF4_BYTES + NF4_DQ_CONST_BYTES) if (setup.quantization_bit or 4) == 4 else INT8_BYTES))
               + (pc.total - pc.linear_weights) * half) if quantized else pc.total * frozen_b
        weights += ref
        notes.append(f"a frozen reference model for the {setup.stage.upper()} KL term: +{ref / 2**30:.2f} GiB of weights")

    # ---- gradients, optimizer states, master copies (per GPU, after ZeRO sharding)
    grad_b = train_b
    opt = setup.optimizer
    state_b = 4 if train_b == 4 or deepspeed else 2  # Adam moments in the param dtype; fp32 under DeepSpeed
    if opt in ("adamw", "adamw_fused", "paged_adamw_32bit"):
        states_per = 2 * state_b
    elif opt in ("adamw_8bit", "paged_adamw_8bit"):
        states_per = ADAM8BIT_BYTES
    elif opt == "adafactor":
        # factored second moment: a row and a column vector per matrix (Shazeer & Stern 2018), no momentum
        states_per = 4 * 2 / max(arch.hidden_size, 1)
    elif opt == "lion":
        states_per = state_b  # one momentum buffer (Chen et al. 2023)
    else:
        states_per = 0  # SGD without momentum (torch default momentum=0)
    # DeepSpeed's bf16/fp16 optimizers always keep an fp32 master partition (even with pure_bf16 in the model)
    master_per = 4 if (deepspeed and not fp32) else 0
    if mode == "eval":
        grad_b, states_per, master_per = 0, 0, 0
    gradients = n_trainable * grad_b
    optimizer_states = int(n_trainable * states_per)
    master = n_trainable * master_per
    host = 0
    if deepspeed and mode == "train":
        if zero >= 1:
            optimizer_states //= N
            master //= N
        if zero >= 2:
            # partitioned grads + the contiguous reduce (ipg) bucket of reduce_bucket_size elements
            gradients = gradients // N + min(ZERO_BUCKET, n_trainable) * grad_b
        if zero >= 3:
            unsharded = 0
            if quantized and not setup.quant_storage_sharded:
                # bitsandbytes packs 4/8-bit weights as uint8: ZeRO-3 only partitions them when the quant storage dtype
                # is the float dtype of the rest (bnb_4bit_quant_storage; PEFT's DeepSpeed QLoRA guide), else every
                # GPU keeps them whole
                copies = 2 if setup.reference_model else 1   # a reference model is loaded quantized the same way
                unsharded = copies * int(pc.linear_weights * ((NF4_BYTES + NF4_DQ_CONST_BYTES) if (setup.quantization_bit or 4) == 4
                                                              else INT8_BYTES))
                notes.append("4/8-bit weights without bnb_4bit_quant_storage are not partitioned by ZeRO-3: each GPU holds "
                             "all of them")
            weights = unsharded + (weights - unsharded) // N
        ranks_per_node = max(1, N // max(1, setup.num_nodes))
        if setup.offload_optimizer:
            # ZeRO-Offload (Ren et al. 2021): fp32 master, moments and fp32 grads live in host RAM; pinned
            # staging buffers on top: DeepSpeed's own estimator multiplies by additional_buffer_factor=1.5
            host += int((optimizer_states + master + n_trainable * 4 // N) * ranks_per_node * HOST_BUFFER_FACTOR)
            optimizer_states = master = 0
        if setup.offload_param and zero == 3:
            host += int(weights * ranks_per_node * HOST_BUFFER_FACTOR)
            weights = 0
    gathered = 0
    if zero == 3 and mode == "train":
        # ZeRO-3 gathers each module's full 16-bit params before use and prefetches the next ones
        layer_params = (pc.total - pc.embedding - pc.lm_head) // max(arch.num_layers, 1)
        gathered = min(ZERO3_MAX_LIVE, 2 * max(layer_params, pc.embedding)) * half + ZERO3_PREFETCH * half
    # torch DDP keeps all-reduce buckets as large as all gradients unless gradient_as_bucket_view=True
    # (torch.nn.parallel.DistributedDataParallel docs); HF Trainer leaves it False
    ddp_buckets = gradients if (mode == "train" and N > 1 and zero == 0) else 0
    # ---- optimizer temporaries
    temps = 0
    if mode == "train" and not deepspeed:
        if opt == "adamw":
            # torch.optim.AdamW foreach path (_multi_tensor_adam): exp_avg_sq.sqrt() for the whole group at once
            temps = n_trainable * state_b
        elif opt == "adafactor":
            temps = pc.largest_layer * 4  # one update tensor at a time
    # ---- activation policy
    autocast_fp32 = (not fp32 and not pure and not deepspeed and not lora_like and mode == "train"
                     and setup.precision in ("bf16_mixed", "fp16_mixed"))
    lora_inputs: dict[str, tuple[int, float]] = {}
    if lora_like and mode == "train":
        lora_inputs = lora_inputs_per_layer(arch, setup.lora_targets)
    policy = ActPolicy(
        weights_trainable=(mode == "train" and not lora_like),
        autocast_fp32_weights=autocast_fp32,
        lora_inputs=lora_inputs,
        act_bytes=4 if fp32 else 2,
        eager_attention=effective_attention(setup) == "eager",
        lora_input_bytes=2 if (lora_like and setup.precision in ("bf16_mixed", "fp16_mixed")
                               and setup.framework in HF_TRAINER_FRAMEWORKS) else 4,
    )
    copies = int(n_trainable * 2) if autocast_fp32 else 0  # autocast's bf16 weight cache (torch.autocast docs)
    lm_head_copy = (pc.lm_head or pc.embedding) * 2 if autocast_fp32 else 0
    # loading: from_pretrained reads safetensors shard by shard (max_shard_size 5GB on the Hub), each rank
    # of a node holding about one shard at a time; ZeRO-3 zero.Init partitions as it loads
    ranks = max(1, N // max(1, setup.num_nodes))
    loading = ranks * min(pc.total * half, LOAD_SHARD_BYTES)
    host_parts = {"offload": host, "loading": loading}
    host = host + loading
    return _Plan(pc=pc, n_trainable=n_trainable, weights=weights, gradients=gradients,
                 optimizer_states=optimizer_states, master_weights=master, optimizer_temporaries=temps,
                 zero_gathered=gathered, ddp_buckets=ddp_buckets, host=host, host_parts=host_parts, policy=policy,
                 autocast_weight_copies=copies, lm_head_copy=lm_head_copy, vision_trainable=vision_trainable, trainable_layers=trainable_layers,
                 notes=notes)


def effective_attention(setup: TrainingSetup) -> str:
    """The attention implementation that really runs: one the modeling code lacks falls back to eager.

    transformers picks sdpa by default, but remote code with no sdpa class (Kimi-VL's DeepSeek-V3 text
    model: eager and flash_attention_2 only) runs eager unless flash-attn is installed and requested.
    """
    impls = setup.model.attention_impls if setup.model is not None else None
    if impls and setup.attn_implementation not in impls:
        return "eager"
    return setup.attn_implementation


def _moments(setup: TrainingSetup, plan: _Plan, mode: Mode, batch: int, seq: int) -> dict[str, dict[str, int]]:
    """Live components at each moment of the step, for a micro-batch and sequence length."""
    arch = setup.model
    assert arch is not None
    p = plan.policy
    raw_seq = seq
    seq = seq + _expanded_image_tokens(setup)
    T = batch * seq
    L = arch.num_layers
    V = arch.vocab_size
    h = arch.hidden_size
    # HF-Trainer-based frameworks drop the model output (and its bf16 logits) before backward
    units = loss_peak_units(outputs_kept=setup.framework not in HF_TRAINER_FRAMEWORKS)
    state = {"weights": plan.weights, "optimizer_states": plan.optimizer_states,
             "master_weights": plan.master_weights}
    if plan.ddp_buckets:
        state["ddp_gradient_buckets"] = plan.ddp_buckets
    if mode == "train" and (setup.grad_accum > 1 or setup.zero_stage > 0 or setup.fsdp):
        # gradients outlive the step's backward: accumulated across micro-batches, and DeepSpeed keeps
        # its (partitioned) gradient buffers allocated for the whole run (contiguous_gradients)
        state["gradients"] = plan.gradients
    if plan.zero_gathered:
        state["zero3_gathered_params"] = plan.zero_gathered
    state["cuda_workspace"] = CUBLAS_WORKSPACE

    # ---- vision
    vis_act = vis_transient = 0
    if arch.vision is not None and (setup.images_per_sample or setup.video_frames):
        v = arch.vision
        _, patches = vision_tokens(v, setup.image_max_pixels, setup.images_per_sample, setup.video_frames)
        n_img = max(1, setup.images_per_sample + setup.video_frames)
        eager = effective_attention(setup) == "eager"
        per_image = patches // n_img if n_img else patches
        # eager score elements per head: one s x s block per image, or, for MoonViT, whose eager path masks
        # one packed sequence of every image of the batch (block-diagonal bool mask), the whole packed length
        score_sq = (batch * patches) ** 2 if v.kind == "moonvit" else batch * n_img * per_image ** 2
        if mode == "train" and plan.vision_trainable:
            if setup.gradient_checkpointing and v.checkpointing:
                vis_act = batch * patches * v.hidden_size * 2 * v.num_layers  # block inputs only
                vis_transient = batch * patches * vision_block_bytes(v, True)
                if eager:
                    # the recomputed block's eager scores and their gradients, per image (eager_backward_units)
                    vis_transient += v.num_heads * score_sq * 12
            else:
                vis_act = batch * patches * vision_block_bytes(v, True) * v.num_layers
                if eager:
                    vis_act += v.num_heads * score_sq * 6 * v.num_layers
        else:
            vis_transient = vision_transient_bytes(v, per_image, batch * n_img, eager)
        vis_act += batch * patches * 3 * v.patch_size ** 2 * v.temporal_patch_size * 4  # fp32 pixel_values

    if mode == "eval":
        return _eval_moments(setup, arch, p, state, batch, raw_seq, vis_transient)

    moe_idx = set(moe_layer_indices(arch))
    n_moe = len(moe_idx)
    per_tok_dense = layer_activation_bytes(arch, p, moe=False)
    per_tok_moe = layer_activation_bytes(arch, p, moe=True) if n_moe else 0
    # freeze tuning: frozen leading layers keep nothing unless checkpointing made the inputs require grad
    # (LLaMA-Factory/PEFT call enable_input_require_grads with gradient checkpointing)
    first_trainable = 0 if setup.gradient_checkpointing else L - plan.trainable_layers
    stored_layers = [(i in moe_idx) for i in range(first_trainable, L)]
    layer_scores = attention_score_bytes(arch, p, batch, seq)
    # eager attention: the causal mask lives all step; one layer at a time holds its softmax working set
    E = score_elements(arch, batch, seq) if p.eager_attention else 0
    mask = eager_mask_bytes(arch, p, batch, seq)
    full_layer = T * max(per_tok_moe if n_moe else 0, per_tok_dense)
    if setup.gradient_checkpointing:
        # torch.utils.checkpoint (non-reentrant): each layer keeps only its input hidden states
        resid_b = 4 if (p.autocast_fp32_weights or p.act_bytes == 4) else 2
        acts = len(stored_layers) * T * h * resid_b + T * final_norm_bytes(arch, p)
        recompute = full_layer
        kept_scores = mask  # the checkpointed forward keeps no probabilities
        # the layer recomputed in backward keeps its probabilities again and differentiates through them
        late_scores = mask + eager_backward_units(p) * E
    else:
        acts = model_activation_bytes(arch, p, T, first_layer=first_trainable)
        kept_scores = len(stored_layers) * layer_scores + mask
        late_scores = kept_scores - layer_scores + eager_backward_units(p) * E
        recompute = 0
    # forward of the last layer: earlier layers' kept scores + this layer's softmax working set
    layer_fwd_scores = kept_scores - (0 if setup.gradient_checkpointing else layer_scores) + eager_forward_transient_units(p) * E
    lm_head_trainable = p.weights_trainable
    if setup.liger_kernel:
        loss_fwd = loss_bwd = liger_loss_bytes(arch, T, lm_head_trainable)
        retained = 0
    else:
        # fp32 training: the logits are fp32 already, logits.float() is a no-op: 4+4 forward, 4+4+4+4 backward
        fp32_logits = p.act_bytes == 4
        # Gemma2 final_logit_softcapping: tanh(logits / cap) * cap keeps the tanh output for backward
        softcap = 2 if arch.model_type == "gemma2" else 0
        loss_fwd = ((8 if fp32_logits else units["forward"]) + softcap) * T * V
        loss_bwd = ((12 + (4 if units["retained"] else 0) if fp32_logits else units["backward"]) + softcap) * T * V
        retained = ((4 if units["retained"] else 0) if fp32_logits else units["retained"]) * T * V
    weight_copies_saved = (plan.autocast_weight_copies if not setup.gradient_checkpointing else plan.lm_head_copy)

    fwd = dict(state)
    fwd.update(activations=acts, attention_scores=kept_scores,
               logits_and_loss=loss_fwd, vision_activations=vis_act + vis_transient,
               autocast_weight_copies=plan.autocast_weight_copies)
    bwd = dict(state)
    bwd.update(activations=acts, attention_scores=kept_scores,
               logits_and_loss=loss_bwd, vision_activations=vis_act,
               autocast_weight_copies=weight_copies_saved)
    # late backward: gradients almost all accumulated, one checkpointed layer recomputed and differentiated
    late = dict(state)
    # a layer's backward holds its saved tensors plus ~3 gradient tensors of MLP width (d down-input, d act, d up)
    mlp_width = max(arch.intermediate_size, arch.num_experts_per_tok * (arch.moe_intermediate_size or 0))
    grad_transient = 3 * T * mlp_width * p.act_bytes
    late.update(gradients=plan.gradients, activations=acts + recompute + grad_transient, attention_scores=late_scores,
                logits_and_loss=retained,
                vision_activations=vis_act)
    step = dict(state)
    step.update(gradients=plan.gradients, optimizer_temporaries=plan.optimizer_temporaries,
                logits_and_loss=retained)
    moments = {"forward_end": fwd, "backward": bwd, "backward_late": late, "optimizer_step": step}
    if E:
        # eager: a decoder layer's softmax in forward (the seed Kimi-VL run failed here, at 16 GiB for fp32 scores)
        layer_fwd = dict(state)
        layer_fwd.update(activations=acts,
                         attention_scores=layer_fwd_scores, vision_activations=vis_act,
                         autocast_weight_copies=plan.autocast_weight_copies)
        moments["forward_layer"] = layer_fwd
    if setup.eval_batch:
        # evaluation during training: the optimizer states stay resident (HF Trainer evaluates between steps),
        # gradients were freed by zero_grad(set_to_none=True); the eval batch is often larger (HF default 8)
        eval_state = {k: v for k, v in state.items() if k != "gradients"}
        moments.update(_eval_moments(setup, arch, p, eval_state, setup.eval_batch, raw_seq, vis_transient))
    return moments


def _eval_moments(setup: TrainingSetup, arch, p: ActPolicy, state: dict[str, int], batch: int, seq: int,
                  vis_transient: int) -> dict[str, dict[str, int]]:
    """no_grad forward: nothing is saved; the peak is one layer's working set or the loss at the end
    (bf16 logits + fp32 upcast + log_softmax output: 10 B x b x s x V)."""
    seq = seq + _expanded_image_tokens(setup)
    T, V, h = batch * seq, arch.vocab_size, arch.hidden_size
    if setup.liger_kernel:
        logits_fwd = liger_loss_bytes(arch, T, False) // 2
    else:
        logits_fwd = loss_peak_units()["forward"] * T * V
    frozen = ActPolicy(False, False, {}, p.act_bytes, p.eager_attention)
    one_layer = T * layer_activation_bytes(arch, frozen, moe=bool(moe_layer_indices(arch)))
    ev = dict(state)
    ev.update(activations=T * h * 4, logits_and_loss=logits_fwd)
    layer = dict(state)
    # no_grad eager attention: bf16 scores + fp32 copy + fp32 softmax at one layer, plus the causal mask
    scores = (eager_forward_transient_units(p) * score_elements(arch, batch, seq) + eager_mask_bytes(arch, p, batch, seq)
              if p.eager_attention else 0)
    layer.update(activations=one_layer, attention_scores=scores,
                 vision_activations=vis_transient)
    return {"evaluation": ev, "evaluation_layer": layer}


def _expanded_image_tokens(setup: TrainingSetup) -> int:
    """Extra LM positions when a fixed-resolution tower's tokens are spliced in after truncation.

    LLaVA / MoE-LLaVA training code truncates text to model_max_length, then replaces each <image>
    token by 576 CLIP-L-336 features inside the model (llava_arch.prepare_inputs_labels_for_multimodal);
    LLaMA-Factory and Qwen-VL processors expand image tokens before truncation (counted in seq_len).
    """
    v = setup.model.vision if setup.model else None
    if v is None or v.kind not in ("clip", "siglip") or setup.framework == "llamafactory":
        return 0
    n = setup.images_per_sample + setup.video_frames
    return max(0, (v.tokens_per_image or 0) - 1) * n


def _peak(moments: dict[str, dict[str, int]]) -> tuple[str, dict[str, int], int]:
    # whole bytes per component, so the breakdown adds up exactly to the peak
    whole = {name: {k: int(v) for k, v in parts.items()} for name, parts in moments.items()}
    best = max(whole.items(), key=lambda kv: sum(kv[1].values()))
    return best[0], best[1], sum(best[1].values())


def _peak_bytes(setup: TrainingSetup, plan: _Plan, mode: Mode, batch: int, seq: int) -> int:
    return _peak(_moments(setup, plan, mode, batch, seq))[2]


_FORMULAS = {
    "weights": "parameters x bytes per parameter in their storage dtype (sharded /N under ZeRO-3)",
    "gradients": "trainable parameters x grad dtype (fp32 for fp32 params; /N under ZeRO-2/3)",
    "optimizer_states": "AdamW: 2 moments per trainable parameter (ZeRO paper); 8-bit: 2 B; /N under ZeRO",
    "master_weights": "DeepSpeed bf16/fp16: fp32 master copy, 4 B per trainable parameter (/N under ZeRO)",
    "attention_scores": "eager attention: 6 B x b x heads x s^2 kept per stored layer (fp32 softmax + bf16 copy); "
                        "10 B at a layer's softmax in forward, 12 B in its backward; + the b x s^2 causal mask",
    "activations": "per layer per token saved tensors (Korthikanti et al. 2022, adapted) x layers x tokens",
    "logits_and_loss": "bf16 logits + fp32 upcast + log_softmax + grads: 10 (forward) / 14 (backward) B x b x s x V",
    "optimizer_temporaries": "foreach AdamW: sqrt(exp_avg_sq) for all params of a group at once",
    "autocast_weight_copies": "torch.autocast caches a bf16 copy of each fp32 weight during forward",
    "vision_activations": "vision tower: saved block activations (trainable) or one block's working set (frozen)",
    "zero3_gathered_params": "ZeRO-3 all-gathered 16-bit params of live modules + prefetch bucket",
    "cuda_workspace": "cuBLAS workspace allocated through PyTorch's caching allocator",
    "ddp_gradient_buckets": "torch DDP all-reduce buckets, one more copy of the gradients (gradient_as_bucket_view=False)",
}


def fully_trained_embedding_params(pc, targets: list[str]) -> int:
    """Parameters of embed_tokens / lm_head named as LoRA targets: PEFT and Unsloth train them whole
    (modules_to_save), and a tied lm_head becomes its own trainable copy."""
    want = {t.strip().lower() for item in targets for t in str(item).split(",")}
    n = 0
    if want & {"embed_tokens", "wte", "word_embeddings", "embeddings"}:
        n += pc.embedding
    if "lm_head" in want:
        n += pc.lm_head or pc.embedding
    return n


def estimate_memory(setup: TrainingSetup, *, mode: Mode = "train", margin: float = 0.9) -> MemoryEstimate:
    """Peak bytes PyTorch allocates on the busiest GPU for one step, its breakdown, and verdicts.

    Raises InputError when the setup has no model architecture.
    """
    if setup.model is None:
        raise InputError("no model architecture: pass --model NAME or --model-config config.json")
    if mode not in ("train", "eval"):
        raise InputError(f"mode must be 'train' or 'eval', not {mode!r}")
    if not (0 < margin <= 1):
        raise InputError("margin must be in (0, 1]")
    plan = _plan(setup, mode)
    batch = (setup.eval_batch or setup.micro_batch) if mode == "eval" else setup.micro_batch
    # a chosen and a rejected answer per sample go through the model together (TRL/LLaMA-Factory concatenated forward)
    pairs = 2 if mode == "train" and setup.stage in PAIRED_STAGES else 1
    batch *= pairs
    phase, comps, peak = _peak(_moments(setup, plan, mode, batch, setup.seq_len))
    peak_phase = {"backward_late": "backward", "evaluation_layer": "evaluation", "forward_layer": "forward_end"}.get(phase, phase)
    components = [MemoryComponent(name=k, bytes=int(v), formula=_FORMULAS.get(k, "")) for k, v in comps.items() if v]
    notes = list(plan.notes)
    if setup.model.model_type not in KNOWN_TEXT_TYPES:
        notes.append(f"model_type {setup.model.model_type!r} is not a family ask-oom knows: counted as a Llama-style layout")
    v = setup.model.vision
    if (v is not None and not v.checkpointing and setup.gradient_checkpointing and not setup.freeze_vision_tower
            and (setup.images_per_sample or setup.video_frames)):
        notes.append(f"the {v.kind} vision tower does not checkpoint its blocks: all of their activations are kept")
    if effective_attention(setup) != setup.attn_implementation:
        notes.append(f"attention counted as eager: {setup.model.name or setup.model.model_type}'s modeling code provides only "
                     f"{', '.join(setup.model.attention_impls or [])}, so {setup.attn_implementation} falls back to eager "
                     "(b x heads x s x s scores per layer); install flash-attn and set it explicitly")
    if setup.optimizer.startswith("paged"):
        notes.append("paged optimizer: states live in unified memory and can be paged to host RAM under pressure")
    if setup.method in ("lora", "qlora") and not setup.gradient_checkpointing and plan.policy.lora_input_bytes == 4:
        notes.append("LoRA activations counted with PEFT's fp32 input copy per adapted Linear (no autocast)")
    if setup.framework not in HF_TRAINER_FRAMEWORKS and mode == "train" and not setup.liger_kernel:
        notes.append("training loop assumed to keep the model output (its bf16 logits) alive through backward")
    est = MemoryEstimate(
        peak_bytes=int(peak), peak_phase=peak_phase, breakdown=MemoryBreakdown(components=components),
        n_params=plan.pc.total, n_trainable=plan.n_trainable, host_bytes=int(plan.host),
        cuda_context_bytes=CUDA_CONTEXT_BYTES, notes=notes, host_breakdown=plan.host_parts,
    )
    if setup.host_ram_bytes:
        est.host_fits = plan.host <= setup.host_ram_bytes
    if setup.gpu is not None and setup.gpu.memory_bytes > 0:
        cap = setup.gpu.memory_bytes
        budget = int(cap * margin) - CUDA_CONTEXT_BYTES
        est.gpu_name = setup.gpu.name
        est.gpu_bytes = cap
        est.budget_bytes = budget
        est.allocator_reserve_bytes = cap - int(cap * margin)
        est.fits = peak <= budget
        est.headroom_bytes = budget - int(peak)
        est.max_micro_batch = _max_int(lambda b: _peak_bytes(setup, plan, mode, b * pairs, setup.seq_len) <= budget, 4096)
        cap_seq = max(setup.seq_len, arch_max_seq(setup))
        est.max_seq_len = _max_int(lambda s: _peak_bytes(setup, plan, mode, batch, s) <= budget, cap_seq)
        if plan.weights + plan.optimizer_states + plan.master_weights > budget:
            est.notes.append("the model states alone exceed the GPU budget: it fails while loading or at the first step, "
                         "whatever the batch or sequence length (shard with ZeRO-3/FSDP, offload, or quantize)")
        elif est.max_micro_batch == 0:
            est.notes.append(f"does not fit even at micro-batch 1 on {setup.gpu.name} "
                         f"({budget / GiB:.2f} GiB usable at margin {margin})")
    return est


def arch_max_seq(setup: TrainingSetup) -> int:
    m = setup.model.max_position_embeddings if setup.model else None
    return int(m) if m else 131072


def _max_int(fits, upper: int) -> int:
    """Largest n in [1, upper] with fits(n) (monotone), 0 if none."""
    if not fits(1):
        return 0
    lo, hi = 1, 1
    while hi < upper and fits(min(hi * 2, upper)):
        hi = min(hi * 2, upper)
        lo = hi
    if hi >= upper:
        return upper
    hi = min(hi * 2, upper)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo
