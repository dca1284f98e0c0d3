"""Whole training steps of families outside the GPU calibration set, measured on CPU against the calculator.

Each tiny model (the family's layout: tied embeddings, MHA vs GQA, fused qkv/gate_up, partial rotary + LayerNorm +
gelu_new, GeGLU, qk-norm, MoE with LoRA on its fused experts, MLA) runs the calibration protocol's step (plain loop,
labels = inputs, AdamW foreach, zero_grad(set_to_none)) once to create the optimizer states, then once more under the
CPU allocator's trace; the peak is what was resident (weights, buffers, optimizer states) plus the trace's highest net
allocation. The calculator's peak, less the cuBLAS workspace a CPU does not allocate, must match it.
"""

from __future__ import annotations

import importlib.metadata
import json
import warnings

import pytest

from ask_oom.tools.memory import estimate_memory, load_model_arch
from ask_oom.tools.training_setup import TrainingSetup

from .memory_peaks import allocator_peak

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

B, S = 2, 128
_BASE = dict(hidden_size=128, num_hidden_layers=2, vocab_size=1024)
FAMILIES = {
    "llama-3.2 (tied, GQA)": dict(model_type="llama", intermediate_size=352, num_attention_heads=4, num_key_value_heads=2,
                                  tie_word_embeddings=True),
    "phi-3 (MHA, fused qkv/gate_up)": dict(model_type="phi3", intermediate_size=256, num_attention_heads=4,
                                           num_key_value_heads=4, pad_token_id=0, eos_token_id=1, bos_token_id=1),
    "phi-2 (partial rotary, LayerNorm, gelu_new)": dict(model_type="phi", intermediate_size=512, num_attention_heads=4,
                                                        partial_rotary_factor=0.4),
    "gemma (GeGLU, scaled embeddings)": dict(model_type="gemma", intermediate_size=352, num_attention_heads=2,
                                             num_key_value_heads=1, head_dim=96, pad_token_id=0),
    "qwen3 (qk-norm)": dict(model_type="qwen3", intermediate_size=384, num_attention_heads=4, num_key_value_heads=2,
                            head_dim=32),
    "olmoe (MoE, LoRA on experts)": dict(model_type="olmoe", intermediate_size=64, num_attention_heads=4,
                                         num_key_value_heads=4, num_experts=8, num_experts_per_tok=2),
    "deepseek-v2 (MLA, shared experts)": dict(model_type="deepseek_v2", intermediate_size=256, moe_intermediate_size=32,
                                              num_attention_heads=4, num_key_value_heads=4, n_routed_experts=8,
                                              n_shared_experts=1, num_experts_per_tok=2, first_k_dense_replace=1,
                                              q_lora_rank=None, kv_lora_rank=32, qk_rope_head_dim=8, qk_nope_head_dim=16,
                                              v_head_dim=24, n_group=1, topk_group=1),
}




def _storage_bytes(tensors) -> int:
    return sum({t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors if t is not None}.values())


def _measured_step_peak(cfg: dict, method: str) -> int:
    config = transformers.AutoConfig.for_model(**json.loads(json.dumps(cfg)))
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = transformers.AutoModelForCausalLM.from_config(config).to(torch.bfloat16)
        if method == "lora":
            peft = pytest.importorskip("peft")
            model = peft.get_peft_model(model, peft.LoraConfig(r=8, lora_alpha=16, target_modules="all-linear"))
            for name, p in model.named_parameters():
                if "lora_" in name:
                    p.data = p.data.float()
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5, foreach=True)
    ids = torch.randint(0, cfg["vocab_size"], (B, S), generator=torch.Generator().manual_seed(1))

    def step():
        out = model(input_ids=ids, labels=ids)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()
    states = [t for st in opt.state.values() for t in st.values() if torch.is_tensor(t)]
    resident = _storage_bytes([*model.parameters(), *model.buffers(), *states])
    return resident + allocator_peak(step)


@pytest.mark.parametrize("method", ["lora", "full"])
@pytest.mark.parametrize("family", list(FAMILIES))
def test_whole_step_peak_matches(family, method):
    cfg = {**_BASE, **FAMILIES[family]}
    measured = _measured_step_peak(cfg, method)
    setup = TrainingSetup(framework="other", model=load_model_arch(cfg), method=method, lora_rank=8,
                          precision="pure_bf16" if method == "full" else "bf16_mixed", micro_batch=B, seq_len=S,
                          peft_version=importlib.metadata.version("peft") if method == "lora" else None)
    est = estimate_memory(setup, margin=1.0)
    predicted = est.peak_bytes - est.breakdown.get("cuda_workspace")
    assert predicted == pytest.approx(measured, rel=0.03), (family, method, est.peak_phase)
