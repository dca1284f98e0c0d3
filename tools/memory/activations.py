"""Bytes that autograd keeps per token for one decoder layer, the logits/loss, and vision towers.

Counting follows Korthikanti et al. 2022 ("Reducing Activation Recomputation in Large Transformer
Models", sec. 4.1): list the tensors each op saves for backward. Adapted to what transformers'
Llama-style layers actually save: RMSNorm upcasts its input to fp32, SwiGLU saves gate/up/act,
sdpa/flash attention keep q, k, v and the output (no s x s scores), GQA k/v are not repeated
(sdpa enable_gqa), and frozen Linear layers do not save their inputs. Verified op by op against
autograd's saved tensors (tests/tools/test_memory_activations.py) and end to end against the H100
measurements in ../shared/calibration (evals/calibration_benchmark.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..model_arch import ModelArch, VisionArch
from .params import lora_module_shapes, moe_layer_indices


@dataclass(frozen=True)
class ActPolicy:
    """How a step runs, as far as saved activations are concerned."""

    weights_trainable: bool  # full fine-tuning of this layer (Linear layers save their inputs)
    autocast_fp32_weights: bool  # fp32 weights under bf16 autocast: fp32 residual stream, per-Linear bf16 casts
    lora_inputs: dict[str, tuple[int, float]]  # LoRA module → (in_features, modules per layer) whose fp32 input PEFT saves
    act_bytes: int = 2  # element size of activations (2 for bf16/fp16, 4 for fp32 training)
    eager_attention: bool = False
    lora_input_bytes: int = 4  # 4: PEFT's fp32 cast of the input is saved; 2: under autocast lora_A saves a bf16 cast
    lora_dropout: bool = False  # LoRA dropout p > 0: each adapter keeps a dropout mask of its input
    training: bool = True  # model.train(): dropout layers with p > 0 keep their masks (not under model.eval())
    expert_lora_rank: int = 0  # LoRA rank on the fused MoE experts (PEFT lora.ParamWrapper; params.lora_wraps_experts), 0: none


# torch's fused dropout (at::native_dropout, taken on CUDA: aten/src/ATen/native/Dropout.cpp is_fused_kernel_acceptable)
# keeps a bool mask, 1 B per element, for backward. (The CPU path multiplies by a mask in the input's dtype instead.)
DROPOUT_MASK_BYTES = 1


def _norm_bytes(arch: ModelArch, h: int, p: ActPolicy, consumers: int) -> int:
    """One norm + the inputs its consumer Linears save (per token).

    LlamaRMSNorm: x.to(float32) is saved (pow, mul: 4h); the normalized tensor is saved by the
    weight multiply when the norm weight trains (bf16; Gemma's RMSNorm multiplies in fp32: 4h);
    the output is saved once by the trainable Linears that read it (under autocast every Linear
    makes its own bf16 cast: one copy per consumer). nn.LayerNorm keeps its 16-bit input only.
    """
    if arch.norm == "layernorm":
        n = p.act_bytes * h  # native layer_norm saves its input (+ per-row mean/rstd)
    elif p.act_bytes == 4:
        n = 4 * h + (4 * h if p.weights_trainable else 0)
    elif p.autocast_fp32_weights or arch.model_type in _GEMMA:
        n = 4 * h + (4 * h if (p.weights_trainable or p.autocast_fp32_weights) else 0)
    else:
        n = 4 * h + (2 * h if p.weights_trainable else 0)
    if p.weights_trainable:
        n += (2 * h * consumers) if p.autocast_fp32_weights else p.act_bytes * h  # shared bf16 output without autocast
    return n


_GEMMA = ("gemma", "gemma2", "gemma3_text", "gemma3")


def layer_activation_bytes(arch: ModelArch, p: ActPolicy, *, moe: bool) -> int:
    """Bytes saved per token by one decoder layer during a training forward (no checkpointing)."""
    h, a = arch.hidden_size, p.act_bytes
    fused_qkv = bool(arch.extra.get("fused_qkv"))
    qkv_consumers = 1 if fused_qkv else 3
    # --- attention block
    total = _norm_bytes(arch, h, p, qkv_consumers)
    if arch.is_mla:
        nh = arch.num_heads
        qk_hd = (arch.qk_nope_head_dim or 0) + (arch.qk_rope_head_dim or 0)
        rq, rkv = arch.q_lora_rank or 0, arch.kv_lora_rank or 0
        # latent q / kv RMSNorms (fp32 input + normalized + output), then q, k, v of full width for attention
        total += 8 * rq + 8 * rkv + a * nh * qk_hd * 2 + a * nh * max(qk_hd, arch.v_head_dim or 0)
        attn_out = nh * (arch.v_head_dim or 0)
    else:
        qd, kvd = arch.num_heads * arch.head_dim, arch.num_kv_heads * arch.head_dim
        total += a * qd + 2 * a * kvd  # q, k (after RoPE) and v, saved by sdpa / flash-attn
        if arch.extra.get("qk_norm"):
            # Qwen3/Gemma3/OLMoE q_norm, k_norm: fp32 input (4) + normalized (2, the weight trains)
            total += (4 + (2 if p.weights_trainable else 0)) * (qd + kvd)
        attn_out = qd
    total += a * attn_out  # attention output saved by sdpa backward
    if p.weights_trainable and p.eager_attention:
        # eager: transpose(1, 2).contiguous() copies the output for o_proj; flash/sdpa kernels already
        # write it in (b, s, h, d) layout, so o_proj's input is a view of the saved output
        total += a * attn_out
    # --- MLP block (parallel attention+MLP layers such as phi share the first norm)
    mlp_consumers = 1 if (not arch.gated_mlp or arch.model_type == "phi3") else 2
    if not arch.parallel_attn_mlp:
        total += _norm_bytes(arch, h, p, mlp_consumers)
    total += mlp_bytes(arch, p, moe=moe)
    # --- LoRA: PEFT casts each adapted Linear's input to the adapter dtype (fp32) and lora_A saves it;
    # under autocast lora_A re-casts that copy to bf16 and saves the bf16 one instead
    lora_in = sum(in_f * n for in_f, n in p.lora_inputs.values())
    total += p.lora_input_bytes * lora_in
    if p.lora_dropout and p.training:
        # PEFT applies lora_dropout (nn.Dropout) to each adapter's input copy: one mask per adapted Linear
        total += DROPOUT_MASK_BYTES * lora_in
    if p.training:
        # hidden dropout (Phi-2 resid_pdrop 0.1, GPT-2, OPT): a mask on the attention output and on the MLP output
        total += DROPOUT_MASK_BYTES * h * resid_dropout_sites(arch)
    if arch.extra.get("sandwich_norm"):
        total += 2 * (4 * h + (4 * h if p.weights_trainable else 0))  # Gemma2/3 post-attention/post-FFN norms
    return total


def resid_dropout_sites(arch: ModelArch) -> int:
    """Dropout layers with p > 0 on the residual branch of one layer (config.json resid_pdrop / dropout)."""
    return 2 if arch.extra.get("resid_dropout") else 0


def final_norm_bytes(arch: ModelArch, p: ActPolicy) -> int:
    """Per-token bytes of the final norm and the lm_head input (Korthikanti: the output layer's input)."""
    h = arch.hidden_size
    if arch.norm == "layernorm":
        n = p.act_bytes * h
    else:
        n = 4 * h + ((4 if (p.autocast_fp32_weights or arch.model_type in _GEMMA or p.act_bytes == 4) else 2) * h
                     if p.weights_trainable else 0)
    return n + (p.act_bytes * h if p.weights_trainable else 0)


def model_activation_bytes(arch: ModelArch, p: ActPolicy, tokens: int, first_layer: int = 0) -> int:
    """Saved bytes of a whole training forward without checkpointing (layers first_layer.. + final norm)."""
    moe = set(moe_layer_indices(arch))
    dense = layer_activation_bytes(arch, p, moe=False)
    sparse = layer_activation_bytes(arch, p, moe=True) if moe else 0
    per_tok = sum(sparse if i in moe else dense for i in range(first_layer, arch.num_layers))
    n_moe = sum(1 for i in moe if i >= first_layer)
    return tokens * (per_tok + final_norm_bytes(arch, p)) + n_moe * expert_lora_weight_bytes(arch, p)


def expert_lora_weight_bytes(arch: ModelArch, p: ActPolicy) -> int:
    """Per MoE layer, what LoRA on the fused experts materialises whatever the tokens (measured on CPU with peft 0.21).

    lora.ParamWrapper parametrizes each wrapped 3-D weight as W + scaling * einsum(B, A) in the weights' dtype: the
    gate_up_proj (E x 2i x h) and down_proj (E x h x i) sums are new tensors the expert matmuls save for backward, and
    the adapter factors are reshaped and cast for the einsum (E x out x r and E x r x in per weight; gate_up at rank 2r).
    """
    r = p.expert_lora_rank
    if not r or not arch.is_moe:
        return 0
    h, E, a = arch.hidden_size, arch.num_experts, p.act_bytes
    mi = arch.moe_intermediate_size or arch.intermediate_size
    merged = E * 3 * mi * h * a
    factors = E * (2 * r * (h + 2 * mi) + r * (h + mi)) * a
    return merged + factors


def mlp_bytes(arch: ModelArch, p: ActPolicy, *, moe: bool) -> int:
    """Per-token saved bytes of one MLP (dense, or routed experts + shared experts + router)."""
    a = p.act_bytes

    # transformers' gelu_new / gelu_fast are Python tanh formulas: 4 saved tensors of width i, not 1
    act_saves = 4 if arch.hidden_act in ("gelu_new", "gelu_fast", "gelu_accurate") else 1

    def dense(i: int) -> int:
        if arch.gated_mlp:
            # gate out (activation), up out and act out (mul); the product feeds down_proj (saved if it trains)
            return a * i * (2 + act_saves) + (a * i if p.weights_trainable else 0)
        return a * i * act_saves + (a * i if p.weights_trainable else 0)  # fc1 out (activation), act out (fc2)

    if not moe:
        return dense(arch.intermediate_size)
    h, k, E = arch.hidden_size, arch.num_experts_per_tok, arch.num_experts
    mi = arch.moe_intermediate_size or arch.intermediate_size
    # experts whose weights need a gradient (full fine-tuning, or LoRA on the fused experts, where W + dW requires grad)
    # keep the gathered inputs and the down projection's input
    grad_w = p.weights_trainable or p.expert_lora_rank > 0
    expert_mlp = dense(mi) + (a * mi if grad_w and not p.weights_trainable else 0)
    # router logits (bf16) and their fp32 softmax; each token's hidden state gathered to k experts,
    # each expert's MLP activations, and the expert outputs saved by the routing-weight multiply
    n = 2 * E + 4 * E + k * (a * h * (1 if grad_w else 0) + expert_mlp + a * h)
    if p.expert_lora_rank and not p.weights_trainable:
        n += a * h  # the router weight is wrapped too: F.linear(hidden, W + dW) saves the router's input
    if arch.model_type in ("deepseek_v2", "deepseek_v3", "kimi_vl"):
        n += 4 * h  # DeepSeek routers run in fp32: F.linear(hidden.float(), weight.float()) saves the fp32 input
    if arch.shared_expert_intermediate_size:
        n += dense(arch.shared_expert_intermediate_size) + a * h
    elif arch.num_shared_experts:
        n += dense(mi * arch.num_shared_experts)
    return n


def lora_inputs_per_layer(arch: ModelArch, targets: list[str], peft_version: str | None = None) -> dict[str, tuple[int, float]]:
    """LoRA module → (in_features, count per layer); modules of MoE/dense MLPs averaged over layers."""
    out: dict[str, tuple[int, int]] = {}
    L = max(arch.num_layers, 1)
    for name, in_f, _out_f, count in lora_module_shapes(arch, targets, peft_version=peft_version):
        # count is over the whole model: per layer that is count / L (dense MLPs of MoE models are in few layers)
        out[name] = (in_f, count / L)
    return out


def attention_score_bytes(arch: ModelArch, p: ActPolicy, batch: int, seq: int) -> int:
    """Eager attention: the s x s probabilities one layer keeps for backward (fp32 softmax output + bf16 copy).

    sdpa / flash-attn keep only a per-row logsumexp (Dao et al. 2022), so this is 0 for them.
    """
    if not p.eager_attention:
        return 0
    per_elem = 4 + (2 if p.act_bytes == 2 else 0)  # softmax(dtype=float32) output + .to(bf16) saved by matmul
    per_elem += _softcap_units(arch, p)  # attention logit soft-capping keeps the tanh output
    return per_elem * batch * arch.num_heads * seq * seq


def score_elements(arch: ModelArch, batch: int, seq: int) -> int:
    """Elements of one layer's eager score matrix: batch x query heads (not kv heads) x s x s."""
    return batch * arch.num_heads * seq * seq


def _softcap_units(arch: ModelArch | None, p: ActPolicy) -> int:
    """Gemma-2's attention logit soft-capping, tanh(scores / cap) * cap: tanh saves its output (one score in the
    activation dtype) for backward (measured on CPU: 8 B per score element kept, not 6)."""
    return p.act_bytes if arch is not None and arch.extra.get("attn_softcap") else 0


def eager_forward_transient_units(p: ActPolicy, arch: ModelArch | None = None, grad: bool = False) -> int:
    """Bytes per score element live at one layer's softmax in forward (grad or not, measured on CPU).

    transformers' eager_attention_forward: softmax(w, dtype=float32).to(q.dtype); aten softmax
    (aten/src/ATen/native/SoftMax.cpp) converts a bf16 input with input.toType(float32) first (only CUDA
    fp16 takes the half_to_float path, on GPU as on CPU), so the bf16
    scores (2) + their fp32 copy (4) + the fp32 softmax output (4) are live at once: 10. CUDA fp16 inputs
    skip the copy (6); the policy does not tell fp16 from bf16, so 10 is counted for both (the safe side).
    """
    if not p.eager_attention:
        return 0
    # a training forward (grad) has already saved the soft-capped tanh output of this layer when it reaches the softmax
    softcap = _softcap_units(arch, p) if grad else 0
    if p.act_bytes == 4:
        return 4 + 4 + softcap  # fp32 scores and the fp32 softmax output (the dtype cast is a no-op)
    return 2 + 4 + 4 + softcap


def eager_backward_units(p: ActPolicy, arch: ModelArch | None = None) -> int:
    """Bytes per score element at the peak of one layer's backward through eager attention.

    The saved fp32 + bf16 probabilities (6), then matmul's bf16 grad (2) cast to fp32 for the softmax
    backward (4) and softmax's fp32 grad_input (4) before the bf16 copies are freed: 12 measured on CPU
    (Gemma-2's soft-capping: + its saved tanh output, 14 measured).
    """
    if not p.eager_attention:
        return 0
    return 12 + _softcap_units(arch, p)


def eager_mask_bytes(arch: ModelArch, p: ActPolicy, batch: int, seq: int) -> int:
    """The 4-D additive causal mask eager attention adds to the scores (b x 1 x s x s in the compute dtype),
    built once per forward and kept until backward ends (checkpointed layers keep it as an input). Models that mix
    sliding-window and global layers (Gemma-2/3 layer_types) build one mask of each kind."""
    if not p.eager_attention:
        return 0
    return int(arch.extra.get("mask_kinds", 1)) * p.act_bytes * batch * seq * seq


def loss_peak_units(outputs_kept: bool = True) -> dict[str, int]:
    """How many bytes per logit element are live at each moment of the loss (units of b x s x V).

    forward: bf16 logits (2) + logits.float() (4) + log_softmax output (4) = 10.
    backward start: log_softmax output (4, saved) + its incoming gradient from nll_loss (4) + the
    gradient w.r.t. the fp32 logits (4) = 12, plus the bf16 logits (2) while the caller still holds the
    model output (a plain training loop: measured 14 x b x s x V on the H100 rows). HF Trainer's
    compute_loss returns only the loss, so the output (and its logits) is gone before backward.
    (torch.nn.functional.cross_entropy = log_softmax + nll_loss.)
    """
    kept = 2 if outputs_kept else 0
    return {"forward": 10, "backward": 12 + kept, "retained": kept}


def liger_loss_bytes(arch: ModelArch, tokens: int, lm_head_trainable: bool) -> int:
    """Liger fused linear cross-entropy: logits only per chunk of tokens (liger_kernel FLCE source).

    chunk = next_pow2(ceil(tokens / ceil(V / h))); per chunk an fp32 logits block and its gradient,
    plus the gradient w.r.t. the hidden states (tokens x h) and, if lm_head trains, its fp32 grad.
    """
    V, h = arch.vocab_size, arch.hidden_size
    inc = max(1, -(-V // h))
    chunk = max(1, -(-tokens // inc))
    chunk = 1 << (chunk - 1).bit_length()
    return 2 * chunk * V * 4 + tokens * h * 4 + (V * h * 4 if lm_head_trainable else 0)


def vision_tokens(v: VisionArch, image_max_pixels: int | None, images: int, video_frames: int = 0) -> tuple[int, int]:
    """(LM tokens, vision-tower patches) per sample for `images` images (and `video_frames` frames)."""
    if images <= 0 and video_frames <= 0:
        return 0, 0
    if v.kind in ("qwen2_vl", "qwen2_5_vl", "moonvit"):
        # native resolution: patches = pixels / patch^2; LM tokens = patches / merge^2
        # (Qwen2-VL: 14-px patches, 2x2 merge → 28x28 px per token; default max_pixels 12845056)
        px = image_max_pixels or (768 * 768 if v.kind != "moonvit" else 896 * 896)
        patches = px // (v.patch_size * v.patch_size)
        tokens = patches // (v.spatial_merge_size ** 2)
        n_img_patches = images * patches
        n_img_tokens = images * tokens
        if video_frames:
            # video: temporal_patch_size frames share one patch grid (Qwen2-VL: 2 frames per temporal patch)
            t = max(1, video_frames // max(1, v.temporal_patch_size))
            n_img_patches += t * patches
            n_img_tokens += t * tokens
        return n_img_tokens, n_img_patches
    # fixed resolution towers (CLIP-L-336: 24x24 = 576 patch tokens + class token; Gemma3: pooled to 256)
    side = (v.image_size or 336) // v.patch_size
    patches = side * side + (1 if v.kind == "clip" else 0)
    tokens = v.tokens_per_image or side * side
    n = images + video_frames
    return n * tokens, n * patches


def vision_block_bytes(v: VisionArch, trainable: bool, a: int = 2) -> int:
    """Per-patch bytes one ViT block saves when the tower trains (measured on transformers' towers on CPU).

    Norms: RMSNorm (Qwen2.5-VL) keeps fp32 input + normalized + output (8h), LayerNorm (CLIP, SigLIP,
    Qwen2-VL) input + output (4h); attention keeps q, k (after RoPE), the fused qkv output, the output
    and o-proj's input (14h; windowed attention copies q/k/v/out per window: +4h); gated MLP 4 x i,
    plain MLP fc1 out, the activation's saved tensors and fc2's input.
    """
    if not trainable:
        return 0
    h, i = v.hidden_size, v.intermediate_size
    norm = 8 * h if v.kind == "qwen2_5_vl" else 4 * h
    attn = 14 * h + (4 * h if v.window_attention else 0)
    if v.gated_mlp:
        mlp = 4 * a * i
    else:
        act_saves = 2 if v.kind == "clip" else 1  # CLIP quick_gelu is x * sigmoid(1.702 x): x and the sigmoid
        mlp = a * i * (2 + act_saves)
    return 2 * norm + attn + mlp


def vision_transient_bytes(v: VisionArch, patches_per_image: int, images: int, eager: bool, a: int = 2) -> int:
    """Peak of a frozen tower's forward: one block's working set over all patches, plus eager scores per image."""
    h, i = v.hidden_size, v.intermediate_size
    work = images * patches_per_image * a * (4 * h + (3 if v.gated_mlp else 2) * i)
    if eager:
        # bf16 scores + their fp32 copy + the fp32 softmax output at one block's softmax (see eager_forward_transient_units)
        work += images * v.num_heads * patches_per_image ** 2 * (2 + 4 + 4)
    return work
