"""One model resolver: a name gives the same architecture and quantization whether a log, a config or the resolver
itself reads it, and a pre-quantized checkpoint is sized by its bits wherever it is named."""

from __future__ import annotations

import pytest

from ask_oom.tools.configs import apply_config_to_setup, load_config
from ask_oom.tools.log_parser import parse_log
from ask_oom.tools.memory import estimate_memory
from ask_oom.tools.model_resolver import checkpoint_quantization, resolve_model_name
from ask_oom.tools.setup_assembly import assemble_setup
from ask_oom.tools.training_setup import TrainingSetup
from ask_oom.tools.units import GiB

OOM = "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB.\n"
AWQ = "Qwen/Qwen2.5-7B-Instruct-AWQ"


def _weights(setup: TrainingSetup) -> int:
    return estimate_memory(setup).breakdown.get("weights")


def _from_log(name: str) -> TrainingSetup:
    """The setup a log naming the model gives: the log's model line, not a printed training argument."""
    report = parse_log(f'model = AutoModelForCausalLM.from_pretrained(model="{name}")\n' + OOM)
    assert report.model == name and "model_name_or_path" not in report.training_args
    return assemble_setup(report)


def _from_args_in_log(name: str) -> TrainingSetup:
    """The setup a log gives when it prints the model as a training argument (read like a config)."""
    report = parse_log(f"  model_name_or_path: {name}\n" + OOM)
    assert "model_name_or_path" in report.training_args
    return assemble_setup(report)


def _from_yaml(name: str) -> tuple[TrainingSetup, TrainingSetup]:
    """The mapping's setup and the assembled one for a LLaMA-Factory YAML naming the model."""
    doc = load_config(f"model_name_or_path: {name}\nstage: sft\ndo_train: true\n", "train.yaml")
    return apply_config_to_setup(doc, TrainingSetup()), assemble_setup(parse_log(OOM), doc)


def test_an_awq_checkpoint_weighs_the_same_from_the_log_and_from_the_yaml():
    mapped, assembled = _from_yaml(AWQ)
    sizes = {_weights(s) for s in (_from_log(AWQ), _from_args_in_log(AWQ), mapped, assembled)}
    assert len(sizes) == 1
    assert abs(sizes.pop() / GiB - 5.24) < 0.05   # 4-bit weights, not the 14.26 GiB of bf16
    assert mapped.quantization_bit == 4 and mapped.provenance["quantization_bit"].origin == "derived"


def test_a_quantization_the_config_states_wins_over_the_name():
    doc = load_config(f"model_name_or_path: {AWQ}\nfinetuning_type: lora\nquantization_bit: 8\n", "train.yaml")
    setup = apply_config_to_setup(doc, TrainingSetup())
    assert setup.quantization_bit == 8 and setup.provenance["quantization_bit"].origin == "config"
    assert setup.method == "qlora"


def test_a_stated_method_stays_beside_a_quantized_name():
    doc = load_config(f"model_name_or_path: {AWQ}\nfinetuning_type: lora\n", "train.yaml")
    setup = apply_config_to_setup(doc, TrainingSetup())
    assert setup.method == "lora" and setup.provenance["method"].origin == "config" and setup.quantization_bit == 4


NAMES = [
    "Qwen/Qwen2.5-7B-Instruct",                # HF id
    "meta-llama/Llama-2-13b-hf",
    "/data/models/Qwen2.5-7B-Instruct/",       # local paths, trailing slash
    "./checkpoints/Mistral-7B-v0.1/",
    "qwen2_5-7b-instruct",                     # ms-swift model_type spelling
    "llava-hf/llava-1.5-7b-hf",                # LLaVA, listed
    "liuhaotian/llava-v1.5-13b",               # LLaVA, read as its LM
    "/models/llavaphi-2.7b-finetune/",
    AWQ,                                       # pre-quantized checkpoints
    "Qwen/Qwen2-VL-7B-Instruct-GPTQ-Int8",
    "TheBloke/Llama-2-13B-chat-GPTQ",
    "unsloth/llama-3-8b-bnb-4bit",
    "unsloth/Qwen2-VL-7B-Instruct-bnb-4bit",
    "openbuddy-mistral-7b-chat",               # not listed: a stand-in
    "Qwen-72B-Chat-Int4",                      # a stand-in, pre-quantized
]


@pytest.mark.parametrize("name", NAMES)
def test_the_config_path_and_the_log_path_agree(name):
    resolved = resolve_model_name(name)
    assert resolved is not None
    mapped, assembled = _from_yaml(name)
    for setup in (_from_log(name), _from_args_in_log(name), mapped, assembled):
        assert setup.model is not None and setup.model.model_dump() == resolved.arch.model_dump()
        assert setup.quantization_bit == resolved.quant_bits
        assert setup.provenance["model"].origin == resolved.origin
    if resolved.quant_bits:   # both read as adapters on a quantized base: the same weights bytes
        assert _weights(_from_log(name)) == _weights(assembled)


@pytest.mark.parametrize("name, read_as", [
    ("Qwen/Qwen2.5-7B-Instruct", "exact"), ("/data/models/Qwen2.5-7B-Instruct/", "path_basename"),
    ("qwen2_5-7b-instruct", "ms_swift"), ("/models/llavaphi-2.7b-finetune/", "llava"), ("openbuddy-mistral-7b-chat", "stand_in"),
])
def test_how_a_name_was_read_is_said(name, read_as):
    resolved = resolve_model_name(name)
    assert resolved is not None and resolved.read_as == read_as
    assert resolved.origin == ("derived" if read_as == "stand_in" else "registry")


def test_settings_attach_the_tower_and_upcycle_moe_llava():
    settings = {"image_tower": "openai/clip-vit-large-patch14-336", "moe_enable": "True", "num_experts": 4}
    resolved = resolve_model_name("./checkpoints/llavaphi-2.7b-finetune", settings)
    assert resolved is not None and resolved.arch.vision is not None and resolved.arch.num_experts == 4


def test_an_adapter_path_names_the_base_of_an_opaque_model():
    resolved = resolve_model_name("/models/OneKE", {"adapter_name_or_path": "/ckpt/llama-2-13b-chat-lora/"})
    assert resolved is not None and resolved.read_as == "base_hint" and resolved.origin == "derived"


@pytest.mark.parametrize("name, bits", [
    (AWQ, 4), ("Qwen/Qwen2-VL-7B-Instruct-GPTQ-Int8", 8), ("x-GPTQ-Int4", 4), ("unsloth/llama-3-8b-bnb-4bit", 4),
    ("m-8bit", 8), ("Qwen-72B-Chat-Int4", 4), ("Qwen/Qwen2.5-7B-Instruct", None), ("/data/int8_models/llama-7b", None),
    ("zai-org/GLM-4.5V-FP8", 8), ("Qwen/Qwen3-8B-FP8", 8), ("/data/fp8/llama-7b", None),
    # other schemes, read to the nearer width: ExLlamaV2 bits per weight, llm-compressor, GGUF/Ollama k-quants, MXFP4
    ("FuseO1-DeepSeekR1-QwQ-SkyT1-32B-Preview-exl2_4.65bpw", 4), ("Llama-3-70B-8.0bpw-h8-exl2", 8),
    ("RedHatAI/Qwen2.5-7B-Instruct-W4A16", 4), ("Meta-Llama-3-8B-w8a8", 8), ("qwen2-72b-instruct-q4_K_M", 4),
    ("mixtral-8x7b-instruct-v0.1.Q5_K_M.gguf", 4), ("llama-2-7b.Q8_0.gguf", 8), ("Qwen3-8B-IQ3_M.gguf", 4),
    ("gpt-oss-20b-mxfp4", 4), ("llama-7b-fp16", None), ("Qwen2.5-7B-q-former", None),
])
def test_checkpoint_quantization_reads_the_name(name, bits):
    assert checkpoint_quantization(name)[0] == bits


def test_unknown_and_empty_names_resolve_to_nothing():
    assert resolve_model_name(None) is None and resolve_model_name("  ") is None
    assert resolve_model_name("my-own-model") is None


def test_a_checkpoint_under_a_folder_named_for_its_base_model_is_sized_as_that_model():
    """LLaMA-Factory saves to saves/<model>/<method>/<run>, ms-swift to output/<model>/<version>/checkpoint-N: the
    nearest folder the registry knows names the base model, said as an assumption. Folders that name no model do not."""
    swift = resolve_model_name("/workspace/output/qwen2-vl-72b-instruct/v1-20250213-024958/checkpoint-612-merged")
    assert swift is not None and swift.arch.name == "Qwen/Qwen2-VL-72B-Instruct" and swift.origin == "derived"
    assert "qwen2-vl-72b-instruct" in swift.detail
    factory = resolve_model_name("/root/saves/qwen2_vl-7b/full/run-3")
    assert factory is not None and factory.arch.name == "Qwen/Qwen2-VL-7B-Instruct"
    assert resolve_model_name("/mnt/models/llama/finetuned/checkpoint-100") is None
