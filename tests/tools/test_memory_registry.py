"""Registry and config loading: names in logs resolve without a download; bad configs are one-line errors."""

from __future__ import annotations

import json

import pytest

from ask_oom.tools.errors import InputError
from ask_oom.tools.memory import count_params, load_model_arch, resolve_model


@pytest.mark.parametrize("name,key", [
    ("Qwen/Qwen2.5-7B-Instruct", "Qwen/Qwen2.5-7B"),
    ("qwen2.5-7b", "Qwen/Qwen2.5-7B"),
    ("/data/models/Qwen2.5-32B-Instruct/", "Qwen/Qwen2.5-32B"),
    ("/data/Mixtral-8x7B-v0.1", "mistralai/Mixtral-8x7B-v0.1"),
    ("Llama-2-13b-chat-hf", "meta-llama/Llama-2-13b-hf"),
    ("llama2-13b", "meta-llama/Llama-2-13b-hf"),
    ("meta-llama/Meta-Llama-3.1-8B-Instruct", "meta-llama/Llama-3.1-8B"),
    ("Kimi-VL-A3B-Instruct", "moonshotai/Kimi-VL-A3B-Instruct"),
    ("MoE-LLaVA-Phi2-2.7B-4e", "LanguageBind/MoE-LLaVA-Phi2-2.7B-4e"),
    ("Qwen2.5-VL-7B-Instruct", "Qwen/Qwen2.5-VL-7B-Instruct"),
    ("llava-v1.5-13b", "llava-hf/llava-1.5-13b-hf"),
    ("Qwen3-30B-A3B", "Qwen/Qwen3-30B-A3B"),
    ("qwen2.5-7b-instruct-my-sft", "Qwen/Qwen2.5-7B"),
])
def test_resolve_loose_names(name, key):
    arch = resolve_model(name)
    assert arch is not None and arch.name == key


@pytest.mark.parametrize("name", ["gpt-5-turbo", "", "x" * 1000, "qwen"])
def test_unknown_names_return_none(name):
    assert resolve_model(name) is None


def test_registry_sizes_are_the_published_ones():
    """Totals against model cards (rounded): catches a wrong config fact in registry.json."""
    expected_b = {
        "Qwen/Qwen2.5-32B": 32.76, "Qwen/Qwen2.5-72B": 72.71, "meta-llama/Llama-2-70b-hf": 68.98,
        "meta-llama/Llama-3.1-8B": 8.03, "meta-llama/Llama-3.2-1B": 1.24, "mistralai/Mixtral-8x7B-v0.1": 46.70,
        "microsoft/phi-2": 2.78, "google/gemma-7b": 8.54, "google/gemma-2-27b": 27.23, "Qwen/Qwen3-30B-A3B": 30.53,
        "deepseek-ai/DeepSeek-V3": 671.03, "deepseek-ai/DeepSeek-V2-Lite": 15.71, "allenai/OLMoE-1B-7B-0924": 6.92,
        "moonshotai/Kimi-VL-A3B-Instruct": 16.41, "THUDM/glm-4-9b-chat": 9.40, "baichuan-inc/Baichuan2-13B-Chat": 13.90,
        "llava-hf/llava-1.5-7b-hf": 7.06,
    }
    for key, billions in expected_b.items():
        assert round(count_params(resolve_model(key)).total / 1e9, 2) == billions, key
    # gpt-oss model cards give one decimal (their biases and attention sinks are left out here: a few million)
    for key, billions in {"openai/gpt-oss-20b": 20.9, "openai/gpt-oss-120b": 116.8}.items():
        assert abs(count_params(resolve_model(key)).total / 1e9 - billions) < 0.05, key


def test_vision_facts():
    clip = resolve_model("llava-1.5-7b").vision
    assert clip.kind == "clip" and clip.image_size == 336 and clip.tokens_per_image == 576
    qvl = resolve_model("qwen2.5-vl-7b").vision
    assert qvl.patch_size == 14 and qvl.spatial_merge_size == 2 and qvl.kind == "qwen2_5_vl"
    kimi = resolve_model("Kimi-VL-A3B-Instruct")
    assert kimi.is_mla and kimi.is_moe and kimi.vision.kind == "moonvit"


def test_load_model_arch_from_file_and_directory(tmp_path):
    cfg = {"model_type": "qwen2", "hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24,
           "num_attention_heads": 14, "num_key_value_heads": 2, "vocab_size": 151936, "tie_word_embeddings": True}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    assert count_params(load_model_arch(tmp_path)).total == 494_032_768
    assert count_params(load_model_arch(str(tmp_path / "config.json"))).total == 494_032_768


@pytest.mark.parametrize("content", ["not json", "[1, 2]", '{"model_type": "qwen2"}', '{"hidden_size": "big"}'])
def test_bad_configs_raise_input_error(tmp_path, content):
    f = tmp_path / "config.json"
    f.write_text(content)
    with pytest.raises(InputError):
        load_model_arch(f)


def test_missing_config_raises_input_error(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_model_arch(tmp_path / "nope")


def test_nearest_model_by_family_and_size():
    from ask_oom.tools.memory.registry import nearest_model

    arch, why = nearest_model("openbuddy-mistral-7b-chat")
    assert arch.name.startswith("mistralai/Mistral-7B") and "nearest mistral" in why
    assert nearest_model("Qwen/Qwen2.5-7B") is None          # known: resolve_model's job
    assert nearest_model("mixtral-8x22b") is None            # MoE sizes are not guessed
    assert nearest_model("internlm2-20b") is None            # no neighbour within the tolerance
    assert nearest_model("gpt-5-turbo") is None              # no size stated


def test_a_size_written_straight_after_the_family_word_is_read():
    """Local folders and community checkpoints often glue the size to the family ("baichuan13b_new", "vicuna13b",
    "qwen7b"): the size is read as in "baichuan-13b"; a version dot ("v1.5b") or an expert count ("8x7b") is not."""
    from ask_oom.tools.memory.registry import _size_b, nearest_model

    assert _size_b("baichuan13b_new") == 13 and _size_b("qwen7b") == 7
    assert nearest_model("./baichuan13b_new")[0].name.startswith("baichuan-inc/Baichuan")
    assert nearest_model("vicuna13b")[0].name == "meta-llama/Llama-2-13b-hf"
    assert _size_b("v1.5b") is None and _size_b("mixtral-8x7b") is None


def test_the_size_a_name_states_is_its_total_not_its_active_count():
    """A name's size sizes the weights of a model no entry gives: the total of an MoE ("30B-A3B" → 30B), read from a
    path's last part; an expert count states no total."""
    from ask_oom.tools.memory.registry import stated_params

    assert stated_params("/models/OpenGVLab/InternVL2-Llama3-76B") == 76 * 10**9
    assert stated_params("Qwen3-VL-30B-A3B-Instruct") == 30 * 10**9 and stated_params("InternVL2_5-38B") == 38 * 10**9
    assert stated_params("Mixtral-8x22B") is None and stated_params("MiniCPM-o-2_6") is None and stated_params(None) is None


def test_a_family_size_word_states_the_size_its_paper_gives():
    """Encoders, encoder-decoders and speech models name a size word, not a count: the family's table (NAMED_SIZES)
    sizes them; the longest family wins ("xlm-roberta" over "roberta"), Whisper's turbo over its "large", and a word
    that is no size of the family states nothing."""
    from ask_oom.tools.memory.registry import stated_params

    assert stated_params("openai/whisper-medium") == 769_000_000
    assert stated_params("whisper-large-v3") == 1_550_000_000 and stated_params("whisper-large-v3-turbo") == 809_000_000
    assert stated_params("xlm-roberta-large") == 550_000_000 and stated_params("FacebookAI/roberta-large") == 355_000_000
    assert stated_params("hfl/chinese-roberta-wwm-ext-large") == 355_000_000
    assert stated_params("google/flan-t5-xxl") == 11_300_000_000 and stated_params("t5-base") == 220_000_000
    assert stated_params("t5-11b") == 11 * 10**9   # a count the name states comes first
    assert stated_params("whisper-xxl") is None and stated_params("distilbert-base-uncased") is None


def test_the_classic_decoders_count_exactly_as_transformers_builds_them():
    """GPT-2, OPT and BLOOM (LayerNorm, plain MLP, biases, tied embeddings, learned positions / embedding norm):
    exact totals of the published checkpoints."""
    exact = {"gpt2": 124_439_808, "gpt2-xl": 1_557_611_200, "facebook/opt-1.3b": 1_315_758_080,
             "facebook/opt-6.7b": 6_658_473_984, "bigscience/bloom-560m": 559_214_592, "bigscience/bloomz-7b1": 7_069_016_064}
    for name, total in exact.items():
        assert count_params(resolve_model(name)).total == total, name
    bloom = resolve_model("bloom-7b")
    assert bloom.attention_impls == ["eager"] and bloom.vocab_size == 250_880   # no sdpa / flash-attn path for BLOOM


def test_a_loose_name_keeps_the_size_it_states():
    """Dropping a name's trailing words must not drop its size: "BLOOMZ-1.7B" is no alias of the 176B BLOOM (whose
    registry name states no size), while "qwen2.5-7b-instruct-sft-v2" still finds the 7B it names."""
    from ask_oom.tools.memory.registry import lookup_key

    assert lookup_key("BLOOMZ-1.7B") != "bigscience/bloom"
    assert lookup_key("bloomz") == lookup_key("bigscience/bloom")
    assert lookup_key("qwen2.5-7b-instruct-sft-v2") == "Qwen/Qwen2.5-7B"
