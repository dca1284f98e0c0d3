"""Per-layer activation formulas against what autograd really saves, measured on CPU with real models.

Tiny configs of each family are built with transformers; a saved_tensors_hooks pass records every
tensor autograd keeps for backward (deduplicated by storage, parameters excluded) and the total
is compared with activations.model_activation_bytes. CPU sdpa uses the flash kernel (q, k, v,
output, logsumexp are saved) like CUDA does, so the counts carry over to GPUs.
"""

from __future__ import annotations

import json
import warnings

import pytest

from ask_oom.tools.memory import load_model_arch
from ask_oom.tools.memory.activations import ActPolicy, lora_inputs_per_layer, model_activation_bytes

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

B, S = 2, 64


def _build(cfg: dict, dtype, attn: str = "sdpa"):
    config = transformers.AutoConfig.for_model(**json.loads(json.dumps(cfg)))
    config._attn_implementation = attn
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = transformers.AutoModelForCausalLM.from_config(config).to(dtype)
    model.train()
    return model


def saved_activation_bytes(model, vocab: int, autocast: bool = False) -> int:
    """Bytes of the distinct non-parameter storages autograd saves during one forward (no loss)."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    param_shapes = {tuple(p.shape) for p in model.parameters() if p.dim() == 2}
    param_shapes |= {shape[::-1] for shape in param_shapes}  # Linear saves the weight transposed
    seen: dict[int, int] = {}

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        weight_copy = autocast and t.dim() == 2 and tuple(t.shape) in param_shapes  # autocast's bf16 weight cache
        if ptr not in params and not weight_copy:
            seen[ptr] = t.untyped_storage().nbytes()
        return t

    ids = torch.randint(0, vocab, (B, S))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        if autocast:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                model(input_ids=ids)
        else:
            model(input_ids=ids)
    return sum(seen.values())


FAMILIES = [
    dict(model_type="llama", hidden_size=256, intermediate_size=704, num_hidden_layers=2, num_attention_heads=8,
         num_key_value_heads=8, vocab_size=512),
    dict(model_type="qwen2", hidden_size=256, intermediate_size=704, num_hidden_layers=2, num_attention_heads=8,
         num_key_value_heads=2, vocab_size=512),
    dict(model_type="qwen3", hidden_size=256, intermediate_size=704, num_hidden_layers=2, num_attention_heads=8,
         num_key_value_heads=2, head_dim=64, vocab_size=512),
    dict(model_type="mistral", hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=8,
         num_key_value_heads=4, vocab_size=512),
    dict(model_type="gemma", hidden_size=256, intermediate_size=704, num_hidden_layers=2, num_attention_heads=4,
         num_key_value_heads=1, head_dim=96, vocab_size=512, pad_token_id=0),
    dict(model_type="phi", hidden_size=256, intermediate_size=1024, num_hidden_layers=2, num_attention_heads=8,
         vocab_size=512),
    dict(model_type="phi3", hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=8,
         num_key_value_heads=2, vocab_size=512, pad_token_id=0, eos_token_id=1, bos_token_id=1),
    dict(model_type="mixtral", hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=8,
         num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2, vocab_size=512),
    dict(model_type="qwen2_moe", hidden_size=256, intermediate_size=512, moe_intermediate_size=128,
         shared_expert_intermediate_size=512, num_experts=8, num_experts_per_tok=2, num_hidden_layers=2,
         num_attention_heads=8, num_key_value_heads=2, vocab_size=512),
    dict(model_type="olmoe", hidden_size=256, intermediate_size=128, num_hidden_layers=2, num_attention_heads=8,
         num_key_value_heads=8, num_experts=8, num_experts_per_tok=2, vocab_size=512),
    dict(model_type="deepseek_v3", hidden_size=256, intermediate_size=512, moe_intermediate_size=64,
         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4, n_routed_experts=8, n_shared_experts=1,
         num_experts_per_tok=2, first_k_dense_replace=1, q_lora_rank=96, kv_lora_rank=64, qk_rope_head_dim=16,
         qk_nope_head_dim=32, v_head_dim=48, vocab_size=512, n_group=1, topk_group=1),
]


@pytest.mark.parametrize("cfg", FAMILIES, ids=[c["model_type"] for c in FAMILIES])
def test_full_bf16_activations_match_autograd(cfg):
    measured = saved_activation_bytes(_build(cfg, torch.bfloat16), cfg["vocab_size"])
    predicted = model_activation_bytes(load_model_arch(cfg), ActPolicy(True, False, {}, 2, False), B * S)
    assert predicted == pytest.approx(measured, rel=0.06)


def test_autocast_fp32_master_activations_match_autograd():
    """fp32 weights under bf16 autocast: fp32 residual stream and one bf16 input cast per Linear."""
    cfg = FAMILIES[1]
    measured = saved_activation_bytes(_build(cfg, torch.float32), cfg["vocab_size"], autocast=True)
    predicted = model_activation_bytes(load_model_arch(cfg), ActPolicy(True, True, {}, 2, False), B * S)
    assert predicted == pytest.approx(measured, rel=0.08)


@pytest.mark.parametrize("autocast", [False, True], ids=["plain", "autocast"])
def test_lora_activations_match_autograd(autocast):
    """Frozen bf16 base, fp32 adapters on all linear layers (PEFT casts each adapter's input to fp32;
    under autocast, as HF Trainer runs it with bf16=True, lora_A keeps a bf16 cast instead)."""
    peft = pytest.importorskip("peft")
    cfg = FAMILIES[1]
    model = _build(cfg, torch.bfloat16)
    lora = peft.get_peft_model(model, peft.LoraConfig(r=8, lora_alpha=16, target_modules="all-linear"))
    for n, p in lora.named_parameters():
        if "lora_" in n:
            p.data = p.data.float()
    lora.enable_input_require_grads()
    measured = saved_activation_bytes(lora, cfg["vocab_size"], autocast=autocast)
    arch = load_model_arch(cfg)
    policy = ActPolicy(False, False, lora_inputs_per_layer(arch, ["all"]), 2, False, lora_input_bytes=2 if autocast else 4)
    assert model_activation_bytes(arch, policy, B * S) == pytest.approx(measured, rel=0.08)


def test_eager_attention_keeps_the_probabilities():
    """Eager attention saves the fp32 softmax and its bf16 copy (b x heads x s x s each) per layer."""
    from ask_oom.tools.memory.activations import attention_score_bytes

    cfg = FAMILIES[1]
    measured = saved_activation_bytes(_build(cfg, torch.bfloat16, attn="eager"), cfg["vocab_size"])
    arch = load_model_arch(cfg)
    policy = ActPolicy(True, False, {}, 2, True)
    predicted = model_activation_bytes(arch, policy, B * S) + arch.num_layers * attention_score_bytes(arch, policy, B, S)
    assert predicted == pytest.approx(measured, rel=0.08)


def test_trainable_vision_tower_activations_match_autograd():
    """Qwen2.5-VL tower (RMSNorm, gated MLP, windowed attention) trained: bytes per patch per block."""
    from ask_oom.tools.memory.activations import vision_block_bytes

    cfg = {"model_type": "qwen2_5_vl",
           "text_config": {"hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 1, "num_attention_heads": 4,
                           "num_key_value_heads": 2, "vocab_size": 512,
                           "rope_scaling": {"type": "mrope", "mrope_section": [8, 12, 12]}},
           "vision_config": {"depth": 4, "hidden_size": 512, "intermediate_size": 1024, "num_heads": 8,
                             "out_hidden_size": 256, "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2,
                             "window_size": 112, "fullatt_block_indexes": [3]}}
    config = transformers.AutoConfig.for_model(**cfg)
    config._attn_implementation = "sdpa"
    config.vision_config._attn_implementation = "sdpa"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = transformers.AutoModelForImageTextToText.from_config(config).to(torch.bfloat16)
    model.train()
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t):
        if t.untyped_storage().data_ptr() not in params:
            seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    patches = 16 * 16  # one 224 x 224 image
    pixels = torch.randn(patches, 3 * 2 * 14 * 14, dtype=torch.bfloat16)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model.model.visual(pixels, grid_thw=torch.tensor([[1, 16, 16]]))
    measured_per_patch_block = sum(seen.values()) / patches / 4
    predicted = vision_block_bytes(load_model_arch(cfg).vision, True)
    assert predicted == pytest.approx(measured_per_patch_block, rel=0.08)


def _lora(model, dropout: float):
    peft = pytest.importorskip("peft")
    lora = peft.get_peft_model(model, peft.LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", lora_dropout=dropout))
    for n, p in lora.named_parameters():
        if "lora_" in n:
            p.data = p.data.float()
    lora.enable_input_require_grads()
    return lora


def test_lora_dropout_keeps_one_mask_per_adapter_input():
    """lora_dropout > 0: each adapted Linear's dropout keeps a mask of its input for backward. On CUDA the fused
    native_dropout keeps a bool mask (1 B per element, what the calculator counts); on CPU the mask has the input's
    dtype (the adapters' fp32 copy: 4 B), so the CPU difference is 4x the calculator's mask bytes."""
    from ask_oom.tools.memory.activations import DROPOUT_MASK_BYTES

    cfg = FAMILIES[1]
    arch = load_model_arch(cfg)
    measured = (saved_activation_bytes(_lora(_build(cfg, torch.bfloat16), 0.1), cfg["vocab_size"])
                - saved_activation_bytes(_lora(_build(cfg, torch.bfloat16), 0.0), cfg["vocab_size"]))
    inputs = lora_inputs_per_layer(arch, ["all"])
    with_mask = ActPolicy(False, False, inputs, 2, False, lora_input_bytes=4, lora_dropout=True)
    without = ActPolicy(False, False, inputs, 2, False, lora_input_bytes=4)
    predicted = model_activation_bytes(arch, with_mask, B * S) - model_activation_bytes(arch, without, B * S)
    assert measured == pytest.approx(predicted * 4 // DROPOUT_MASK_BYTES, rel=0.01)


def test_phi2_residual_dropout_keeps_two_masks_per_layer():
    """Phi-2's config.json sets resid_pdrop 0.1: the attention and the MLP outputs are dropped out in training, each
    keeping a mask (bool on CUDA; bf16 on CPU, 2x the calculator's 1 B)."""
    cfg = dict(FAMILIES[5])
    arch = load_model_arch({**cfg, "resid_pdrop": 0.1})
    assert arch.extra["resid_dropout"] == 0.1 and "resid_dropout" not in load_model_arch(cfg).extra
    measured = (saved_activation_bytes(_build({**cfg, "resid_pdrop": 0.1}, torch.bfloat16), cfg["vocab_size"])
                - saved_activation_bytes(_build(cfg, torch.bfloat16), cfg["vocab_size"]))
    policy = ActPolicy(True, False, {}, 2, False)
    predicted = model_activation_bytes(arch, policy, B * S) - model_activation_bytes(load_model_arch(cfg), policy, B * S)
    assert predicted == arch.num_layers * 2 * arch.hidden_size * B * S
    assert measured == pytest.approx(2 * predicted, rel=0.01)
    assert load_model_arch({"model_type": "gpt2", "n_layer": 2, "n_embd": 64, "n_head": 2, "vocab_size": 128}).extra["resid_dropout"] == 0.1


MOE_FAMILIES = [FAMILIES[8], FAMILIES[9], FAMILIES[10]]   # Qwen2-MoE (shared expert), OLMoE, DeepSeek-V3 layout (MLA + shared experts)


@pytest.mark.parametrize("cfg", MOE_FAMILIES, ids=[c["model_type"] for c in MOE_FAMILIES])
def test_lora_all_linear_on_moe_matches_the_installed_peft(cfg):
    """The PEFT release installed decides what all-linear wraps on transformers v5's fused experts (lora.ParamWrapper,
    rank 2r on gate_up, and the router), and whether the dense/shared MLPs named like v4 experts keep their adapters:
    the calculator, told that release, matches its trainable counts and saved activations (each MoE layer whose experts
    are wrapped keeps W + dW of its experts and, since those need gradients, the experts' inputs)."""
    from ask_oom.tools.memory.params import lora_params, lora_wraps_experts

    peft = pytest.importorskip("peft")
    arch = load_model_arch(cfg)
    wraps = lora_wraps_experts(arch, ["all"], peft.__version__)
    model = _lora(_build(cfg, torch.bfloat16), 0.0)
    assert wraps == any(".experts." in n for n, p in model.named_parameters() if p.requires_grad)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == lora_params(arch, 8, ["all"], peft_version=peft.__version__)
    measured = saved_activation_bytes(model, cfg["vocab_size"])
    policy = ActPolicy(False, False, lora_inputs_per_layer(arch, ["all"], peft.__version__), 2, False, lora_input_bytes=4,
                       expert_lora_rank=8 if wraps else 0)
    assert model_activation_bytes(arch, policy, B * S) == pytest.approx(measured, rel=0.06)
