"""Read a Hugging Face config.json (any supported family) into a ModelArch: the facts the calculator needs.

Each family spells the same facts differently (num_local_experts vs num_experts, n_routed_experts,
text_config/vision_config nesting); this module maps them onto one vocabulary so counting and
sizing never look at raw configs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..model_arch import ModelArch, VisionArch

MAX_CONFIG_BYTES = 2 * 1024 * 1024  # a config.json is a few KiB; refuse anything absurd

# Families whose layout this module knows (text part; vision handled separately).
KNOWN_TEXT_TYPES = {
    "llama", "mistral", "mixtral", "qwen2", "qwen3", "qwen2_moe", "qwen3_moe", "gemma", "gemma2", "gemma3_text",
    "phi", "phi3", "deepseek_v2", "deepseek_v3", "olmoe", "baichuan", "chatglm", "glm", "glm4", "internlm2",
    "yi", "codellama", "starcoder2", "falcon", "gpt_neox", "olmo", "olmo2", "cohere", "granite",
    "qwen2_vl", "qwen2_5_vl", "kimi_vl", "bloom", "opt", "gpt2", "gpt_oss",
}
# The pre-LLaMA decoders (GPT-2, OPT, BLOOM): LayerNorm, a plain two-matrix MLP and biases everywhere, tied embeddings.
CLASSIC_TYPES = {"bloom", "opt", "gpt2"}


def load_model_arch(source: dict | str | Path, name: str | None = None) -> ModelArch:
    """A ModelArch from a config.json dict, a path to config.json, or a model directory holding one.

    Raises InputError when the file is missing, too large, not JSON, or not a decoder LM config.
    """
    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.is_dir():
            path = path / "config.json"
        if not path.is_file():
            raise InputError(f"model config not found: {path} (pass a config.json or a model directory)")
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise InputError(f"{path} is larger than 2 MiB: not a model config.json")
        try:
            cfg = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"{path} is not valid JSON: {exc}") from None
        name = name or path.parent.name or None
    else:
        cfg = source
    if not isinstance(cfg, dict):
        raise InputError("model config must be a JSON object (the model's config.json)")
    return arch_from_config(cfg, name=name or cfg.get("_name_or_path") or None)


def _get(cfg: dict, *keys: str, default: Any = None) -> Any:
    for k in keys:
        if k in cfg and cfg[k] is not None:
            return cfg[k]
    return default


def arch_from_config(cfg: dict, name: str | None = None) -> ModelArch:
    """Map one config.json (top level, possibly with text_config / vision_config) to a ModelArch."""
    model_type = str(cfg.get("model_type", "")).lower()
    vision: VisionArch | None = None
    text = cfg
    outer_tie = cfg.get("tie_word_embeddings")
    if model_type in ("qwen2_vl", "qwen2_5_vl"):
        text = {**cfg, **(cfg.get("text_config") or {})}
        vision = _qwen_vl_vision(cfg.get("vision_config") or {}, model_type, text)
        text_type = model_type
    elif model_type in ("llava", "llava_next", "kimi_vl", "gemma3", "mistral3", "moe_llava", "llava_phi"):
        text = dict(cfg.get("text_config") or {})
        if model_type == "gemma3" and not text:
            text = cfg
        vision = _vit_vision(cfg.get("vision_config") or {}, cfg, text)
        text_type = str(text.get("model_type") or _default_text_type(model_type)).lower()
        if outer_tie is not None and "tie_word_embeddings" not in text:
            text["tie_word_embeddings"] = outer_tie
    else:
        text_type = model_type
    if not text_type:
        raise InputError("config.json has no model_type: is this a Hugging Face model config?")
    h = _get(text, "hidden_size", "n_embd", "d_model")
    n_layers = _get(text, "num_hidden_layers", "n_layer", "num_layers")
    n_heads = _get(text, "num_attention_heads", "n_head", "num_heads")
    vocab = _get(text, "vocab_size", "padded_vocab_size")
    if not all(isinstance(v, int) and v > 0 for v in (h, n_layers, n_heads, vocab)):
        raise InputError(f"config.json ({text_type or 'unknown type'}) lacks hidden_size / num_hidden_layers / "
                         "num_attention_heads / vocab_size: not a decoder LM config")
    n_kv = _get(text, "num_key_value_heads", "multi_query_group_num", default=n_heads)
    if text.get("multi_query_attention") is False:
        n_kv = n_heads
    head_dim = _get(text, "head_dim", "kv_channels", default=h // n_heads)
    inter = _get(text, "intermediate_size", "ffn_hidden_size", "n_inner", default=4 * h)
    tie = _get(text, "tie_word_embeddings", default=_default_tie(text_type))
    fields: dict[str, Any] = dict(
        model_type=text_type, name=name, hidden_size=h, num_layers=n_layers, num_heads=n_heads,
        num_kv_heads=n_kv, head_dim=head_dim, intermediate_size=inter, vocab_size=vocab,
        tie_word_embeddings=bool(tie), hidden_act=str(_get(text, "hidden_act", "hidden_activation", default="silu")),
        max_position_embeddings=_get(text, "max_position_embeddings", "seq_length"),
        vision=vision,
    )
    extra: dict[str, Any] = {}
    if model_type in ("qwen2_vl", "qwen2_5_vl"):
        fields["qkv_bias"] = True
    if text_type in ("qwen2", "qwen2_moe", "qwen2_vl", "qwen2_5_vl"):
        fields["qkv_bias"] = True
    if text_type in ("llama", "mistral", "olmo", "olmo2", "granite", "qwen3", "qwen3_moe", "deepseek_v2", "deepseek_v3",
                     "kimi_vl", "olmoe") and text.get("attention_bias"):
        fields["attention_bias"] = True
    if text.get("mlp_bias"):
        fields["mlp_bias"] = True
    if text_type in ("qwen3", "qwen3_moe", "gemma3_text", "gemma3", "olmo2"):
        extra["qk_norm"] = "head"  # RMSNorm over head_dim on q and k (Qwen3, Gemma3)
    if text_type == "olmoe" or text_type == "olmo2":
        extra["qk_norm"] = "full"  # OLMoE: RMSNorm over all q heads and all kv heads
    if text_type in ("gemma2", "gemma3_text", "gemma3"):
        extra["sandwich_norm"] = True  # 4 RMSNorms per layer (pre/post attention and feed-forward)
        # sliding-window and global layers alternate (layer_types): the model builds one b x 1 x s x s mask for each kind
        extra["mask_kinds"] = 2
    if text_type == "gemma2":
        # transformers' Gemma2PreTrainedModel sets _supports_sdpa = False ("sdpa does not support softcapping"): with
        # no attn_implementation (LLaMA-Factory flash_attn auto) it loads eager; only flash-attn (or flex) avoids the
        # b x heads x s x s scores. attn_logit_softcapping (50.0 by default) keeps tanh's output per score as well
        fields["attention_impls"] = ["eager", "flash_attention_2"]
        if text.get("attn_logit_softcapping", 50.0):
            extra["attn_softcap"] = True
    if text_type == "phi":
        fields.update(norm="layernorm", gated_mlp=False, attention_bias=True, qkv_bias=True, mlp_bias=True,
                      parallel_attn_mlp=True, partial_rotary_factor=float(text.get("partial_rotary_factor", 0.5)),
                      hidden_act=str(text.get("hidden_act", "gelu_new")))
        extra["lm_head_bias"] = True
    if text_type == "phi3":
        extra["fused_qkv"] = True
    # mixture of experts
    if text_type == "gpt_oss":
        # transformers' GptOss: biased q/k/v/o projections, one learned sink logit per head, biased experts and router
        fields.update(attention_bias=True, mlp_bias=True)
        extra.update(attention_sinks=True, router_bias=True)
    if text_type in ("mixtral", "gpt_oss"):   # gpt-oss: num_local_experts gated MLPs of intermediate_size each
        fields.update(num_experts=int(text.get("num_local_experts", 8)), num_experts_per_tok=int(text.get("num_experts_per_tok", 2)),
                      moe_intermediate_size=inter)
    elif text_type in ("qwen2_moe", "qwen3_moe"):
        fields.update(num_experts=int(text["num_experts"]), num_experts_per_tok=int(text.get("num_experts_per_tok", 4)),
                      moe_intermediate_size=int(text["moe_intermediate_size"]),
                      moe_layer_freq=int(text.get("decoder_sparse_step", 1) or 1))
        if text_type == "qwen2_moe" and text.get("shared_expert_intermediate_size"):
            fields.update(num_shared_experts=1, shared_expert_intermediate_size=int(text["shared_expert_intermediate_size"]))
        extra["mlp_only_layers"] = list(text.get("mlp_only_layers") or [])
    elif text_type == "olmoe":
        fields.update(num_experts=int(text["num_experts"]), num_experts_per_tok=int(text.get("num_experts_per_tok", 8)),
                      moe_intermediate_size=inter)
    elif text_type in ("deepseek_v2", "deepseek_v3", "kimi_vl", "deepseek"):
        if text.get("n_routed_experts"):
            fields.update(num_experts=int(text["n_routed_experts"]), num_experts_per_tok=int(text.get("num_experts_per_tok", 6)),
                          moe_intermediate_size=int(text["moe_intermediate_size"]),
                          num_shared_experts=int(text.get("n_shared_experts") or 0),
                          first_k_dense=int(text.get("first_k_dense_replace", 0) or 0),
                          moe_layer_freq=int(text.get("moe_layer_freq", 1) or 1))
        if text.get("kv_lora_rank"):
            fields.update(q_lora_rank=text.get("q_lora_rank"), kv_lora_rank=int(text["kv_lora_rank"]),
                          qk_rope_head_dim=int(text["qk_rope_head_dim"]), qk_nope_head_dim=int(text["qk_nope_head_dim"]),
                          v_head_dim=int(text["v_head_dim"]))
        extra["router_bias_buffer"] = text_type != "deepseek_v2"
    elif text.get("moe_num_experts") or text.get("num_experts"):
        # MoE-LLaVA style (phi + MoE layers): experts replace the MLP in every moe_layers_idx layer
        n_exp = int(text.get("moe_num_experts") or text.get("num_experts"))
        fields.update(num_experts=n_exp, num_experts_per_tok=int(text.get("moe_top_k_experts") or text.get("num_experts_per_tok") or 2),
                      moe_intermediate_size=inter)
        if text.get("moe_layers_idx"):
            extra["moe_layers_idx"] = list(text["moe_layers_idx"])
    if text_type in CLASSIC_TYPES:
        fields.update(norm="layernorm", gated_mlp=False, attention_bias=True, qkv_bias=True, mlp_bias=True,
                      tie_word_embeddings=bool(_get(text, "tie_word_embeddings", default=True)),
                      hidden_act=str(_get(text, "activation_function", "hidden_act",
                                          default={"bloom": "gelu", "opt": "relu"}.get(text_type, "gelu_new"))))
        if text_type == "gpt2":   # learned absolute positions; n_inner null means 4 x n_embd
            fields["max_position_embeddings"] = _get(text, "n_positions", "n_ctx", default=1024)
            extra["learned_positions"] = fields["max_position_embeddings"]
        elif text_type == "opt":   # OPT's learned positions carry an offset of 2
            fields["intermediate_size"] = int(_get(text, "ffn_dim", default=4 * h))
            extra["learned_positions"] = int(fields["max_position_embeddings"] or 2048) + 2
        else:   # BLOOM: ALiBi, a LayerNorm on the word embeddings, and only the eager attention in transformers
            extra["embedding_norm"] = True
            fields["attention_impls"] = ["eager"]
    if text_type in ("chatglm", "glm"):
        fields.update(qkv_bias=bool(text.get("add_qkv_bias", True)))
        extra["fused_qkv"] = True
    if model_type == "kimi_vl":
        # Kimi-VL's remote modeling_kimi_vl.py (DeepSeek-V3 text code) maps only "eager" and
        # "flash_attention_2" in its attention-class table: without flash-attn it runs eager
        fields["attention_impls"] = ["eager", "flash_attention_2"]
    # residual-branch dropout that is on by default in some checkpoints' config.json (Phi-2 resid_pdrop 0.1, GPT-2
    # resid_pdrop 0.1, OPT dropout 0.1): modeling_phi/gpt2/opt apply it to the attention and the MLP outputs
    # (an absent key takes the config class's default: PhiConfig 0.0, GPT2Config 0.1, OPTConfig 0.1)
    resid_key, resid_default = {"phi": ("resid_pdrop", 0.0), "gpt2": ("resid_pdrop", 0.1),
                                "opt": ("dropout", 0.1)}.get(text_type, ("", 0.0))
    resid_p = float(_get(text, resid_key, default=resid_default) or 0.0) if resid_key else 0.0
    if resid_p > 0:
        extra["resid_dropout"] = resid_p
    extra["architectures"] = list(cfg.get("architectures") or [])
    fields["extra"] = extra
    return ModelArch(**fields)


def _default_text_type(model_type: str) -> str:
    return {"llava": "llama", "llava_next": "llama", "kimi_vl": "deepseek_v3", "gemma3": "gemma3_text",
            "moe_llava": "phi", "llava_phi": "phi", "mistral3": "mistral"}.get(model_type, model_type)


def _default_tie(model_type: str) -> bool:
    # transformers' per-family default for tie_word_embeddings when config.json omits it
    return model_type in ("gemma", "gemma2", "gemma3_text", "gemma3")


def _qwen_vl_vision(vc: dict, model_type: str, text: dict) -> VisionArch:
    """Qwen2-VL / Qwen2.5-VL vision tower: 14-px patches, 2x2 spatial merge, temporal patch 2."""
    if model_type == "qwen2_vl":
        embed = int(vc.get("embed_dim", 1280))
        mlp = int(embed * float(vc.get("mlp_ratio", 4)))
        return VisionArch(kind="qwen2_vl", hidden_size=embed, num_layers=int(vc.get("depth", 32)),
                          num_heads=int(vc.get("num_heads", 16)), intermediate_size=mlp,
                          patch_size=int(vc.get("patch_size", vc.get("spatial_patch_size", 14))),
                          spatial_merge_size=int(vc.get("spatial_merge_size", 2)),
                          temporal_patch_size=int(vc.get("temporal_patch_size", 2)),
                          in_channels=int(vc.get("in_channels", vc.get("in_chans", 3))),
                          projector_hidden=int(vc.get("hidden_size", text.get("hidden_size"))))
    return VisionArch(kind="qwen2_5_vl", hidden_size=int(vc.get("hidden_size", 1280)), num_layers=int(vc.get("depth", 32)),
                      num_heads=int(vc.get("num_heads", 16)), intermediate_size=int(vc.get("intermediate_size", 3420)),
                      patch_size=int(vc.get("patch_size", 14)), spatial_merge_size=int(vc.get("spatial_merge_size", 2)),
                      temporal_patch_size=int(vc.get("temporal_patch_size", 2)),
                      in_channels=int(vc.get("in_channels", vc.get("in_chans", 3))), gated_mlp=True, window_attention=True,
                      projector_hidden=int(vc.get("out_hidden_size", text.get("hidden_size"))))


def _vit_vision(vc: dict, cfg: dict, text: dict) -> VisionArch:
    """CLIP / SigLIP / MoonViT towers of LLaVA-style models (fixed or native resolution)."""
    vtype = str(vc.get("model_type", "clip_vision_model")).lower()
    mt = str(cfg.get("model_type", "")).lower()
    if mt == "kimi_vl" or "moonvit" in vtype:
        kind = "moonvit"
    elif "siglip" in vtype:
        kind = "siglip"
    elif "clip" in vtype:
        kind = "clip"
    else:
        kind = "other"
    image_size = vc.get("image_size")
    if kind == "moonvit":
        image_size = None
    tokens = None
    if image_size and kind != "moonvit":
        tokens = (int(image_size) // int(vc.get("patch_size", 14))) ** 2  # one LM token per patch (LLaVA, CLIP-L-336: 576)
    projector_kind = "merger" if kind == "moonvit" else "mlp2x"
    if mt == "gemma3":
        projector_kind, tokens = "gemma3", int(cfg.get("mm_tokens_per_image", 256))  # patches average-pooled to 256
    return VisionArch(kind=kind, hidden_size=int(vc.get("hidden_size", 1024)), projector_kind=projector_kind,
                      tokens_per_image=tokens,
                      num_layers=int(vc.get("num_hidden_layers", 24)), num_heads=int(vc.get("num_attention_heads", 16)),
                      intermediate_size=int(vc.get("intermediate_size", 4096)), patch_size=int(vc.get("patch_size", 14)),
                      image_size=int(image_size) if image_size else None,
                      spatial_merge_size=int(vc.get("merge_kernel_size", [1])[0]) if kind == "moonvit" else 1,
                      in_channels=int(vc.get("num_channels", 3)),
                      projector_hidden=int(text.get("hidden_size", 0)) or None,
                      # Kimi-VL's remote MoonVitEncoder.forward calls each block directly (no gradient_checkpointing
                      # attribute, so transformers' gradient_checkpointing_enable() leaves the tower un-checkpointed)
                      checkpointing=kind != "moonvit")
