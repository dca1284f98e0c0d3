"""Architecture facts the calculator needs, read from a Hugging Face config.json (any family), plus
the VisionArch of multimodal models. Loading, registry lookups and parameter counts live in
tools.memory (`load_model_arch`, `resolve_model`, `count_params`)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class VisionArch(BaseModel):
    """A ViT-style vision tower (CLIP, SigLIP, Qwen2-VL's, MoonViT) and the projector into the LM."""

    kind: str = Field(description="clip | siglip | qwen2_vl | qwen2_5_vl | moonvit | other")
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    patch_size: int = 14
    image_size: int | None = Field(default=None, description="fixed input size (CLIP-L-336: 336); None for dynamic resolution")
    spatial_merge_size: int = Field(default=1, description="tokens merged per side before the LM (Qwen2-VL: 2)")
    temporal_patch_size: int = 1
    in_channels: int = 3
    gated_mlp: bool = False
    window_attention: bool = False
    projector_hidden: int | None = None
    projector_kind: str = Field(default="mlp2x", description="mlp2x (LLaVA linear-GELU-linear) | merger (Qwen-VL, MoonViT patch merger) | gemma3 (RMSNorm + one matrix)")
    tokens_per_image: int | None = Field(default=None, description="LM tokens per image when fixed (CLIP-L-336: 576, Gemma3: 256)")
    num_params: int | None = Field(default=None, description="exact count when known; else computed from the fields")
    checkpointing: bool = Field(default=True, description="the encoder honours gradient_checkpointing_enable(); "
                                "MoonViT's encoder loops over its blocks without a checkpoint hook")


class ModelArch(BaseModel):
    """A decoder LM (optionally MoE, MLA, with a vision tower): enough to count parameters exactly
    and to size activations per layer."""

    model_type: str
    name: str | None = None
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    tie_word_embeddings: bool = False
    hidden_act: str = "silu"
    gated_mlp: bool = True
    attention_bias: bool = False
    qkv_bias: bool = False
    mlp_bias: bool = False
    norm: str = Field(default="rmsnorm", description="rmsnorm | layernorm (layernorm has a bias)")
    parallel_attn_mlp: bool = False
    partial_rotary_factor: float = 1.0
    # mixture of experts
    num_experts: int = 0
    num_experts_per_tok: int = 0
    moe_intermediate_size: int | None = None
    num_shared_experts: int = 0
    shared_expert_intermediate_size: int | None = None
    first_k_dense: int = Field(default=0, description="leading dense layers before MoE layers (DeepSeek)")
    moe_layer_freq: int = 1
    # multi-head latent attention (DeepSeek-V2/V3, Kimi)
    q_lora_rank: int | None = None
    kv_lora_rank: int | None = None
    qk_rope_head_dim: int | None = None
    qk_nope_head_dim: int | None = None
    v_head_dim: int | None = None
    # multimodal
    vision: VisionArch | None = None
    max_position_embeddings: int | None = None
    attention_impls: list[str] | None = Field(
        default=None, description="attention implementations the modeling code provides; None: eager, sdpa and "
        "flash_attention_2 as transformers' own classes do (remote code such as Kimi-VL's has no sdpa path)")
    extra: dict = Field(default_factory=dict, description="family-specific facts not modelled above")

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @property
    def is_mla(self) -> bool:
        return self.kv_lora_rank is not None
