"""Exact parameter counts from architecture facts, the way transformers instantiates each family.

Checked in tests against `AutoModelForCausalLM.from_config(cfg)` on the meta device: every term below
is one nn.Module's weight or bias, so a mismatch names the module that is wrong.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, Field

from ..model_arch import ModelArch, VisionArch


class ParamCount(BaseModel):
    """Parameters by part; `total` is what `sum(p.numel() for p in model.parameters())` returns."""

    total: int
    embedding: int
    lm_head: int = Field(description="0 when tied to the embedding")
    attention: int
    mlp_dense: int = Field(description="dense MLPs (all layers of a dense model, the first_k_dense of DeepSeek)")
    experts: int = Field(default=0, description="routed experts, all of them (all are resident in memory)")
    shared_experts: int = 0
    routers: int = 0
    norms: int = 0
    vision: int = 0
    projector: int = 0
    largest_layer: int = Field(default=0, description="largest single module's own parameters (DeepSpeed's estimator)")
    active_per_token: int = Field(default=0, description="parameters a token goes through (top-k experts only)")

    @property
    def text(self) -> int:
        return self.total - self.vision - self.projector

    @property
    def linear_weights(self) -> int:
        """Parameters inside nn.Linear layers of the LM except lm_head (what QLoRA quantizes to 4 bit)."""
        return self.attention + self.mlp_dense + self.experts + self.shared_experts + self.routers


def _norm(arch: ModelArch, dim: int) -> int:
    # RMSNorm has a weight; LayerNorm a weight and a bias (torch.nn.LayerNorm)
    return dim * (2 if arch.norm == "layernorm" else 1)


def _mlp(h: int, i: int, gated: bool, bias: bool) -> int:
    # gated (SwiGLU/GeGLU): gate, up (h→i) and down (i→h); plain: fc1 (h→i), fc2 (i→h)
    n = (3 if gated else 2) * h * i
    if bias:
        n += (2 * i + h) if gated else (i + h)
    return n


def attention_params(arch: ModelArch) -> int:
    """One layer's attention: q/k/v/o projections (GQA: k, v have num_kv_heads), MLA projections, q/k norms."""
    h, hd = arch.hidden_size, arch.head_dim
    if arch.is_mla:
        qk_hd = (arch.qk_nope_head_dim or 0) + (arch.qk_rope_head_dim or 0)
        nh = arch.num_heads
        b = 1 if arch.attention_bias else 0
        n = 0
        if arch.q_lora_rank:
            # q_a_proj (h→q_lora_rank), q_a_layernorm, q_b_proj (rank→heads*qk_head_dim): DeepSeek-V2 paper eq. 12
            n += h * arch.q_lora_rank + b * arch.q_lora_rank + arch.q_lora_rank + arch.q_lora_rank * nh * qk_hd
        else:
            n += h * nh * qk_hd
        # kv_a_proj_with_mqa (h→kv_lora_rank+rope), kv_a_layernorm, kv_b_proj (rank→heads*(nope+v))
        n += h * (arch.kv_lora_rank + arch.qk_rope_head_dim) + b * (arch.kv_lora_rank + arch.qk_rope_head_dim)
        n += arch.kv_lora_rank + arch.kv_lora_rank * nh * (arch.qk_nope_head_dim + arch.v_head_dim)
        n += nh * arch.v_head_dim * h + b * h  # o_proj
        return n
    q = arch.num_heads * hd
    kv = arch.num_kv_heads * hd
    n = h * (q + 2 * kv) + q * h
    if arch.qkv_bias or arch.attention_bias:
        n += q + 2 * kv
    if arch.attention_bias:
        n += h  # o_proj bias (llama-style attention_bias, phi's dense)
    qk_norm = arch.extra.get("qk_norm")
    if qk_norm == "head":
        n += 2 * hd
    elif qk_norm == "full":
        n += q + kv
    if arch.extra.get("attention_sinks"):
        n += arch.num_heads   # gpt-oss: one learned sink logit per head
    return n


def _moe_layer_indices(arch: ModelArch) -> list[int]:
    if not arch.is_moe:
        return []
    if "moe_layers_idx" in arch.extra:
        return [i for i in arch.extra["moe_layers_idx"] if i < arch.num_layers]
    mlp_only = set(arch.extra.get("mlp_only_layers") or [])
    out = []
    for i in range(arch.num_layers):
        if i < arch.first_k_dense or i in mlp_only:
            continue
        if arch.model_type in ("deepseek_v2", "deepseek_v3", "kimi_vl"):
            if i % arch.moe_layer_freq != 0:
                continue
        elif (i + 1) % arch.moe_layer_freq != 0:  # qwen2_moe: decoder_sparse_step
            continue
        out.append(i)
    return out


def moe_layer_indices(arch: ModelArch) -> list[int]:
    """Indices of the layers whose MLP is a mixture of experts."""
    return _moe_layer_indices(arch)


def vision_params(v: VisionArch) -> tuple[int, int]:
    """(vision tower, projector) parameters."""
    if v.num_params is not None:
        return v.num_params, 0
    h, i, L = v.hidden_size, v.intermediate_size, v.num_layers
    if v.kind in ("qwen2_vl", "qwen2_5_vl"):
        # Conv3d patch embed without bias: channels x temporal x patch x patch x embed
        patch = v.in_channels * v.temporal_patch_size * v.patch_size * v.patch_size * h
        norm = h if v.kind == "qwen2_5_vl" else 2 * h  # RMSNorm (2.5) vs LayerNorm (2)
        attn = h * 3 * h + 3 * h + h * h + h  # qkv and proj, both with bias
        mlp = _mlp(h, i, v.gated_mlp, True)
        tower = patch + L * (2 * norm + attn + mlp)
        m = v.spatial_merge_size ** 2 * h
        # merger: ln_q over the unmerged dim, Linear(4h→4h), GELU, Linear(4h→LM hidden)
        proj = norm + m * m + m + m * (v.projector_hidden or 0) + (v.projector_hidden or 0)
        return tower, proj
    if v.kind in ("clip", "siglip", "other"):
        n_patches = ((v.image_size or 336) // v.patch_size) ** 2
        if v.kind == "clip":
            # class embedding, conv patch embed (no bias), positions for patches + class token, pre-LayerNorm
            emb = h + v.in_channels * v.patch_size**2 * h + (n_patches + 1) * h + 2 * h
        else:
            emb = v.in_channels * v.patch_size**2 * h + h + n_patches * h  # SigLIP conv has a bias, no class token
        layer = 4 * (h * h + h) + 4 * h + _mlp(h, i, False, True)
        tower = emb + L * layer + 2 * h  # post_layernorm
        lm_h = v.projector_hidden or 0
        if v.projector_kind == "gemma3":
            return tower, h + h * lm_h  # Gemma3 projector: mm_soft_emb_norm (RMSNorm) + mm_input_projection_weight
        proj = h * lm_h + lm_h + lm_h * lm_h + lm_h  # LLaVA multi_modal_projector: linear_1, GELU, linear_2
        return tower, proj
    if v.kind == "moonvit":
        # MoonViT (Kimi-VL): conv patch embed with bias, learnable 2D positions (64x64 interpolated), LayerNorm blocks
        emb = v.in_channels * v.patch_size**2 * h + h + 64 * 64 * h
        layer = (h * 3 * h + 3 * h) + (h * h + h) + 4 * h + _mlp(h, i, False, True)
        tower = emb + L * layer + 2 * h
        m = v.spatial_merge_size ** 2 * h
        lm_h = v.projector_hidden or 0
        proj = 2 * h + m * m + m + m * lm_h + lm_h  # pre_norm, linear_1 (4h→4h), linear_2 (4h→LM hidden)
        return tower, proj
    return 0, 0


def count_params(arch: ModelArch) -> ParamCount:
    """Exact parameter count of the model transformers builds from this config (buffers excluded)."""
    h, V, L = arch.hidden_size, arch.vocab_size, arch.num_layers
    embedding = V * h + h * int(arch.extra.get("learned_positions") or 0)   # GPT-2 / OPT: a position table too
    lm_head = 0 if arch.tie_word_embeddings else V * h
    if arch.extra.get("lm_head_bias"):
        lm_head += V  # phi-2's lm_head has a bias even when... (it is never tied)
    attn_layer = attention_params(arch)
    attention = L * attn_layer
    per_layer_norms = 4 if arch.extra.get("sandwich_norm") else (1 if arch.parallel_attn_mlp else 2)
    norms = L * per_layer_norms * _norm(arch, h) + _norm(arch, h)  # + final norm
    if arch.extra.get("embedding_norm"):
        norms += _norm(arch, h)   # BLOOM's word_embeddings_layernorm
    moe_layers = _moe_layer_indices(arch)
    n_moe = len(moe_layers)
    dense_mlp = _mlp(h, arch.intermediate_size, arch.gated_mlp, arch.mlp_bias)
    mlp_dense = (L - n_moe) * dense_mlp
    experts = shared = routers = 0
    expert_size = 0
    if n_moe:
        mi = arch.moe_intermediate_size or arch.intermediate_size
        expert_size = _mlp(h, mi, arch.gated_mlp, arch.mlp_bias)
        experts = n_moe * arch.num_experts * expert_size
        routers = n_moe * (h + int(bool(arch.extra.get("router_bias")))) * arch.num_experts  # Linear(h → experts)
        if arch.model_type in ("qwen2_moe",) and arch.shared_expert_intermediate_size:
            shared = n_moe * _mlp(h, arch.shared_expert_intermediate_size, True, False)
            routers += n_moe * h  # shared_expert_gate: Linear(h → 1)
        elif arch.num_shared_experts:
            # DeepSeek: the shared experts are one MLP of width moe_intermediate_size x n_shared_experts
            shared = n_moe * _mlp(h, mi * arch.num_shared_experts, True, False)
    vision = projector = 0
    if arch.vision is not None:
        vision, projector = vision_params(arch.vision)
    total = embedding + lm_head + attention + mlp_dense + experts + shared + routers + norms + vision + projector
    largest = max(embedding, lm_head, dense_mlp // (3 if arch.gated_mlp else 2) if dense_mlp else 0)
    active = total - experts + (n_moe * arch.num_experts_per_tok * expert_size if n_moe else 0)
    return ParamCount(total=total, embedding=embedding, lm_head=lm_head, attention=attention, mlp_dense=mlp_dense,
                      experts=experts, shared_experts=shared, routers=routers, norms=norms, vision=vision,
                      projector=projector, largest_layer=largest, active_per_token=active)


# Module names per LoRA target, and the (in, out) of each in one layer.
def lora_module_shapes(arch: ModelArch, targets: list[str], include_experts: bool = False,
                       peft_version: str | None = None) -> list[tuple[str, int, int, int]]:
    """(name, in_features, out_features, count over the model) for every Linear LoRA wraps in the LM.

    targets ["all"] is PEFT's all-linear (every nn.Linear except lm_head). Routed experts are fused
    3-D parameters in transformers >= 5 (not nn.Linear), so all-linear skips them unless include_experts.
    """
    h, L = arch.hidden_size, arch.num_layers
    q, kv = arch.num_heads * arch.head_dim, arch.num_kv_heads * arch.head_dim
    want = {t.strip() for item in targets for t in str(item).split(",") if t.strip()}  # "q_proj,v_proj" too
    allt = not want or "all" in want or "all-linear" in want
    mods: list[tuple[str, int, int, int]] = []
    if arch.is_mla:
        qk_hd = (arch.qk_nope_head_dim or 0) + (arch.qk_rope_head_dim or 0)
        if arch.q_lora_rank:
            mods += [("q_a_proj", h, arch.q_lora_rank, L), ("q_b_proj", arch.q_lora_rank, arch.num_heads * qk_hd, L)]
        else:
            mods += [("q_proj", h, arch.num_heads * qk_hd, L)]
        mods += [("kv_a_proj_with_mqa", h, arch.kv_lora_rank + arch.qk_rope_head_dim, L),
                 ("kv_b_proj", arch.kv_lora_rank, arch.num_heads * (arch.qk_nope_head_dim + arch.v_head_dim), L),
                 ("o_proj", arch.num_heads * arch.v_head_dim, h, L)]
    elif arch.extra.get("fused_qkv"):
        mods += [("qkv_proj", h, q + 2 * kv, L), ("o_proj", q, h, L)]
    else:
        mods += [("q_proj", h, q, L), ("k_proj", h, kv, L), ("v_proj", h, kv, L),
                 ("dense" if arch.model_type == "phi" else "o_proj", q, h, L)]
    moe = _moe_layer_indices(arch)
    n_dense = L - len(moe)
    i = arch.intermediate_size
    if arch.gated_mlp:
        if arch.extra.get("fused_qkv") and arch.model_type == "phi3":
            mods += [("gate_up_proj", h, 2 * i, n_dense), ("down_proj", i, h, n_dense)]
        else:
            mods += [("gate_proj", h, i, n_dense), ("up_proj", h, i, n_dense), ("down_proj", i, h, n_dense)]
    else:
        mods += [("fc1", h, i, n_dense), ("fc2", i, h, n_dense)]
    if moe:
        mi = arch.moe_intermediate_size or i
        if arch.shared_expert_intermediate_size:
            si = arch.shared_expert_intermediate_size
            mods += [("shared_expert.gate_proj", h, si, len(moe)), ("shared_expert.up_proj", h, si, len(moe)),
                     ("shared_expert.down_proj", si, h, len(moe)), ("shared_expert_gate", h, 1, len(moe))]
        elif arch.num_shared_experts:
            si = mi * arch.num_shared_experts
            mods += [("shared_experts.gate_proj", h, si, len(moe)), ("shared_experts.up_proj", h, si, len(moe)),
                     ("shared_experts.down_proj", si, h, len(moe))]
        if include_experts:
            n = len(moe) * arch.num_experts
            mods += [("experts.gate_proj", h, mi, n), ("experts.up_proj", h, mi, n), ("experts.down_proj", mi, h, n)]
    release = peft_moe_retargeting(peft_version)
    if not include_experts and lora_wraps_experts(arch, targets, peft_version) and not release.keeps_linear_namesakes:
        # PEFT 0.21's re-targeting moves every target named like a v4 expert projection (gate_proj/up_proj/down_proj,
        # w1-w3) to the fused expert parameters and drops it from the module targets, so the dense and shared-expert MLPs
        # of the same names get no adapter (measured with peft 0.21 on DeepSeek-V2; huggingface/peft#3711)
        mods = [m for m in mods if m[0].split(".")[-1] not in _V4_EXPERT_NAMES]
    if allt:
        return mods
    return [m for m in mods if m[0] in want or m[0].split(".")[-1] in want]


def lora_vision_shapes(v: VisionArch, lm_hidden: int) -> list[tuple[str, int, int, int]]:
    """Linear layers of the vision tower and projector (PEFT all-linear reaches them unless the tower is excluded)."""
    h, i, L = v.hidden_size, v.intermediate_size, v.num_layers
    mods = [("vision.qkv", h, 3 * h, L), ("vision.proj", h, h, L)]
    if v.gated_mlp:
        mods += [("vision.gate", h, i, L), ("vision.up", h, i, L), ("vision.down", i, h, L)]
    else:
        mods += [("vision.fc1", h, i, L), ("vision.fc2", i, h, L)]
    m = v.spatial_merge_size ** 2 * h
    if v.kind in ("qwen2_vl", "qwen2_5_vl", "moonvit"):
        mods += [("merger.0", m, m, 1), ("merger.2", m, v.projector_hidden or lm_hidden, 1)]
    else:
        mods += [("projector.1", h, lm_hidden, 1), ("projector.2", lm_hidden, lm_hidden, 1)]
    return mods


class PeftMoeRetargeting(BaseModel, frozen=True):
    """What one PEFT release does to a LoRA config written for transformers v4 MoE models (experts were nn.Linear) on
    transformers v5, whose routed experts are fused 3-D parameters (peft/utils/transformers_weight_conversion.py)."""

    release: tuple[int, int]
    model_types: frozenset[str] = Field(description="model types whose experts all-linear re-targets")
    keeps_linear_namesakes: bool = Field(description="dense and shared-expert MLPs named like v4 expert projections "
                                                     "(gate_proj, up_proj, down_proj) keep their own adapters")

    @property
    def version(self) -> str:
        """The release as a version string ("0.22")."""
        return ".".join(map(str, self.release))


_V4_MOE_LAYOUTS = frozenset({"mixtral", "olmoe", "deepseek_v2", "deepseek_v3", "qwen3_moe", "glm4_moe"})
# PEFT 0.21 re-targets the model types transformers converts from the qwen2_moe and mixtral layouts
# (_MODEL_TO_CONVERSION_PATTERN; huggingface/peft#3232: "all-linear carries the experts into target_parameters"), but
# not Qwen2-MoE itself (the calibration row of Qwen1.5-MoE-A2.7B, measured with peft 0.21.0, counts no expert adapters),
# and drops the dense/shared MLPs of the same names. PEFT 0.22 adds qwen2_moe to the conversion patterns and keeps a
# target module whose matches are all nn.Linear while also targeting the fused parameter of that name
# (huggingface/peft#3945); both measured with peft 0.22.0 on the tiny Qwen2-MoE and DeepSeek-V3 layouts of the tests.
PEFT_MOE_RETARGETING = (
    PeftMoeRetargeting(release=(0, 21), model_types=_V4_MOE_LAYOUTS, keeps_linear_namesakes=False),
    PeftMoeRetargeting(release=(0, 22), model_types=_V4_MOE_LAYOUTS | {"qwen2_moe"}, keeps_linear_namesakes=True),
)
_NO_RETARGETING = PeftMoeRetargeting(release=(0, 0), model_types=frozenset(), keeps_linear_namesakes=False)
_V4_EXPERT_NAMES = {"gate_proj", "up_proj", "down_proj", "w1", "w2", "w3"}
_RELEASE = re.compile(r"v?(\d{1,4})\.(\d{1,6})")


def peft_moe_retargeting(peft_version: str | None) -> PeftMoeRetargeting:
    """The re-targeting the PEFT release `peft_version` ("0.21.2") does; None or an unreadable version: the newest
    release modelled (what a fresh install gets); a release before 0.21: none (all-linear skips the fused experts)."""
    m = _RELEASE.match(peft_version.strip()) if peft_version else None
    if m is None:
        return PEFT_MOE_RETARGETING[-1]
    release = (int(m.group(1)), int(m.group(2)))
    known = [r for r in PEFT_MOE_RETARGETING if r.release <= release]
    return known[-1] if known else _NO_RETARGETING


def lora_wraps_experts(arch: ModelArch, targets: list[str], peft_version: str | None = None) -> bool:
    """Whether PEFT's LoRA reaches the routed experts (lora.ParamWrapper on the fused expert weights and the router):
    all-linear, or v4 expert projection names, on a model type the PEFT release re-targets."""
    if not arch.is_moe or arch.model_type not in peft_moe_retargeting(peft_version).model_types:
        return False
    want = {t.strip() for item in targets for t in str(item).split(",") if t.strip()}
    return not want or bool(want & {"all", "all-linear"}) or bool(want & _V4_EXPERT_NAMES)


def expert_lora_params(arch: ModelArch, rank: int) -> int:
    """Adapter parameters lora.ParamWrapper adds per model (experts x rank rows per wrapped 3-D weight): gate_up_proj at
    rank 2r (two fused v4 projections: PEFT's rank_pattern), down_proj at r, and the router weight (E x h) at r."""
    h, E = arch.hidden_size, arch.num_experts
    mi = arch.moe_intermediate_size or arch.intermediate_size
    per_layer = 2 * rank * E * (h + 2 * mi) + rank * E * (mi + h) + rank * (h + E)
    return len(_moe_layer_indices(arch)) * per_layer


def lora_params(arch: ModelArch, rank: int, targets: list[str], *, vision: bool = False,
                include_experts: bool = False, peft_version: str | None = None) -> int:
    """LoRA adapter parameters: r x (in + out) per wrapped Linear (Hu et al. 2021, A: in→r, B: r→out), plus the expert
    adapters PEFT adds on re-targeted MoE models (lora_wraps_experts)."""
    mods = lora_module_shapes(arch, targets, include_experts, peft_version)
    if vision and arch.vision is not None:
        mods = mods + lora_vision_shapes(arch.vision, arch.hidden_size)
    n = sum(rank * (i + o) * n for _, i, o, n in mods)
    if not include_experts and lora_wraps_experts(arch, targets, peft_version):
        n += expert_lora_params(arch, rank)
    return n
