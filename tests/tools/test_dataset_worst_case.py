"""The worst batch against the budget, with the real calculator on registry models: over-budget samples, the largest
length that fits, suggestions that fit when re-estimated, and the "OOM after N steps" arithmetic."""

from __future__ import annotations

import json
import math

import pytest
from PIL import Image

from ask_oom.tools.dataset import hit_probability, profile_dataset, render_markdown, worst_case
from ask_oom.tools.dataset.worst_case import setup_for
from ask_oom.tools.gpus import lookup_gpu
from ask_oom.tools.memory import estimate_memory, resolve_model
from ask_oom.tools.training_setup import TrainingSetup

MARGIN = 0.9
LONG_AT = (1234, 3000, 4100)


def _text_setup(**kw) -> TrainingSetup:
    base = dict(framework="llamafactory", model=resolve_model("meta-llama/Llama-3.1-8B"), method="lora",
                micro_batch=2, grad_accum=8, num_gpus=4, gradient_checkpointing=True, gpu=lookup_gpu("RTX 4090"))
    return TrainingSetup(**{**base, **kw})


@pytest.fixture(scope="module")
def text_profile(tmp_path_factory):
    f = tmp_path_factory.mktemp("ds") / "d.jsonl"
    with f.open("w") as fh:
        for i in range(5000):
            words = 30_000 if i in LONG_AT else 100 + i % 300
            fh.write(json.dumps({"id": f"r{i}", "instruction": "q", "output": "abc " * words}) + "\n")
    return profile_dataset(f)


def _fits(setup: TrainingSetup, length: int, ws=None, media=None) -> bool:
    v = setup_for(setup, length, ws, media).model_copy(update={"gpu": setup.gpu})
    return bool(estimate_memory(v, margin=MARGIN).fits)


def test_over_budget_samples_and_the_largest_fitting_length(text_profile):
    setup = _text_setup()
    v = worst_case(text_profile, setup, margin=MARGIN)
    assert v.fits is False
    assert v.worst_sample.index in LONG_AT and v.worst_length == text_profile.total.max
    assert v.over_budget == len(LONG_AT)
    assert sorted(s.index for s in v.over_budget_samples) == list(LONG_AT)
    assert {s.id for s in v.over_budget_samples} == {f"r{i}" for i in LONG_AT}
    # bisected with the calculator: max_fit fits the GPU, one more token does not
    assert 0 < v.max_fit_length < text_profile.total.max
    assert _fits(setup, v.max_fit_length) and not _fits(setup, v.max_fit_length + 1)


def test_suggestions_fit_when_re_estimated(text_profile):
    setup = _text_setup()
    v = worst_case(text_profile, setup, margin=MARGIN)
    kinds = {s.kind: s for s in v.suggestions}
    assert {"cutoff_len", "filter"} <= set(kinds)
    cut = kinds["cutoff_len"]
    assert cut.fits and cut.value <= v.max_fit_length
    # re-estimate the suggested cutoff_len as the config would state it
    est = estimate_memory(setup.model_copy(update={"seq_len": cut.value}), margin=MARGIN)
    assert est.fits is True
    filt = kinds["filter"]
    assert filt.fits and "drop the 3 sample(s)" in filt.detail
    assert v.primary == "filter"  # 3 of 5000 samples: dropping them changes nothing else


def test_step_n_arithmetic(text_profile):
    setup = _text_setup()
    v = worst_case(text_profile, setup, margin=MARGIN, steps=10)
    t = v.timing
    assert t.samples_per_step == 2 * 4 * 8 and t.samples_per_micro_step == 8
    assert t.first_index == 1234 and t.unshuffled_step == 1234 // 64 == 19
    assert t.steps_per_epoch == math.ceil(5000 / 64)
    # 3 of 5000 over budget: expected first hit at (n+1)/(k+1) = 1250.25 -> step 19
    assert t.shuffled_expected_step == int((5001 / 4 - 1) // 64)
    assert t.p_hit_first_step == pytest.approx(1 - math.comb(4997, 64) / math.comb(5000, 64))
    assert t.p_hit_steps == pytest.approx(1 - math.comb(4997, 640) / math.comb(5000, 640))
    assert t.p_hit_epoch == 1.0
    assert any("step 1234 // 64 = 19" in line for line in t.lines)


def test_hit_probability_matches_combinatorics():
    for n, k, m in [(100, 1, 10), (1000, 7, 64), (50, 10, 45), (10, 0, 5)]:
        exact = 1 - (math.comb(n - k, m) / math.comb(n, m) if m <= n - k else 0)
        assert hit_probability(n, k, m) == pytest.approx(exact, abs=1e-12)


def test_packing_makes_every_sequence_cutoff_len(text_profile):
    setup = _text_setup()
    prof = text_profile.model_copy(update={"packing": True, "cutoff_len": 16384})
    v = worst_case(prof, setup, margin=MARGIN)
    assert v.worst_length == 16384 and v.fits is False
    assert v.over_budget == prof.samples and v.timing.unshuffled_step == 0
    assert "filter" not in {s.kind for s in v.suggestions}


def test_a_dataset_that_fits(text_profile):
    setup = _text_setup(gpu=lookup_gpu("H100"), micro_batch=1)
    prof = text_profile.model_copy(update={"cutoff_len": 2048})
    v = worst_case(prof, setup, margin=MARGIN)
    assert v.fits is True and v.worst_length == 2048
    assert v.over_budget == 0 and not v.suggestions
    assert v.max_fit_length >= 2048


def test_no_budget_sizes_without_judging(text_profile):
    v = worst_case(text_profile, _text_setup(gpu=None), margin=MARGIN)
    assert v.fits is None and v.worst_peak_bytes > 0 and v.max_fit_length is None


def test_budget_bytes_overrides_the_gpu(text_profile):
    setup = _text_setup()
    big = worst_case(text_profile, setup, margin=MARGIN, budget_bytes=10**13)
    assert big.fits is True


@pytest.fixture(scope="module")
def image_profile(tmp_path_factory):
    root = tmp_path_factory.mktemp("mm")
    Image.new("RGB", (4000, 3000)).save(root / "photo.jpg")
    rows = []
    for i in range(400):
        n_img = 6 if i == 250 else 1
        rows.append({"id": i, "conversations": [{"from": "human", "value": "<image>" * n_img + "describe"},
                                                 {"from": "gpt", "value": "a photo " * 30}],
                     "images": ["photo.jpg"] * n_img})
    (root / "mm.json").write_text(json.dumps(rows))
    (root / "dataset_info.json").write_text(json.dumps({"mm": {
        "file_name": "mm.json", "formatting": "sharegpt", "columns": {"messages": "conversations", "images": "images"}}}))
    return profile_dataset(root, model_family="qwen2_vl", image_max_pixels=2048 * 2048, cutoff_len=32768)


def test_image_cap_suggestion_for_qwen2_vl(image_profile):
    assert image_profile.worst[0].index == 250 and image_profile.worst[0].images == 6
    setup = TrainingSetup(framework="llamafactory", model=resolve_model("Qwen/Qwen2-VL-7B-Instruct"), method="lora",
                          micro_batch=4, gradient_checkpointing=True, freeze_vision_tower=False,
                          gpu=lookup_gpu("RTX 4090"))
    v = worst_case(image_profile, setup, margin=MARGIN)
    assert v.fits is False
    cap = next(s for s in v.suggestions if s.kind == "image_max_pixels")
    assert cap.fits and cap.value < 2048 * 2048
    # re-profile with the suggested cap: the worst batch now fits
    root = image_profile.path
    capped = profile_dataset(root, model_family="qwen2_vl", image_max_pixels=cap.value, cutoff_len=32768)
    again = worst_case(capped, setup, margin=MARGIN)
    assert again.fits is True
    md = render_markdown(image_profile, v)
    assert "| total |" in md and "image_max_pixels" in md and "exceeds" in md


def test_fixed_tower_seq_len_counts_spliced_image_tokens_once():
    from ask_oom.tools.dataset import WorstSample

    ws = WorstSample(index=0, text_tokens=400, template_tokens=24, media_tokens=576, images=1)
    llava = TrainingSetup(framework="hf_trainer", model=resolve_model("llava-hf/llava-1.5-7b-hf"), method="lora")
    # LLaVA's own training code splices 576 features in after truncation: the calculator adds 575 positions itself
    s = setup_for(llava, 1000, ws)
    assert s.images_per_sample == 1 and s.seq_len == 1000 - 575
    # LLaMA-Factory expands the image tokens before truncation: they are already in the length
    lf = setup_for(llava.model_copy(update={"framework": "llamafactory"}), 1000, ws)
    assert lf.seq_len == 1000
    qwen = TrainingSetup(framework="llamafactory", model=resolve_model("Qwen/Qwen2-VL-7B-Instruct"), method="lora")
    q = setup_for(qwen, 1000, ws.model_copy(update={"media_tokens": 768}))
    assert q.seq_len == 1000 and q.images_per_sample == 1 and q.image_max_pixels == 768 * 28 * 28


def test_image_tokens_over_cutoff_are_flagged(image_profile):
    prof = profile_dataset(image_profile.path, model_family="qwen2_vl", image_max_pixels=2048 * 2048, cutoff_len=8192)
    assert prof.truncated_samples == 1 and prof.image_cut_samples == 1
    assert any("mismatch" in n for n in prof.notes)


def test_worst_case_needs_a_model(text_profile):
    from ask_oom.tools.errors import InputError

    with pytest.raises(InputError, match="needs a model"):
        worst_case(text_profile, TrainingSetup(), margin=MARGIN)
