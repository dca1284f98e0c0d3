"""Setup assembly: every source lands in one TrainingSetup, later sources win, and each fact says where it came from."""

from __future__ import annotations

import json

import pytest

from ask_oom.assistant.diagnosis import DiagnoseRequest
from ask_oom.tools.configs import load_config
from ask_oom.tools.errors import InputError
from ask_oom.tools.log_parser import parse_log
from ask_oom.tools.setup_assembly import KEY_FIELDS, assemble_setup
from ask_oom.tools.training_setup import TrainingSetup
from ask_oom.tools.units import GiB

LF_LOG = """[INFO|2025-01-02 10:00:00] llamafactory.hparams.parser:401 >> Process rank: 0, world size: 4, device: cuda:0, distributed training: True, compute dtype: torch.bfloat16
[INFO|trainer.py:2406] 2025-01-02 10:01:00,000 >>   Instantaneous batch size per device = 8
[INFO|trainer.py:2412] 2025-01-02 10:01:00,000 >>   Gradient Accumulation steps = 2
torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 1 has a total capacity of 79.19 GiB of which 1.02 GiB is free. Including non-PyTorch memory, this process has 78.15 GiB memory in use. Of the allocated memory 75.90 GiB is allocated by PyTorch, and 1.40 GiB is reserved by PyTorch but unallocated.
"""

LF_YAML = """model_name_or_path: Qwen/Qwen2.5-7B-Instruct
stage: sft
finetuning_type: lora
cutoff_len: 4096
per_device_train_batch_size: 4
gradient_accumulation_steps: 4
bf16: true
"""


def test_config_facts_win_over_the_log_and_the_log_fills_gaps():
    setup = assemble_setup(parse_log(LF_LOG), load_config(LF_YAML, "train.yaml"), None)
    assert setup.micro_batch == 4 and setup.provenance["micro_batch"].origin == "config"
    assert setup.seq_len == 4096 and setup.method == "lora"
    assert setup.num_gpus == 4 and setup.provenance["num_gpus"].origin == "log"
    assert setup.model is not None and setup.model.model_type == "qwen2"
    assert setup.provenance["model"].origin == "registry"


def test_log_alone_gives_what_the_framework_printed():
    setup = assemble_setup(parse_log(LF_LOG), None, None)
    assert setup.micro_batch == 8 and setup.provenance["micro_batch"].origin == "log"
    assert "log line" in setup.provenance["micro_batch"].detail
    assert setup.grad_accum == 2
    assert setup.gpu is not None and abs(setup.gpu.memory_bytes / GiB - 79.19) < 0.01
    assert setup.provenance["gpu"].origin == "log"


def test_a_printed_peft_version_decides_what_lora_wraps_on_moe():
    """The PEFT release an env block prints is the one the estimate models: 0.21 leaves Qwen2-MoE's experts unwrapped,
    the newest release (assumed when none is printed) wraps them."""
    from ask_oom.tools.memory import estimate_memory

    log = LF_LOG.replace("torch.OutOfMemoryError", "- `peft` version: 0.21.2\ntorch.OutOfMemoryError")
    yaml = LF_YAML.replace("Qwen/Qwen2.5-7B-Instruct", "Qwen/Qwen1.5-MoE-A2.7B")
    old = assemble_setup(parse_log(log), load_config(yaml, "train.yaml"), None)
    new = assemble_setup(parse_log(LF_LOG), load_config(yaml, "train.yaml"), None)
    assert old.peft_version == "0.21.2" and old.provenance["peft_version"].origin == "log" and new.peft_version is None
    assert estimate_memory(old).n_trainable < estimate_memory(new).n_trainable


def test_what_the_user_says_wins():
    req = DiagnoseRequest(log_text=LF_LOG, gpu="A100-40GB", num_gpus=8)
    setup = assemble_setup(parse_log(LF_LOG), load_config(LF_YAML, "train.yaml"), req)
    assert setup.gpu.name == "A100-40GB" and setup.provenance["gpu"].origin == "user"
    assert setup.num_gpus == 8 and setup.provenance["num_gpus"].detail == "--gpus 8"


def test_gpu_memory_alone_builds_a_custom_gpu():
    setup = assemble_setup(parse_log("CUDA error: out of memory\n"), None, DiagnoseRequest(gpu_memory_gib=24))
    assert setup.gpu is not None and setup.gpu.memory_bytes == 24 * GiB


def test_unknown_facts_are_recorded_as_assumptions():
    setup = assemble_setup(parse_log("CUDA error: out of memory\n"), None, None)
    assumed = setup.assumptions()
    assert set(KEY_FIELDS) <= set(assumed)
    assert setup.gpu is None and setup.model is None


def test_model_config_json_from_the_user_is_used():
    cfg = {"model_type": "llama", "hidden_size": 2048, "num_hidden_layers": 16, "num_attention_heads": 32,
           "num_key_value_heads": 8, "intermediate_size": 8192, "vocab_size": 128256, "tie_word_embeddings": True}
    setup = assemble_setup(parse_log(LF_LOG), None, DiagnoseRequest(model_config_json=json.dumps(cfg)))
    assert setup.model is not None and setup.model.hidden_size == 2048
    assert setup.provenance["model"].origin == "user"


def test_a_broken_model_config_is_an_input_error():
    with pytest.raises(InputError):
        assemble_setup(parse_log(LF_LOG), None, DiagnoseRequest(model_config_json="{not json"))


def test_moe_llava_checkpoint_folder_resolves_like_moe_llava_does():
    script = ("deepspeed moellava/train/train_mem.py \\\n    --moe_enable True --num_experts 4 \\\n"
              "    --model_name_or_path ./checkpoints/llavaphi-2.7b-finetune \\\n"
              "    --image_tower openai/clip-vit-large-patch14-336 \\\n    --per_device_train_batch_size 8\n")
    setup = assemble_setup(parse_log("CUDA error: out of memory\n"), load_config(script, "finetune_moe.sh"), None)
    assert setup.model is not None and setup.model.num_experts == 4 and setup.model.vision is not None
    assert setup.provenance["model"].origin == "registry"


def test_a_config_file_name_in_the_log_is_not_a_model_name():
    log = ("[INFO|configuration_utils.py:699] 2025-01-02 10:00:00,000 >> loading configuration file config.json from cache "
           "at /root/.cache/huggingface/hub/models--org--m/snapshots/1/config.json\nCUDA error: out of memory\n")
    setup = assemble_setup(parse_log(log), None, None)
    assert setup.model_name != "config.json"


def test_peft_trainable_share_gives_the_method():
    log = ("trainable params: 41,943,040 || all params: 8,072,204,288 || trainable%: 0.5196\n"
           "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB.\n")
    setup = assemble_setup(parse_log(log))
    assert setup.method == "lora" and setup.provenance["method"].origin == "log"
    yaml_doc = load_config("finetuning_type: full\nper_device_train_batch_size: 1\n", "train.yaml")
    assert assemble_setup(parse_log(log), yaml_doc).method == "full"  # the config wins over the log


def test_attention_kernel_and_host_ram_the_log_shows_are_log_facts():
    from ask_oom.tools.report import OOMReport

    report = OOMReport(kind="cuda_oom", attn_implementation="eager", host_ram_total_bytes=64 * GiB)
    setup = assemble_setup(report)
    assert setup.attn_implementation == "eager" and setup.provenance["attn_implementation"].origin == "log"
    assert setup.host_ram_bytes == 64 * GiB and setup.provenance["host_ram_bytes"].origin == "log"
    assert assemble_setup(OOMReport(kind="cuda_oom", attn_implementation="eager_or_sdpa")).provenance[
        "attn_implementation"].origin == "default"


@pytest.mark.parametrize("name, bits", [("Qwen/Qwen2-VL-7B-Instruct-GPTQ-Int8", 8), ("unsloth/Qwen2-VL-7B-Instruct-bnb-4bit", 4),
                                        ("Qwen/Qwen2.5-7B-Instruct-AWQ", 4), ("Qwen/Qwen2.5-7B-Instruct", None)])
def test_a_pre_quantized_checkpoint_is_sized_by_its_bits(name, bits):
    from ask_oom.tools.log_parser import parse_log
    from ask_oom.tools.report_refinement import refine_report
    from ask_oom.tools.log_cues import log_cues

    text = f"I load {name} on a 24 GB card\ntorch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB.\n"
    report = refine_report(parse_log(text), text, cues=log_cues(text)).report
    setup = assemble_setup(report)
    assert setup.model is not None and setup.quantization_bit == bits
    if bits:
        assert setup.method == "qlora" and setup.provenance["quantization_bit"].origin == "derived"


def test_a_model_named_in_the_log_but_not_listed_gets_the_nearest_stand_in_as_an_assumption():
    from ask_oom.tools.log_parser import parse_log
    from ask_oom.tools.log_cues import log_cues
    from ask_oom.tools.report_refinement import refine_report

    text = "QLoRA on Qwen-72B-Chat-Int4 with 8x V100 32GB still runs out of GPU memory (OOM)\n"
    report = refine_report(parse_log(text), text, cues=log_cues(text)).report
    setup = assemble_setup(report)
    assert setup.model is not None and setup.model.name == "Qwen/Qwen2.5-72B"
    assert setup.provenance["model"].origin == "derived" and "does not list" in setup.provenance["model"].detail
    assert setup.quantization_bit == 4 and setup.method == "qlora"


def test_a_printed_parameter_count_sizes_a_model_no_name_resolves():
    """The log prints the model's count but names no model: a model of that size stands in (a derived fact that
    cites the count), or below the registry's smallest the count sizes the weights alone; the trainable share it
    prints beside decides the method."""
    oom = "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 MiB\n"
    setup = assemble_setup(parse_log("Trainable parameters = 1,361,753,856 of 5,661,833,328 (24.05% trained)\n" + oom))
    assert setup.model is not None and setup.model.name == "meta-llama/Llama-2-7b-hf"
    prov = setup.provenance["model"]
    assert prov.origin == "derived" and "5,661,833,328 parameters" in prov.detail and "log line 1" in prov.detail
    assert setup.method == "full" and setup.provenance["method"].origin == "log"
    setup = assemble_setup(parse_log("number of parameters: 123.69M\n" + oom))
    assert setup.model is None and setup.stated_params == 123_690_000
    assert setup.provenance["stated_params"].origin == "log"
    # a model the log names wins over the count
    setup = assemble_setup(parse_log("--model_name_or_path Qwen/Qwen2.5-7B\nTotal parameters: 2,826,830,336\n" + oom))
    assert setup.model is not None and setup.model.name == "Qwen/Qwen2.5-7B"


def test_a_placeholder_model_in_the_config_gives_way_to_the_model_the_words_name():
    from ask_oom.tools.log_cues import log_cues
    from ask_oom.tools.report_refinement import refine_report

    text = "4张80G的A100好像不能支持基于lora的7b bloom在batch为4的条件下训练, batch只能设置到1\n"
    doc = load_config("deepspeed --num_gpus 4 main.py --model_name_or_path xxx --per_device_train_batch_size 4 "
                      "--lora_dim 128\n", "run.sh")
    report = refine_report(parse_log(text), text, cues=log_cues(text), doc=doc).report
    setup = assemble_setup(report, doc)
    assert setup.model_name == "xxx" and setup.model is not None and setup.model.name == "bigscience/bloom-7b1"
    assert "named in the log" in setup.provenance["model"].detail and "'xxx'" in setup.provenance["model"].detail
    named = load_config("deepspeed --num_gpus 4 main.py --model_name_or_path Qwen/Qwen2.5-7B\n", "run.sh")
    assert assemble_setup(report, named).model.name == "Qwen/Qwen2.5-7B"   # a config naming a real model wins


def test_a_vision_language_model_trains_on_one_image_per_sample_unless_told():
    vl = assemble_setup(parse_log(""), load_config("model_name_or_path: Qwen/Qwen2-VL-7B-Instruct\nstage: sft\n", "t.yaml"))
    assert vl.images_per_sample == 1 and vl.provenance["images_per_sample"].origin == "default"
    text = assemble_setup(parse_log(""), load_config("model_name_or_path: Qwen/Qwen2.5-7B\nstage: sft\n", "t.yaml"))
    assert text.images_per_sample == 0


@pytest.mark.parametrize("words, method", [
    ("I wanted to finetune the llama-7b model without any PEFT and quantization, OOM on an A100", "full"),
    ("全参微调 Qwen2-7B 爆显存", "full"),
    ("full-parameter fine-tuning of Llama-2-13b runs out of memory", "full"),
    ("finetuning with lora on a 3090 runs out of memory", "lora"),
    # adapters worked where full fine-tuning ran out: the failing run is the full one
    ("--finetuning_type是lora可以跑起来，--finetuning_type=full 全参就爆显存", "full"),
])
def test_the_method_stated_in_words_or_an_adapter_denied(words, method):
    from ask_oom.tools.log_cues import log_cues
    from ask_oom.tools.setup_assembly import adapter_method_named
    from ask_oom.tools.training_setup import TrainingSetup

    setup = adapter_method_named(TrainingSetup(), log_cues(words))
    assert setup.method == method and setup.provenance["method"].origin == "log"
    # a config's method stands
    stated = TrainingSetup().with_fact("method", "lora", "config", "train.yaml")
    assert adapter_method_named(stated, log_cues(words)).method == "lora"


def test_a_paste_without_any_sign_of_training_is_sized_as_inference():
    from ask_oom.tools.log_cues import log_cues
    from ask_oom.tools.setup_assembly import workload_named
    from ask_oom.tools.training_setup import TrainingSetup

    served = "python cli_demo.py --model Qwen2-7B\ntorch.cuda.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB.\n"
    setup = workload_named(TrainingSetup(), log_cues(served))
    assert setup.workload == "eval" and setup.provenance["workload"].origin == "default"   # shown as an assumption
    trained = served.replace("cli_demo.py", "train.py")
    assert workload_named(TrainingSetup(), log_cues(trained)).workload == "train"
    assert workload_named(TrainingSetup(), log_cues(served, "num_train_epochs: 3\n")).workload == "train"
    stated = TrainingSetup().with_fact("method", "lora", "config", "train.yaml")
    assert workload_named(stated, log_cues(served)).workload == "train"
    # a method only derived from a quantized checkpoint's name ("GPTQ trains adapters") is no sign of training: a
    # GPTQ model served by a chat server is sized as inference
    derived = TrainingSetup().with_fact("method", "qlora", "derived", "a quantized checkpoint trains only adapters")
    assert workload_named(derived, log_cues(served)).workload == "eval"


def test_a_model_only_the_configs_text_names_is_sized():
    """No key the readers know holds the model (an axolotl YAML pasted under its launch command), but the text names
    one: it is sized, and the provenance says where it was named."""
    text = ("accelerate launch scripts/finetune.py config.yaml --deepspeed deepspeed_configs/zero2.json\n[...]\n"
            "base_model: mistralai/Mixtral-8x7B-v0.1\nmodel_type: AutoModelForCausalLM\n[...]\nload_in_4bit: true\n")
    doc = load_config(text, "pasted_run.sh")
    assert doc.format == "shell" and "base_model" not in doc.settings
    setup = assemble_setup(parse_log("torch.OutOfMemoryError: CUDA out of memory."), doc)
    assert setup.model is not None and setup.model.name == "mistralai/Mixtral-8x7B-v0.1"
    assert "named in pasted_run.sh" in setup.provenance["model"].detail


def test_a_gguf_engine_runs_4_bit_weights_unless_a_width_is_stated():
    """ollama and llama.cpp run GGUF files, 4-bit (Q4_K_M) by default: a model they serve is sized at that width, shown
    as an assumption, and its weights are stored so even though the method defaults to full. A stated width wins,
    and an engine that loads Hugging Face weights (vLLM) keeps 16 bits."""
    from ask_oom.tools.log_cues import log_cues
    from ask_oom.tools.memory import estimate_memory, resolve_model
    from ask_oom.tools.setup_assembly import gguf_weights

    cues = log_cues("ollama run llama3.1:70b\nError: CUDA error: out of memory\n")
    base = TrainingSetup(model=resolve_model("meta-llama/Llama-2-70b-hf")).with_fact(
        "workload", "eval", "default", "nothing in the paste speaks of training")
    served = gguf_weights(base, cues)
    assert served.quantization_bit == 4 and served.provenance["quantization_bit"].origin == "default"
    assert estimate_memory(served).breakdown.all_weights() < estimate_memory(base).breakdown.all_weights() / 3
    assert gguf_weights(base.with_fact("quantization_bit", 8, "user", "Q8_0 file"), cues).quantization_bit == 8
    vllm = log_cues("vllm serve meta-llama/Llama-2-70b-hf\ntorch.OutOfMemoryError: CUDA out of memory\n")
    assert gguf_weights(base, vllm).quantization_bit is None


def test_a_quantizers_target_bits_do_not_shrink_the_model_it_loads():
    """AutoGPTQ's bits=4 is what it will write: it loads the 16-bit model to quantize it, so a config's bits size no
    stored weights outside training, while a checkpoint named as quantized does."""
    from ask_oom.tools.memory import estimate_memory, resolve_model

    base = TrainingSetup(model=resolve_model("Qwen/Qwen2.5-7B")).with_fact("workload", "eval", "default", "no training")
    target = base.with_fact("quantization_bit", 4, "config", "quantize_config: bits")
    named = base.with_fact("quantization_bit", 4, "derived", "the checkpoint's name: GPTQ-Int4")
    sixteen = estimate_memory(base).breakdown.all_weights()
    assert estimate_memory(target).breakdown.all_weights() == sixteen
    assert estimate_memory(named).breakdown.all_weights() < sixteen / 2


def test_a_run_that_only_runs_the_model_takes_the_width_the_paste_loads_it_in():
    """Inference that loads the model in 4 or 8 bits as the paste says ("72B int4", load_in_8bit, 4-bit) sizes its
    weights at that width; a stated width wins, a training run's quantized base is its method's business, and an 8-bit
    optimizer is no 8-bit model."""
    from ask_oom.tools.setup_assembly import quantized_weights

    base = TrainingSetup(model=None).with_fact("workload", "generate", "log", "generation named in the log")
    for text, bits in (("Qwen1.5-chat 72B int4 on 4 V100 runs out of memory at 10k tokens\n", 4),
                       ("model = AutoModelForCausalLM.from_pretrained(path, load_in_8bit=True)\n", 8),
                       ("a 34B model in 4-bit runs out of memory while generating\n", 4)):
        setup = quantized_weights(base, "the model OOMs\n" + text)
        assert setup.quantization_bit == bits and setup.provenance["quantization_bit"].origin == "log", text
        assert setup.provenance["quantization_bit"].detail.startswith("log line 2: "), text
    # ...and the calculator sizes them at it: 72B at 4 bits is about a quarter of its 16-bit weights
    from ask_oom.tools.memory import estimate_memory, resolve_model

    sized = base.model_copy(update={"model": resolve_model("Qwen/Qwen2.5-72B")})
    sixteen = estimate_memory(sized).breakdown.all_weights()
    four = estimate_memory(quantized_weights(sized, "Qwen1.5-chat 72B int4 on 4 V100\n")).breakdown.all_weights()
    assert 0.25 * sixteen < four < 0.35 * sixteen
    # h2oGPT's and alpaca-lora's load_8bit, FastChat's --load-8bit
    for text in ("python generate.py --base_model=llama --load_8bit=True\n", "python3 -m fastchat.serve.cli --load-8bit\n"):
        assert quantized_weights(base, text).quantization_bit == 8, text
    said = "load_in_4bit=True\n"
    assert quantized_weights(base.with_fact("quantization_bit", 8, "user", "8-bit"), said).quantization_bit == 8
    train = base.with_fact("workload", "train", "log", "training")
    assert quantized_weights(train, said).quantization_bit is None
    assert quantized_weights(base, "we use 8-bit Adam to save memory\n").quantization_bit is None
    # a quantizing job's own module names no width of the model it loads
    assert quantized_weights(base, "INFO [auto_gptq.quantization.gptq] avg loss: 0.1\n").quantization_bit is None
