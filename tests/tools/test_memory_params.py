"""Exact parameter counts: the analytic count equals transformers' own model built on the meta device."""

from __future__ import annotations

import json
import warnings

import pytest

from ask_oom.tools.memory import count_params, load_model_arch, resolve_model
from ask_oom.tools.memory.calibration import PROTOCOL_PEFT
from ask_oom.tools.memory.params import (PEFT_MOE_RETARGETING, expert_lora_params, lora_params, lora_wraps_experts,
                                         peft_moe_retargeting)
from ask_oom.tools.memory.registry import registry_config, registry_names

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

# Families transformers can build without remote code (kimi_vl, baichuan, chatglm, MoE-LLaVA need trust_remote_code).
_REMOTE_CODE = {"kimi_vl", "baichuan", "chatglm", "moe_llava"}


def meta_param_count(cfg: dict) -> int:
    """sum(p.numel()) of the model transformers instantiates from this config.json, on the meta device."""
    config = transformers.AutoConfig.for_model(**json.loads(json.dumps(cfg)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with torch.device("meta"):
            try:
                model = transformers.AutoModelForCausalLM.from_config(config)
            except ValueError:
                model = transformers.AutoModelForImageTextToText.from_config(config)
    return sum(p.numel() for p in model.parameters())


REGISTRY = [k for k in registry_names() if registry_config(k)["model_type"] not in _REMOTE_CODE]


@pytest.mark.parametrize("key", REGISTRY)
def test_registry_counts_match_transformers(key):
    cfg = registry_config(key)
    assert count_params(load_model_arch(cfg)).total == meta_param_count(cfg)


# Layout variants the registry does not cover: biases, sparse steps, dense-only layers, MLA with q_lora.
VARIANTS = [
    dict(model_type="llama", hidden_size=256, intermediate_size=688, num_hidden_layers=3, num_attention_heads=8,
         num_key_value_heads=2, vocab_size=1000, attention_bias=True, mlp_bias=True, tie_word_embeddings=False),
    dict(model_type="mistral", hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=8,
         num_key_value_heads=4, head_dim=64, vocab_size=999, tie_word_embeddings=True),
    dict(model_type="qwen2_moe", hidden_size=128, intermediate_size=384, moe_intermediate_size=64,
         shared_expert_intermediate_size=256, num_experts=8, num_experts_per_tok=2, num_hidden_layers=4,
         num_attention_heads=4, num_key_value_heads=2, vocab_size=500, decoder_sparse_step=2, mlp_only_layers=[3]),
    dict(model_type="qwen3_moe", hidden_size=128, intermediate_size=384, moe_intermediate_size=64, num_experts=8,
         num_experts_per_tok=2, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2, head_dim=48,
         vocab_size=500, mlp_only_layers=[0]),
    dict(model_type="deepseek_v2", hidden_size=256, intermediate_size=512, moe_intermediate_size=64,
         num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=4, n_routed_experts=8, n_shared_experts=1,
         num_experts_per_tok=2, first_k_dense_replace=1, q_lora_rank=96, kv_lora_rank=64, qk_rope_head_dim=16,
         qk_nope_head_dim=32, v_head_dim=32, vocab_size=700, moe_layer_freq=1),
    dict(model_type="deepseek_v3", hidden_size=256, intermediate_size=512, moe_intermediate_size=64,
         num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=4, n_routed_experts=8, n_shared_experts=2,
         num_experts_per_tok=2, first_k_dense_replace=2, q_lora_rank=None, kv_lora_rank=64, qk_rope_head_dim=16,
         qk_nope_head_dim=32, v_head_dim=48, vocab_size=700, n_group=1, topk_group=1),
    dict(model_type="phi3", hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=8,
         num_key_value_heads=2, vocab_size=600, pad_token_id=0, eos_token_id=1, bos_token_id=1),
    dict(model_type="gemma2", hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
         num_key_value_heads=2, head_dim=96, vocab_size=600),
    dict(model_type="olmoe", hidden_size=128, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
         num_key_value_heads=2, num_experts=8, num_experts_per_tok=2, vocab_size=300),
]


@pytest.mark.parametrize("cfg", VARIANTS, ids=[f"{c['model_type']}-{i}" for i, c in enumerate(VARIANTS)])
def test_layout_variants_match_transformers(cfg):
    assert count_params(load_model_arch(cfg)).total == meta_param_count(cfg)


def test_calibration_rows_n_params_are_exact(shared_dir):
    """The calibration rows' n_params are ground truth measured on the GPU."""
    seen = 0
    for line in (shared_dir / "calibration" / "gpu_peaks.jsonl").read_text().splitlines():
        row = json.loads(line)
        if "n_params" not in row or row["method"] == "qlora":  # bnb packs two 4-bit weights per element
            continue
        assert count_params(load_model_arch(row["architecture"])).total == row["n_params"], row["model"]
        seen += 1
    assert seen >= 20


@pytest.mark.parametrize("name,expected", [
    ("qwen2.5-0.5b", 494_032_768), ("qwen2.5-1.5b", 1_543_714_304), ("qwen2.5-7b", 7_615_616_512),
    ("qwen2.5-vl-7b", 8_292_166_656), ("Qwen/Qwen1.5-MoE-A2.7B", 14_315_784_192),
])
def test_registry_matches_calibration_ground_truth(name, expected):
    assert count_params(resolve_model(name)).total == expected


def test_lora_trainable_counts_match_peft_on_calibration_rows():
    """PEFT all-linear r=16 trainable counts measured with peft 0.21.0 (calibration n_trainable, the protocol's release)."""
    v = PROTOCOL_PEFT
    assert lora_params(resolve_model("qwen2.5-7b"), 16, ["all"], peft_version=v) == 40_370_176
    assert lora_params(resolve_model("qwen2.5-7b"), 64, ["all"], peft_version=v) == 161_480_704
    assert lora_params(resolve_model("qwen2.5-0.5b"), 16, ["all"], peft_version=v) == 8_798_208
    assert lora_params(resolve_model("Qwen/Qwen1.5-MoE-A2.7B"), 16, ["all"], peft_version=v) == 15_925_632
    # all-linear reaches the Qwen2.5-VL vision tower and merger too
    assert lora_params(resolve_model("qwen2.5-vl-7b"), 16, ["all"], vision=True, peft_version=v) == 51_824_640
    # dense models are the same on every release
    assert lora_params(resolve_model("qwen2.5-7b"), 16, ["all"]) == 40_370_176


def test_peft_release_decides_the_moe_retargeting():
    """0.21 re-targets the v4 MoE layouts but not Qwen2-MoE and drops the shared expert's adapters; 0.22 re-targets
    Qwen2-MoE too and keeps them; a release before 0.21 wraps no fused expert; no version read: the newest modelled."""
    moe = resolve_model("Qwen/Qwen1.5-MoE-A2.7B")
    assert not lora_wraps_experts(moe, ["all"], "0.21.0") and lora_wraps_experts(moe, ["all"], "0.22.0")
    assert lora_wraps_experts(moe, ["all"]) and not lora_wraps_experts(moe, ["all"], "0.20.1")
    assert not lora_wraps_experts(moe, ["q_proj", "v_proj"], "0.22.0")
    assert peft_moe_retargeting("v0.22.0.dev0") == peft_moe_retargeting(None) == PEFT_MOE_RETARGETING[-1]
    assert peft_moe_retargeting("1.0") == PEFT_MOE_RETARGETING[-1] and peft_moe_retargeting("unknown") == PEFT_MOE_RETARGETING[-1]
    assert peft_moe_retargeting("0.21.2").release == (0, 21) and not peft_moe_retargeting("0.19.1").model_types
    # the extra trainable weights 0.22 gives Qwen1.5-MoE: its experts, routers and the shared experts' namesakes
    assert lora_params(moe, 16, ["all"], peft_version="0.22.0") - lora_params(moe, 16, ["all"], peft_version="0.21.0") \
        == expert_lora_params(moe, 16)


def test_lora_targets_subset():
    arch = resolve_model("qwen2.5-7b")
    h, kv, L = 3584, 512, 28
    assert lora_params(arch, 8, ["q_proj", "v_proj"]) == L * 8 * ((h + h) + (h + kv))


def test_parts_add_up_and_moe_active_params():
    pc = count_params(resolve_model("mistralai/Mixtral-8x7B-v0.1"))
    parts = pc.embedding + pc.lm_head + pc.attention + pc.mlp_dense + pc.experts + pc.shared_experts + pc.routers + pc.norms
    assert parts == pc.total
    assert 12.5e9 < pc.active_per_token < 13.5e9  # Mixtral: ~12.9B active of 46.7B
    tied = count_params(resolve_model("qwen2.5-0.5b"))
    assert tied.lm_head == 0


def test_an_estimate_of_lora_on_moe_says_which_peft_release_it_counted():
    """Where the release decides what all-linear wraps (a MoE model) and none was given, the estimate says which it
    counted and asks for an older one; a dense model, or a release given, needs no such note."""
    from ask_oom.tools.memory import estimate_memory
    from ask_oom.tools.training_setup import TrainingSetup

    def peft_notes(name, version=None):
        est = estimate_memory(TrainingSetup(model=resolve_model(name), method="lora", peft_version=version))
        return [n for n in est.notes if "PEFT 0." in n]

    assert peft_notes("Qwen/Qwen1.5-MoE-A2.7B") == [
        "LoRA on a mixture-of-experts model counted as PEFT 0.22 wraps it (the fused experts and router too); "
        "PEFT 0.21 wraps other modules: give your peft version if it is older"]
    assert peft_notes("Qwen/Qwen1.5-MoE-A2.7B", "0.21.0") == [] and peft_notes("qwen2.5-7b") == []
