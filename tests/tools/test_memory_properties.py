"""Properties of the calculator over random setups: never crashes, adds up, grows with batch and length."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ask_oom.tools.gpus import lookup_gpu
from ask_oom.tools.memory import estimate_memory, resolve_model
from ask_oom.tools.memory.registry import registry_names
from ask_oom.tools.training_setup import TrainingSetup

MODELS = registry_names()

setups = st.builds(
    dict,
    model=st.sampled_from(MODELS),
    method=st.sampled_from(["full", "freeze", "lora", "qlora"]),
    precision=st.sampled_from(["bf16_mixed", "fp16_mixed", "pure_bf16", "fp32"]),
    optimizer=st.sampled_from(["adamw", "adamw_fused", "adamw_8bit", "paged_adamw_8bit", "paged_adamw_32bit",
                               "adafactor", "sgd", "lion"]),
    zero_stage=st.integers(0, 3),
    num_gpus=st.sampled_from([1, 2, 8, 16]),
    offload_optimizer=st.booleans(),
    offload_param=st.booleans(),
    micro_batch=st.integers(1, 16),
    seq_len=st.sampled_from([128, 1024, 4096, 16384]),
    gradient_checkpointing=st.booleans(),
    attn_implementation=st.sampled_from(["eager", "sdpa", "flash_attention_2"]),
    liger_kernel=st.booleans(),
    framework=st.sampled_from(["llamafactory", "hf_trainer", "other"]),
    freeze_vision_tower=st.booleans(),
    images_per_sample=st.integers(0, 3),
    grad_accum=st.integers(1, 4),
    eval_batch=st.sampled_from([None, 8]),
)


def _setup(d: dict) -> TrainingSetup:
    d = dict(d)
    return TrainingSetup(model=resolve_model(d.pop("model")), gpu=lookup_gpu("A100-80GB"), **d)


@settings(max_examples=150, deadline=None)
@given(setups, st.sampled_from(["train", "eval"]))
def test_any_setup_gives_a_consistent_estimate(d, mode):
    est = estimate_memory(_setup(d), mode=mode)
    assert est.peak_bytes > 0
    assert sum(c.bytes for c in est.breakdown.components) == est.peak_bytes
    assert all(c.bytes >= 0 for c in est.breakdown.components)
    assert est.fits == (est.band_upper_bytes <= est.budget_bytes)   # "fits": the error band's upper edge fits
    assert 0 <= est.n_trainable <= est.n_params
    assert est.max_micro_batch is not None and est.max_seq_len is not None


@settings(max_examples=60, deadline=None)
@given(setups)
def test_peak_grows_with_micro_batch_and_sequence(d):
    base = _setup(d)
    est = estimate_memory(base)
    assert estimate_memory(base.model_copy(update={"micro_batch": base.micro_batch * 2})).peak_bytes >= est.peak_bytes
    assert estimate_memory(base.model_copy(update={"seq_len": base.seq_len * 2})).peak_bytes >= est.peak_bytes
