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
from ..gpus import CUDA_CONTEXT_BYTES, budget_bytes as gpu_budget_bytes
from ..training_setup import ADAPTER_METHODS, PAIRED_STAGES, TrainingSetup
from ..units import GiB
from .activations import (
    ActPolicy, attention_score_bytes, eager_backward_units, eager_forward_transient_units, eager_mask_bytes,
    expert_lora_weight_bytes,
    final_norm_bytes, score_elements, layer_activation_bytes, liger_loss_bytes,
    lora_inputs_per_layer, model_activation_bytes,
    loss_peak_units, vision_block_bytes, vision_tokens, vision_transient_bytes,
)
from .arch_loader import KNOWN_TEXT_TYPES
from .params import PEFT_MOE_RETARGETING, ParamCount, count_params, lora_params, lora_wraps_experts, moe_layer_indices
from .band import error_band, probe_command
from .band import verdict as band_verdict
from .schema import MemoryBreakdown, MemoryComponent, MemoryEstimate

# The step sized: a training step, one of the inference workloads (TrainingSetup.workload), or a vLLM engine (serve.py).
Mode = Literal["train", "eval", "predict", "generate", "serve"]

# QLoRA (Dettmers et al. 2023, sec. 3): NF4 = 4 bits/param; blockwise absmax per 64 weights, and with
# double quantization those constants are 8-bit with one fp32 constant per 256 blocks: 0.127 bits/param.
NF4_BYTES = 0.5
NF4_DQ_CONST_BYTES = 1 / 64 + 4 / (64 * 256)
# LLM.int8 (Dettmers et al. 2022): int8 weights plus one fp32 scale per output row (negligible).
INT8_BYTES = 1.0


def bytes_per_weight(bits: int | None, fp32: bool = False) -> float:
    """Bytes one stored weight takes: 4-bit (NF4, GPTQ, AWQ) half a byte, 8-bit (int8, FP8) one, fp32 four, else the
    16-bit two of the usual load."""
    return NF4_BYTES if bits == 4 else INT8_BYTES if bits == 8 else 4.0 if fp32 else 2.0

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
    reference_weights: int  # the frozen reference copy of a preference stage (sharded like the policy), 0 without one
    autocast_weight_copies: int  # bf16 copies of fp32 weights that autocast makes (all weights run through Linear)
    lm_head_copy: int  # autocast copy of the lm_head weight, saved for backward even with checkpointing
    vision_trainable: bool
    trainable_layers: int
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class TrainedBytes:
    """The bytes one trained parameter keeps before any sharding: its weight as the model holds it, its gradient, its
    optimizer states (`moment` bytes each) and the optimizer's fp32 master copy. They do not depend on the architecture
    (but for Adafactor's factored moments), so a model known only by its parameter count is sized by them too."""

    weight: int
    gradient: int
    optimizer: float
    master: int
    moment: int

    @property
    def total(self) -> float:
        return self.weight + self.gradient + self.optimizer + self.master

    def formula(self) -> str:
        parts = [f"weight {self.weight}", f"gradient {self.gradient}", f"optimizer {self.optimizer:g}"]
        return " + ".join(parts + ([f"fp32 master {self.master}"] if self.master else []))

    def per_gpu(self, params: int, zero: int, gpus: int) -> int:
        """One GPU's share under ZeRO (ZeRO paper, section 5): stage 1 partitions the optimizer states and master copy
        over the data-parallel GPUs, stage 2 the gradients too, stage 3 the weights too (FSDP full sharding as 3)."""
        n = max(gpus, 1)
        return int(params * (self.weight / (n if zero >= 3 else 1) + self.gradient / (n if zero >= 2 else 1)
                             + (self.optimizer + self.master) / (n if zero >= 1 else 1)))


def trained_bytes(setup: TrainingSetup, hidden_size: int = 0) -> TrainedBytes:
    """Per trained parameter, as the setup's precision, optimizer and DeepSpeed keep it (`hidden_size` sizes
    Adafactor's factored moments; 0 leaves them out)."""
    deepspeed = setup.sharding_stage > 0
    fp32 = setup.precision == "fp32"
    # trainable parameter dtype: fp32 master in the model (HF autocast; LLaMA-Factory upcasts trainable
    # params to fp32 unless pure_bf16: llamafactory/model/adapter.py), DeepSpeed keeps bf16 in the model
    # and its fp32 master copy inside the optimizer (ZeRO paper: 2 + 2 + 12 bytes/param).
    if fp32:
        weight = 4
    elif setup.precision == "pure_bf16" or (deepspeed and setup.method not in ADAPTER_METHODS):
        weight = 2
    else:
        weight = 4
    moment = 4 if weight == 4 or deepspeed else 2  # Adam moments in the param dtype; fp32 under DeepSpeed
    opt = setup.optimizer
    if opt in ("adamw", "adamw_fused", "paged_adamw_32bit"):
        optimizer: float = 2 * moment
    elif opt in ("adamw_8bit", "paged_adamw_8bit"):
        optimizer = ADAM8BIT_BYTES
    elif opt == "adafactor":
        # factored second moment: a row and a column vector per matrix (Shazeer & Stern 2018), no momentum
        optimizer = 4 * 2 / hidden_size if hidden_size else 0.0
    elif opt == "lion":
        optimizer = moment  # one momentum buffer (Chen et al. 2023)
    else:
        optimizer = 0  # SGD without momentum (torch default momentum=0)
    # DeepSpeed's bf16/fp16 optimizers always keep an fp32 master partition (even with pure_bf16 in the model)
    master = 4 if (deepspeed and not fp32) else 0
    return TrainedBytes(weight=weight, gradient=weight, optimizer=optimizer, master=master, moment=moment)


def _plan(setup: TrainingSetup, mode: Mode) -> _Plan:
    arch = setup.model
    assert arch is not None
    pc = count_params(arch)
    notes: list[str] = []
    N = setup.num_gpus
    zero = setup.sharding_stage
    deepspeed = zero > 0
    pure = setup.precision == "pure_bf16"
    fp32 = setup.precision == "fp32"
    lm_total = pc.total - pc.vision - pc.projector
    vision_total = pc.vision
    proj_total = pc.projector
    half = 2

    # ---- which parameters train, and in which dtype they live
    lora_like = setup.method in ADAPTER_METHODS
    vision_trainable = arch.vision is not None and not setup.freeze_vision_tower and not setup.train_mm_proj_only
    projector_trainable = arch.vision is not None and not setup.freeze_projector
    trainable_layers = arch.num_layers
    if mode != "train":
        n_trainable = 0
    elif lora_like:
        n_trainable = lora_params(arch, setup.lora_rank, setup.lora_targets, vision=vision_trainable,
                                  peft_version=setup.peft_version)
        if setup.peft_version is None and arch.is_moe:
            # what all-linear wraps on a MoE model depends on the PEFT release: say which one was counted
            others = [r.version for r in PEFT_MOE_RETARGETING[:-1]
                      if lora_params(arch, setup.lora_rank, setup.lora_targets, vision=vision_trainable,
                                     peft_version=r.version) != n_trainable]
            if others:
                notes.append(f"LoRA on a mixture-of-experts model counted as PEFT {PEFT_MOE_RETARGETING[-1].version} wraps it "
                             f"({'the fused experts and router too' if lora_wraps_experts(arch, setup.lora_targets) else 'its Linear layers'}); "
                             f"PEFT {', '.join(others)} wraps other modules: give your peft version if it is older")
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

    per_trained = trained_bytes(setup, arch.hidden_size)
    train_b = per_trained.weight
    frozen_b = 4 if fp32 else half

    # ---- weights resident on each GPU
    # stored 4/8-bit: QLoRA, a quantized base under adapters, or a checkpoint stored quantized (its name says so, or a
    # GGUF engine runs it, the paste's words say so: "72B int4") that only runs: inference trains no weight, whatever
    # the method defaults to. A config's bits may be a quantizer's target (AutoGPTQ loads the 16-bit model to quantize
    # it), so it does not count there.
    stored = setup.provenance.get("quantization_bit")
    runs_stored = setup.workload != "train" and stored is not None and stored.origin in ("default", "derived", "log")
    quantized = setup.method == "qlora" or (setup.quantization_bit in (4, 8) and (setup.method != "full" or runs_stored))
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
    reference = 0
    if setup.reference_model and mode == "train":
        # DPO/KTO/PPO/GRPO keep a frozen reference copy of the base for the KL term (TRL create_reference_model,
        # OpenRLHF's ref actor, LLaMA-Factory create_ref_model): the base weights once more, sharded like the policy
        ref = (int(pc.linear_weights * ((NF4_BYTES + NF4_DQ_CONST_BYTES) if (setup.quantization_bit or 4) == 4 else INT8_BYTES))
               + (pc.total - pc.linear_weights) * half) if quantized else pc.total * frozen_b
        reference = ref
        notes.append(f"a frozen reference model for the {setup.stage.upper()} KL term: +{ref / 2**30:.2f} GiB of weights")

    # ---- gradients, optimizer states, master copies (per GPU, after ZeRO sharding)
    grad_b, states_per, master_per = per_trained.gradient, per_trained.optimizer, per_trained.master
    state_b, opt = per_trained.moment, setup.optimizer
    if mode != "train":
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
            # the reference copy is loaded (and partitioned) like the policy; its share of the unpartitioned 4/8-bit
            # weights is the second of `copies`
            ref_unsharded = unsharded // 2 if setup.reference_model else 0
            weights = unsharded - ref_unsharded + (weights - (unsharded - ref_unsharded)) // N
            reference = ref_unsharded + (reference - ref_unsharded) // N
        ranks_per_node = max(1, N // max(1, setup.num_nodes))
        if setup.offload_optimizer:
            # ZeRO-Offload (Ren et al. 2021): fp32 master, moments and fp32 grads live in host RAM; pinned
            # staging buffers on top: DeepSpeed's own estimator multiplies by additional_buffer_factor=1.5
            host += int((optimizer_states + master + n_trainable * 4 // N) * ranks_per_node * HOST_BUFFER_FACTOR)
            optimizer_states = master = 0
        if setup.offload_param and zero == 3:
            host += int((weights + reference) * ranks_per_node * HOST_BUFFER_FACTOR)
            weights = reference = 0
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
        lora_inputs = lora_inputs_per_layer(arch, setup.lora_targets, setup.peft_version)
    policy = ActPolicy(
        weights_trainable=(mode == "train" and not lora_like),
        autocast_fp32_weights=autocast_fp32,
        lora_inputs=lora_inputs,
        act_bytes=4 if fp32 else 2,
        eager_attention=effective_attention(setup) == "eager",
        lora_input_bytes=2 if (lora_like and setup.precision in ("bf16_mixed", "fp16_mixed")
                               and runs_trainer(setup)) else 4,
        lora_dropout=lora_like and setup.lora_dropout > 0,
        expert_lora_rank=setup.lora_rank if (lora_like and mode == "train" and lora_wraps_experts(arch, setup.lora_targets, setup.peft_version)) else 0,
    )
    copies = int(n_trainable * 2) if autocast_fp32 else 0  # autocast's bf16 weight cache (torch.autocast docs)
    lm_head_copy = (pc.lm_head or pc.embedding) * 2 if autocast_fp32 else 0
    # loading: from_pretrained reads safetensors shard by shard (max_shard_size 5GB on the Hub), each rank
    # of a node holding about one shard at a time; ZeRO-3 zero.Init partitions as it loads
    ranks = max(1, N // max(1, setup.num_nodes))
    loading = ranks * min(pc.total * half, LOAD_SHARD_BYTES)
    host_parts = {"offload": host, "loading": loading}
    host = host + loading
    return _Plan(pc=pc, n_trainable=n_trainable, weights=weights, reference_weights=reference, gradients=gradients,
                 optimizer_states=optimizer_states, master_weights=master, optimizer_temporaries=temps,
                 zero_gathered=gathered, ddp_buckets=ddp_buckets, host=host, host_parts=host_parts, policy=policy,
                 autocast_weight_copies=copies, lm_head_copy=lm_head_copy, vision_trainable=vision_trainable, trainable_layers=trainable_layers,
                 notes=notes)


def runs_trainer(setup: TrainingSetup) -> bool:
    """Whether an HF-Trainer-based framework runs the step, as far as anyone stated.

    Two mechanisms hang on it (both measured: tests/tools/test_memory_framework.py): accelerate's bf16/fp16 autocast,
    under which PEFT's lora_A saves a bf16 cast of its input instead of the fp32 copy (2 vs 4 B per in-feature), and
    Trainer.compute_loss returning only the loss, so the model output's bf16 logits are freed before backward (12 vs
    14 B x b x s x V). A framework nobody stated (TrainingSetup's default, `estimate --model` alone) is sized as the
    plain loop, the larger of the two: a setup that fits only as a Trainer run is "borderline", not "fits"
    (the band's lower edge is the Trainer run)."""
    return setup.framework in HF_TRAINER_FRAMEWORKS and setup.stated("framework")


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
    seq = seq + expanded_image_tokens(setup)
    T = batch * seq
    L = arch.num_layers
    V = arch.vocab_size
    h = arch.hidden_size
    # HF-Trainer-based frameworks drop the model output (and its bf16 logits) before backward
    units = loss_peak_units(outputs_kept=not runs_trainer(setup))
    state = {"weights": plan.weights, "optimizer_states": plan.optimizer_states,
             "master_weights": plan.master_weights}
    if plan.reference_weights:
        state["reference_weights"] = plan.reference_weights
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

    if mode == "generate":
        return _generate_moments(setup, arch, p, state, batch, raw_seq, vis_transient)
    if mode != "train":
        moments = _eval_moments(setup, arch, p, state, batch, raw_seq, vis_transient)
        if mode == "predict":
            moments.update(_predict_accumulation(setup, arch, state, batch, raw_seq))
        return moments

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
        # the recomputed MoE layer materialises its experts' W + dW again (LoRA on the fused experts)
        recompute = full_layer + (expert_lora_weight_bytes(arch, p) if n_moe else 0)
        kept_scores = mask  # the checkpointed forward keeps no probabilities
        # the layer recomputed in backward keeps its probabilities again and differentiates through them
        late_scores = mask + eager_backward_units(p, arch) * E
    else:
        acts = model_activation_bytes(arch, p, T, first_layer=first_trainable)
        kept_scores = len(stored_layers) * layer_scores + mask
        late_scores = kept_scores - layer_scores + eager_backward_units(p, arch) * E
        recompute = 0
    # forward of the last layer: earlier layers' kept scores + this layer's softmax working set
    layer_fwd_scores = (kept_scores - (0 if setup.gradient_checkpointing else layer_scores)
                        + eager_forward_transient_units(p, arch, grad=True) * E)
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
    if p.expert_lora_rank and n_moe:
        # the gradient of a materialised W + dW (the gate_up sum: E x 2i x h) before it reaches the adapter factors
        grad_transient += arch.num_experts * 2 * (arch.moe_intermediate_size or arch.intermediate_size) * h * p.act_bytes
    late.update(gradients=plan.gradients, activations=acts + recompute + grad_transient, attention_scores=late_scores,
                logits_and_loss=retained,
                vision_activations=vis_act)
    step = dict(state)
    step.update(gradients=plan.gradients, optimizer_temporaries=plan.optimizer_temporaries,
                logits_and_loss=retained)
    moments = {"forward_end": fwd, "backward": bwd, "backward_late": late, "optimizer_step": step}
    if setup.stage in REFERENCE_FORWARD_STAGES:
        # DPO/KTO: the reference log-probs come from a no_grad forward of the same sequences (the frozen copy, or the
        # LoRA model with its adapters disabled) while the policy's graph is alive: TRL DPOTrainer.get_batch_loss_metrics
        # and LLaMA-Factory CustomDPOTrainer run concatenated_forward(policy), then compute_ref_log_probs. The policy keeps
        # its log_softmax output for backward (4 B) and its model output's logits while held; the reference's logits
        # are bf16 + fp32 upcast + log_softmax (10 B x b x s x V) until they are reduced to per-sequence log-probs.
        ref_fwd = dict(state)
        if setup.liger_kernel:
            kept_loss, ref_logits = 0, liger_loss_bytes(arch, T, False) // 2
        else:
            kept_loss = (4 + (4 if p.act_bytes == 4 and units["retained"] else units["retained"])) * T * V
            ref_logits = loss_peak_units()["forward"] * T * V
        ref_fwd.update(activations=acts, attention_scores=kept_scores, vision_activations=vis_act,
                       autocast_weight_copies=plan.autocast_weight_copies, logits_and_loss=kept_loss,
                       reference_logits=ref_logits)
        moments["reference_forward"] = ref_fwd
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
    seq = seq + expanded_image_tokens(setup)
    T, V, h = batch * seq, arch.vocab_size, arch.hidden_size
    if setup.liger_kernel:
        logits_fwd = liger_loss_bytes(arch, T, False) // 2
    else:
        logits_fwd = loss_peak_units()["forward"] * T * V
    frozen = ActPolicy(False, False, {}, p.act_bytes, p.eager_attention, training=False)
    one_layer = T * layer_activation_bytes(arch, frozen, moe=bool(moe_layer_indices(arch)))
    ev = dict(state)
    # the final norm's output (the last hidden state the model output holds and lm_head reads), in the compute dtype
    ev.update(activations=T * h * p.act_bytes, logits_and_loss=logits_fwd)
    layer = dict(state)
    # no_grad eager attention: bf16 scores + fp32 copy + fp32 softmax at one layer, plus the causal mask
    scores = (eager_forward_transient_units(p) * score_elements(arch, batch, seq) + eager_mask_bytes(arch, p, batch, seq)
              if p.eager_attention else 0)
    layer.update(activations=one_layer, attention_scores=scores,
                 vision_activations=vis_transient)
    return {"evaluation": ev, "evaluation_layer": layer}


# HF Trainer's evaluation loop keeps the logits prediction_step returns (prediction_loss_only False: trainer.predict, or
# evaluate with compute_metrics), converted to fp32 by accelerate's convert_outputs_to_fp32 under bf16/fp16 autocast.
KEPT_LOGIT_BYTES = 4
# Generation defaults: LLaMA-Factory GeneratingArguments.max_new_tokens 1024; transformers GenerationConfig
# max_length 20 (HF Seq2SeqTrainer without generation_max_length), counted as 20 new tokens.
LF_MAX_NEW_TOKENS = 1024
HF_MAX_NEW_TOKENS = 20


def predict_steps_kept(setup: TrainingSetup, batch: int) -> tuple[int, bool]:
    """How many prediction steps' logits are on the GPU at once, and whether that number is known.

    evaluation_loop concatenates each step's logits onto the previous ones (EvalLoopContainer.add -> nested_concat) and
    moves them to the CPU every eval_accumulation_steps steps; without it they stay until the whole set is predicted."""
    if setup.eval_accumulation_steps:
        return setup.eval_accumulation_steps, True
    if setup.eval_samples:
        return max(1, -(-setup.eval_samples // max(1, batch))), True
    return 1, False


def _predict_accumulation(setup: TrainingSetup, arch, state: dict[str, int], batch: int, seq: int) -> dict[str, dict[str, int]]:
    """The moment the kept logits grow: torch.cat of the accumulated and the new step's logits holds both plus the
    concatenated copy (2 x the steps kept x b x s x V x 4 B)."""
    steps, _ = predict_steps_kept(setup, batch)
    step_logits = KEPT_LOGIT_BYTES * batch * (seq + expanded_image_tokens(setup)) * arch.vocab_size
    acc = dict(state)
    acc.update(eval_accumulated=2 * steps * step_logits)
    return {"eval_accumulate": acc}


def kv_bytes_per_token(arch, a: int = 2) -> int:
    """KV-cache bytes one token adds across all layers: keys and values of the kv heads (GQA/MQA share them); HF's MLA
    cache (DeepSeek-V2/V3) stores the decompressed per-head keys (nope + rope) and values."""
    if arch.is_mla:
        per_layer = arch.num_heads * ((arch.qk_nope_head_dim or 0) + (arch.qk_rope_head_dim or 0) + (arch.v_head_dim or 0))
    else:
        per_layer = 2 * arch.num_kv_heads * arch.head_dim
    return per_layer * a * arch.num_layers


def max_new_tokens(setup: TrainingSetup) -> int:
    """Tokens generated per sample: the config's max_new_tokens, else the framework's default."""
    if setup.max_new_tokens:
        return setup.max_new_tokens
    return LF_MAX_NEW_TOKENS if setup.framework == "llamafactory" else HF_MAX_NEW_TOKENS


def _generate_moments(setup: TrainingSetup, arch, p: ActPolicy, state: dict[str, int], batch: int, prompt: int,
                      vis_transient: int) -> dict[str, dict[str, int]]:
    """model.generate under no_grad (Seq2SeqTrainer.prediction_step with predict_with_generate):

    prefill: the prompt (b x beams x prompt tokens) through one layer at a time, its KV cache written, logits for the last
    position only (generate's logits_to_keep); decode: the cache grows by one token per step for every layer
    (DynamicCache torch.cat: a layer's cache is briefly held twice), up to prompt + max_new_tokens."""
    n_new = max_new_tokens(setup)
    seqs = batch * max(1, setup.num_beams)
    prompt = prompt + expanded_image_tokens(setup)
    T, V, h, a = seqs * prompt, arch.vocab_size, arch.hidden_size, p.act_bytes
    kv_tok = kv_bytes_per_token(arch, a)
    frozen = ActPolicy(False, False, {}, a, p.eager_attention, training=False)
    one_layer = T * layer_activation_bytes(arch, frozen, moe=bool(moe_layer_indices(arch)))
    scores = (eager_forward_transient_units(p) * score_elements(arch, seqs, prompt) + eager_mask_bytes(arch, p, seqs, prompt)
              if p.eager_attention else 0)
    prefill = dict(state)
    prefill.update(kv_cache=seqs * prompt * kv_tok, activations=T * h * a + one_layer, attention_scores=scores,
                   logits_and_loss=seqs * V * (2 + 4), vision_activations=vis_transient)
    full = seqs * (prompt + n_new)
    decode = dict(state)
    decode.update(kv_cache=full * kv_tok + full * kv_tok // max(1, arch.num_layers),
                  logits_and_loss=seqs * V * (2 + 4 + 4), activations=seqs * h * 4 * 4)
    return {"generation_prefill": prefill, "generation": decode}


def expanded_image_tokens(setup: TrainingSetup) -> int:
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
    "kv_cache": "generation: 2 (K, V) x kv heads x head dim x 2 B x layers per token, for b x beams x (prompt + new tokens)",
    "eval_accumulated": "prediction: kept fp32 logits (b x s x V x 4 B per step) of the steps not yet moved to the CPU, "
                        "held twice while torch.cat appends a step",
    "ddp_gradient_buckets": "torch DDP all-reduce buckets, one more copy of the gradients (gradient_as_bucket_view=False)",
    "reference_weights": "frozen reference copy of the base (full-parameter DPO/KTO/PPO): its parameters x 2 B (4/8-bit "
                         "when the policy is quantized), sharded like the policy; none for LoRA (adapters disabled)",
    "reference_logits": "the reference's no_grad forward, run while the policy's graph is alive: bf16 logits + fp32 upcast + "
                        "log_softmax, 10 B x b x s x V",
}
# Stages whose loss needs the reference model's log-probs each step (TRL/LLaMA-Factory DPO, KTO; precompute_ref_log_probs
# off, the TRL default): ORPO and SimPO are reference-free.
REFERENCE_FORWARD_STAGES = frozenset({"dpo", "kto"})
# Components that scale with the sequences in the batch: a paired stage runs chosen + rejected together.
_PAIRED_COMPONENTS = ("activations", "attention_scores", "logits_and_loss", "reference_logits", "vision_activations")


def component_formula(name: str, setup: TrainingSetup, mode: str) -> str:
    """How a component was computed; for a preference stage, where the chosen + rejected pair enters."""
    text = _FORMULAS.get(name, "")
    if mode == "train" and setup.stage in PAIRED_STAGES and name in _PAIRED_COMPONENTS:
        text += "; b = 2 x micro-batch: x2 (chosen + rejected, one concatenated forward)"
    return text


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


def sized_workload(setup: TrainingSetup, mode: str | None) -> Mode:
    """The step to size: the mode asked for, else the setup's workload; a generic "eval" (an inference step, e.g. the
    log's evaluation phase) of a predict or generate configuration is that workload, and of a vLLM engine serving."""
    from .serve import serves

    if mode in (None, "eval") and serves(setup):
        return "serve"
    if mode is None:
        return setup.workload
    if mode == "eval" and setup.workload in ("predict", "generate"):
        return setup.workload
    return mode  # type: ignore[return-value]


_WORKLOAD_WORDS = {
    "train": "a training step", "eval": "an evaluation step (forward without gradients or optimizer states)",
    "predict": "a prediction step (forward without gradients; the logits are kept)",
    "generate": "prediction by generation (weights, the prompt and the KV cache of max_new_tokens)",
    "serve": "vLLM serving (weights, the profiling run, CUDA graphs and the KV-cache pool)",
}


def estimate_memory(setup: TrainingSetup, *, mode: Mode | None = None, margin: float = 0.9) -> MemoryEstimate:
    """Peak bytes PyTorch allocates on the busiest GPU for one step, its breakdown, and verdicts.

    `mode` is the step to size (train, eval, predict, generate, serve); None sizes the setup's own workload (a vLLM
    engine: serve, whose budget is its gpu_memory_utilization rather than `margin`).
    Raises InputError when the setup has no model architecture.
    """
    if setup.model is None:
        raise InputError("no model architecture: pass --model NAME or --model-config config.json")
    if mode is not None and mode not in ("train", "eval", "predict", "generate", "serve"):
        raise InputError(f"mode must be 'train', 'eval', 'predict', 'generate' or 'serve', not {mode!r}")
    if not (0 < margin <= 1):
        raise InputError("margin must be in (0, 1]")
    mode = sized_workload(setup, mode)
    if mode == "serve":
        from .serve import serve_estimate

        return serve_estimate(setup)
    plan = _plan(setup, mode)
    batch = (setup.eval_batch or setup.micro_batch) if mode != "train" else setup.micro_batch
    # a chosen and a rejected answer per sample go through the model together (TRL/LLaMA-Factory concatenated forward)
    pairs = 2 if mode == "train" and setup.stage in PAIRED_STAGES else 1
    batch *= pairs
    phase, comps, peak = _peak(_moments(setup, plan, mode, batch, setup.seq_len))
    peak_phase = {"backward_late": "backward", "evaluation_layer": "evaluation", "forward_layer": "forward_end",
                  "eval_accumulate": "evaluation", "generation_prefill": "generation",
                  "reference_forward": "forward_end"}.get(phase, phase)
    components = [MemoryComponent(name=k, bytes=int(v), formula=component_formula(k, setup, mode)) for k, v in comps.items() if v]
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
    if mode == "train" and setup.stage in PAIRED_STAGES:
        notes.append(f"{setup.stage.upper()}: chosen + rejected per sample, {batch} sequences of {setup.seq_len} tokens per step "
                     "(2x the activations and logits of SFT at this micro-batch)")
    if mode == "train" and setup.stage in REFERENCE_FORWARD_STAGES:
        notes.append("reference log-probs: one no_grad forward per step " + (
            "of the frozen reference copy" if plan.reference_weights else
            "of the base model with the LoRA adapters disabled (no second copy of the weights)"
            if setup.method in ADAPTER_METHODS else "of the reference model")
            + f" (reference_logits {loss_peak_units()['forward'] * batch * setup.seq_len * setup.model.vocab_size / GiB:.2f} GiB "
            "at its end)")
    elif mode == "train" and setup.stage in ("orpo", "simpo"):
        notes.append(f"{setup.stage.upper()} is reference-free: no reference weights and no reference forward")
    if setup.optimizer.startswith("paged"):
        notes.append("paged optimizer: states live in unified memory and can be paged to host RAM under pressure")
    if setup.method in ADAPTER_METHODS and not setup.gradient_checkpointing and plan.policy.lora_input_bytes == 4:
        notes.append("LoRA activations counted with PEFT's fp32 input copy per adapted Linear (no autocast)")
    if not runs_trainer(setup) and mode == "train" and not setup.liger_kernel:
        if setup.stated("framework"):
            notes.append("training loop assumed to keep the model output (its bf16 logits) alive through backward")
        else:
            notes.append("framework not stated: sized as a plain PyTorch loop that keeps the model output through backward "
                         "and runs LoRA without autocast (the larger); an HF-Trainer-based run needs less (the band's lower edge)")
    est = MemoryEstimate(
        peak_bytes=int(peak), peak_phase=peak_phase, workload=mode, breakdown=MemoryBreakdown(components=components),
        n_params=plan.pc.total, n_trainable=plan.n_trainable, host_bytes=int(plan.host),
        cuda_context_bytes=CUDA_CONTEXT_BYTES, notes=notes, host_breakdown=plan.host_parts,
    )
    if mode != "train":
        est.notes.insert(0, f"sized: {_WORKLOAD_WORDS[mode]}, batch {batch}" + (
            f" x {setup.num_beams} beams, {setup.seq_len} prompt + {max_new_tokens(setup)} new tokens" if mode == "generate" else
            f" x {setup.seq_len} tokens"))
    if mode == "predict":
        steps, known = predict_steps_kept(setup, batch)
        if not known:
            est.notes.append("prediction keeps every step's logits on the GPU until the set is done (no eval_accumulation_steps, "
                         "number of samples unknown): sized for one step, it grows by "
                         f"{KEPT_LOGIT_BYTES * batch * setup.seq_len * setup.model.vocab_size / GiB:.2f} GiB per step; "
                         "eval_accumulation_steps moves them to the CPU")
    band = error_band(setup, int(peak), lower_alternative=_trainer_alternative(setup, mode, batch),
                      workload_measured=mode in ("train", "eval"))
    est.band_lower_bytes, est.band_upper_bytes, est.band_notes = band.lower, band.upper, band.reasons
    if setup.host_ram_bytes:
        est.host_fits = plan.host <= setup.host_ram_bytes
    if setup.gpu is not None and setup.gpu.memory_bytes > 0:
        cap = setup.gpu.memory_bytes
        budget = gpu_budget_bytes(cap, margin)
        est.gpu_name = setup.gpu.name
        est.gpu_bytes = cap
        est.budget_bytes = budget
        est.allocator_reserve_bytes = cap - int(cap * margin)
        # "fits" is judged on the band's upper edge; the largest batch / length likewise (the band scales with the peak)
        est.fits = band.upper <= budget
        est.verdict = band_verdict(band, budget)
        est.headroom_bytes = budget - int(peak)
        if est.verdict == "borderline":
            est.probe_command = probe_command(setup)
            est.notes.append(f"borderline: the {budget / GiB:.2f} GiB budget lies inside the error band "
                             f"({band.lower / GiB:.2f}-{band.upper / GiB:.2f} GiB); measure it: {est.probe_command}")
        factor = band.upper / peak if peak else 1.0
        est.max_micro_batch = largest_that_fits(lambda b: _peak_bytes(setup, plan, mode, b * pairs, setup.seq_len) * factor <= budget, 1, 4096)
        cap_seq = max(setup.seq_len, arch_max_seq(setup))
        est.max_seq_len = largest_that_fits(lambda s: _peak_bytes(setup, plan, mode, batch, s) * factor <= budget, 1, cap_seq)
        if plan.weights + plan.reference_weights + plan.optimizer_states + plan.master_weights > budget:
            est.notes.append("the model states alone exceed the GPU budget: it fails while loading or at the first step, "
                         "whatever the batch or sequence length (shard with ZeRO-3/FSDP, offload, or quantize)")
        elif est.max_micro_batch == 0:
            est.notes.append(f"does not fit even at micro-batch 1 on {setup.gpu.name} "
                         f"({budget / GiB:.2f} GiB usable at margin {margin})")
    return est


def _trainer_alternative(setup: TrainingSetup, mode: Mode, batch: int) -> int | None:
    """The peak of the same step run by HF Trainer, when nobody stated the framework (the band's lower edge)."""
    if mode != "train" or setup.stated("framework") or setup.framework not in HF_TRAINER_FRAMEWORKS:
        return None
    trainer = setup.with_fact("framework", setup.framework, "derived", "the band's lower edge: an HF-Trainer-based run")
    return _peak_bytes(trainer, _plan(trainer, mode), mode, batch, setup.seq_len)


def arch_max_seq(setup: TrainingSetup) -> int:
    m = setup.model.max_position_embeddings if setup.model else None
    return int(m) if m else 131072


def largest_that_fits(fits, lo: int, hi: int) -> int:
    """Largest n in [lo, hi] with fits(n), for a monotone fits (galloping from lo, then bisection); lo - 1 if none.
    The calculator's max micro-batch and length and the dataset's fitting length all search with it."""
    if not fits(lo):
        return lo - 1
    step = 1
    while lo + step <= hi and fits(lo + step):
        lo, step = lo + step, step * 2
    hi = min(hi, lo + step - 1)
    while lo < hi:  # fits(lo); every n > hi fails
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo
