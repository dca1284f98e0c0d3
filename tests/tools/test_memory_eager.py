"""Eager attention against what really happens on CPU, and what the calculator makes of it.

Saved tensors are counted with saved_tensors_hooks (as in test_memory_activations.py); the transient
peaks of a forward and of a checkpointed backward are read from the CPU allocator's trace
(torch.profiler with profile_memory=True: every allocation and free, in order). Each peak of an
eager model minus the same model's sdpa peak is the score working set, in units of one layer's score
elements (batch x query heads x s x s): 10 B at a forward softmax, 12 B in a recomputed layer's backward.
"""

from __future__ import annotations

import json
import warnings

import pytest

from ask_oom.tools.memory import estimate_memory, load_model_arch
from ask_oom.tools.memory.activations import (
    ActPolicy, attention_score_bytes, eager_backward_units, eager_forward_transient_units, eager_mask_bytes,
    model_activation_bytes, score_elements,
)
from ask_oom.tools.training_setup import TrainingSetup
from ask_oom.tools.units import GiB

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

B, S = 1, 384
TINY = [
    dict(model_type="llama", hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=8,
         num_key_value_heads=8, vocab_size=128),
    dict(model_type="qwen2", hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=8,
         num_key_value_heads=2, vocab_size=128),
]
EAGER = ActPolicy(True, False, {}, 2, True)


def _build(cfg: dict, attn: str, checkpointing: bool = False):
    config = transformers.AutoConfig.for_model(**json.loads(json.dumps(cfg)))
    config._attn_implementation = attn
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = transformers.AutoModelForCausalLM.from_config(config).to(torch.bfloat16)
        if checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    return model


def _allocator_peak(fn) -> int:
    """Highest net bytes the CPU allocator held while fn ran (allocations minus frees, in time order)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
                    key=lambda e: e.start_ns())
    cur = peak = 0
    for e in events:
        cur += e.nbytes()
        peak = max(peak, cur)
    return peak


def _ids(cfg):
    torch.manual_seed(1)
    return torch.randint(0, cfg["vocab_size"], (B, S))


def _saved_storages(model, cfg: dict) -> dict[int, int]:
    """Bytes of each storage autograd saves for backward in one forward pass (parameters left out), by storage."""
    seen: dict[int, int] = {}
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in params:
            seen[ptr] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(input_ids=_ids(cfg))
    return seen


@pytest.mark.parametrize("cfg", TINY, ids=[c["model_type"] for c in TINY])
def test_saved_probabilities_match_autograd(cfg):
    """Each layer keeps its fp32 softmax output and the bf16 copy matmul saves: 6 B x b x heads x s^2."""
    model = _build(cfg, "eager")
    seen = _saved_storages(model, cfg)
    arch = load_model_arch(cfg)
    predicted = model_activation_bytes(arch, EAGER, B * S) + arch.num_layers * attention_score_bytes(arch, EAGER, B, S)
    assert predicted == pytest.approx(sum(seen.values()), rel=0.06)


@pytest.mark.parametrize("cfg", TINY, ids=[c["model_type"] for c in TINY])
def test_forward_softmax_working_set(cfg):
    """no_grad forward (what a checkpointed layer runs): bf16 scores + fp32 cast + fp32 softmax, plus the mask."""
    arch = load_model_arch(cfg)
    E = score_elements(arch, B, S)
    peaks = {}
    for attn in ("eager", "sdpa"):
        model = _build(cfg, attn)
        with torch.no_grad():
            peaks[attn] = _allocator_peak(lambda: model.model(input_ids=_ids(cfg)))
    predicted = eager_forward_transient_units(EAGER) * E + eager_mask_bytes(arch, EAGER, B, S)
    assert peaks["eager"] - peaks["sdpa"] == pytest.approx(predicted, rel=0.06)
    assert peaks["eager"] - peaks["sdpa"] > 8 * E  # more than the 6 B/element a saved-tensor count shows


@pytest.mark.parametrize("cfg", TINY, ids=[c["model_type"] for c in TINY])
def test_recomputed_layer_backward_peak(cfg):
    """Gradient checkpointing: the recomputed layer holds its probabilities again and their gradients (12 B)."""
    arch = load_model_arch(cfg)
    E = score_elements(arch, B, S)
    peaks = {}
    for attn in ("eager", "sdpa"):
        model = _build(cfg, attn, checkpointing=True)
        out = model.model(input_ids=_ids(cfg)).last_hidden_state
        peaks[attn] = _allocator_peak(lambda: out.float().sum().backward())
    # the causal mask was allocated in forward, before the trace started
    assert peaks["eager"] - peaks["sdpa"] == pytest.approx(eager_backward_units(EAGER) * E, rel=0.08)


def _setup(arch, **kw) -> TrainingSetup:
    base = dict(model=arch, method="full", precision="pure_bf16", micro_batch=1, seq_len=16384,
                gradient_checkpointing=True, framework="llamafactory")
    base.update(kw)
    return TrainingSetup(**base)


@pytest.mark.parametrize("checkpointing", [True, False], ids=["gc", "no_gc"])
def test_eager_costs_scores_at_long_sequences(checkpointing):
    """eager vs sdpa/fa2 differs by the score working set; sdpa and fa2 are the same to the calculator."""
    from ask_oom.tools.memory import resolve_model

    arch = resolve_model("Qwen/Qwen2.5-7B-Instruct")
    est = {impl: estimate_memory(_setup(arch, attn_implementation=impl, gradient_checkpointing=checkpointing))
           for impl in ("eager", "sdpa", "flash_attention_2")}
    assert est["sdpa"].peak_bytes == est["flash_attention_2"].peak_bytes
    E = score_elements(arch, 1, 16384)  # 28 heads x 16384^2: 7.5 G elements
    diff = est["eager"].peak_bytes - est["sdpa"].peak_bytes
    if checkpointing:
        assert diff >= 10 * E  # at least one layer's softmax working set, not 0
        assert est["eager"].breakdown.as_dict()["attention_scores"] <= 12 * E + 2 * 16384 ** 2
    else:
        assert diff >= arch.num_layers * 6 * E  # every layer keeps its probabilities


def test_kimi_vl_default_attention_runs_eager():
    """Kimi-VL's remote code has no sdpa class: LLaMA-Factory's flash_attn auto without flash-attn runs eager
    (the seed run failed at softmax allocating 16 GiB = 16 heads x 16384^2 x 4 B)."""
    from ask_oom.tools.gpus import lookup_gpu
    from ask_oom.tools.memory import resolve_model

    arch = resolve_model("moonshotai/Kimi-VL-A3B-Instruct")
    assert arch.attention_impls == ["eager", "flash_attention_2"]
    kw = dict(precision="bf16_mixed", zero_stage=3, num_gpus=8, grad_accum=8, freeze_vision_tower=False,
              image_max_pixels=1003520, gpu=lookup_gpu("H20"))
    auto = estimate_memory(_setup(arch, attn_implementation="sdpa", **kw))
    fa2 = estimate_memory(_setup(arch, attn_implementation="flash_attention_2", **kw))
    assert 16 * 16384 ** 2 * 4 == 16 * GiB
    assert any("falls back to eager" in n for n in auto.notes)
    assert auto.breakdown.as_dict()["attention_scores"] >= 16 * GiB
    assert auto.peak_bytes - fa2.peak_bytes >= 16 * GiB
    assert not auto.fits and fa2.fits


def test_moonvit_is_not_checkpointed_and_packs_images():
    """MoonViT's encoder has no checkpoint hook: with gradient checkpointing on, a trainable tower still keeps
    every block's activations, and its eager path scores one packed sequence of all the sample's images."""
    from ask_oom.tools.memory import resolve_model
    from ask_oom.tools.memory.activations import vision_block_bytes, vision_tokens
    from ask_oom.tools.memory.estimator import _moments, _plan

    kimi = resolve_model("moonshotai/Kimi-VL-A3B-Instruct")
    v = kimi.vision
    assert v.kind == "moonvit" and v.checkpointing is False
    assert resolve_model("Qwen/Qwen2.5-VL-7B-Instruct").vision.checkpointing is True
    kw = dict(precision="pure_bf16", freeze_vision_tower=False, image_max_pixels=448 * 448, seq_len=4096)
    parts = {}
    for impl in ("flash_attention_2", "eager"):
        for n in (1, 2):
            setup = _setup(kimi, attn_implementation=impl, images_per_sample=n, **kw)
            assert any("does not checkpoint" in note for note in estimate_memory(setup).notes)
            # the moment at the loss, whatever the peak (full fine-tuning on one GPU peaks at the optimizer step)
            parts[impl, n] = _moments(setup, _plan(setup, "train"), "train", 1, 4096)["backward"]["vision_activations"]
    _, patches = vision_tokens(v, 448 * 448, 1, 0)
    assert parts["flash_attention_2", 1] >= patches * vision_block_bytes(v, True) * v.num_layers
    # eager scores: heads x (packed patches)^2 x 6 B per layer; two images pack into 4x the elements of one
    eager_1 = parts["eager", 1] - parts["flash_attention_2", 1]
    eager_2 = parts["eager", 2] - parts["flash_attention_2", 2]
    assert eager_1 == v.num_heads * patches ** 2 * 6 * v.num_layers
    assert eager_2 == 4 * eager_1


GEMMA2 = dict(model_type="gemma2", hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=8,
              num_key_value_heads=4, head_dim=16, vocab_size=128, pad_token_id=0, sliding_window=128)


def test_gemma2_has_no_sdpa_so_it_runs_eager():
    """transformers' Gemma-2 refuses sdpa (soft-capping): a run that names none loads eager, and so does the calculator."""
    from ask_oom.tools.memory.estimator import effective_attention

    assert transformers.Gemma2PreTrainedModel._supports_sdpa is False
    arch = load_model_arch(GEMMA2)
    setup = _setup(arch, attn_implementation="sdpa", seq_len=4096)
    assert effective_attention(setup) == "eager"
    est = estimate_memory(setup)
    assert est.breakdown.get("attention_scores") > 0 and any("falls back to eager" in n for n in est.notes)
    assert effective_attention(_setup(arch, attn_implementation="flash_attention_2")) == "flash_attention_2"


def test_gemma2_softcapping_keeps_the_tanh_output_and_two_masks():
    """Saved per layer: fp32 softmax + bf16 copy + the soft-capped tanh output (8 B per score element); a recomputed
    layer's backward holds 14 B per element; the sliding and the global mask are both built."""
    arch = load_model_arch(GEMMA2)
    E = score_elements(arch, B, S)
    model = _build(GEMMA2, "eager")
    seen = _saved_storages(model, GEMMA2)
    predicted = (model_activation_bytes(arch, EAGER, B * S) + arch.num_layers * attention_score_bytes(arch, EAGER, B, S)
                 + eager_mask_bytes(arch, EAGER, B, S))
    assert attention_score_bytes(arch, EAGER, B, S) == 8 * E
    assert predicted == pytest.approx(sum(seen.values()), rel=0.03)
    checkpointed = _build(GEMMA2, "eager", checkpointing=True)
    out = checkpointed.model(input_ids=_ids(GEMMA2)).last_hidden_state
    peak = _allocator_peak(lambda: out.float().sum().backward())
    assert eager_backward_units(EAGER, arch) == 14
    assert peak == pytest.approx(14 * E, rel=0.08)
    assert eager_mask_bytes(arch, EAGER, B, S) == 2 * 2 * B * S * S
