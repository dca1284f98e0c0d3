"""apply_config_to_setup: framework keys and defaults → TrainingSetup with provenance."""

from __future__ import annotations

from pathlib import Path

import pytest

from ask_oom.tools.configs import apply_config_to_setup, load_config
from ask_oom.tools.configs.schema import ConfigDocument
from ask_oom.tools.configs.validation import ImpossibleValue
from ask_oom.tools.errors import InputError
from ask_oom.tools.training_setup import TrainingSetup

SEEDS = Path(__file__).resolve().parents[1] / "fixtures" / "seeds"
CONFIGS = Path(__file__).resolve().parents[1] / "fixtures" / "configs"


def _setup(text: str, name: str = "train.yaml", files: dict[str, str] | None = None) -> TrainingSetup:
    return apply_config_to_setup(load_config(text, name, files), TrainingSetup())


def test_llamafactory_defaults_are_the_frameworks():
    s = _setup("model_name_or_path: Qwen/Qwen2.5-7B-Instruct\nstage: sft\nfinetuning_type: lora\ntemplate: qwen\n")
    assert s.framework == "llamafactory"
    assert s.method == "lora" and s.lora_rank == 8 and s.lora_targets == ["all"]
    assert s.gradient_checkpointing is True and s.provenance["gradient_checkpointing"].origin == "default"
    assert s.attn_implementation == "sdpa" and s.provenance["attn_implementation"].origin == "default"
    assert s.seq_len == 2048 and s.provenance["seq_len"].origin == "default"
    assert s.precision == "bf16_mixed" and s.micro_batch == 8 and s.grad_accum == 1
    assert s.model is not None and s.model.hidden_size == 3584
    assert s.provenance["model_name"].origin == "config" and s.provenance["model_name"].detail == "train.yaml: model_name_or_path"


def test_llamafactory_explicit_keys_win():
    s = _setup(
        "model_name_or_path: Qwen/Qwen2.5-7B-Instruct\nfinetuning_type: lora\nlora_rank: 64\nlora_target: q_proj,v_proj\n"
        "quantization_bit: 4\ncutoff_len: 8192\ndisable_gradient_checkpointing: true\nflash_attn: disabled\npure_bf16: true\n"
        "enable_liger_kernel: true\nper_device_train_batch_size: 2\ngradient_accumulation_steps: 8\n"
    )
    assert s.method == "qlora" and s.quantization_bit == 4 and s.lora_rank == 64 and s.lora_targets == ["q_proj", "v_proj"]
    assert s.seq_len == 8192 and s.provenance["seq_len"].detail.endswith("cutoff_len")
    assert s.gradient_checkpointing is False and s.provenance["gradient_checkpointing"].origin == "config"
    assert s.attn_implementation == "eager" and s.precision == "pure_bf16" and s.liger_kernel
    assert (s.micro_batch, s.grad_accum) == (2, 8)
    fa2 = _setup("model_name_or_path: Qwen/Qwen2.5-7B-Instruct\nflash_attn: fa2\nstage: sft\n")
    assert fa2.attn_implementation == "flash_attention_2" and fa2.method == "lora"


def test_llamafactory_multimodal_and_deepspeed_from_file():
    folder = SEEDS / "kimi-vl-a3b"
    files = {p.name: p.read_text() for p in folder.iterdir()}
    s = _setup(files["train.yaml"], "train.yaml", files)
    assert s.method == "full" and s.zero_stage == 3 and not s.offload_optimizer
    assert s.provenance["zero_stage"].detail == "ds_z3_config.json: zero_optimization.stage"
    assert s.freeze_vision_tower is False and s.freeze_projector is False
    assert s.image_max_pixels == 1003520 and s.model.vision is not None
    folder = SEEDS / "qwen2.5-32b"
    files = {p.name: p.read_text() for p in folder.iterdir()}
    s = _setup(files["train.yaml"], "train.yaml", files)
    assert s.zero_stage == 3 and s.offload_optimizer and s.offload_param


def test_hf_trainer_defaults():
    s = _setup((CONFIGS / "hf_args.json").read_text(), "hf_args.json")
    assert s.framework == "hf_trainer"
    assert s.gradient_checkpointing is False and s.provenance["gradient_checkpointing"].origin == "default"
    assert s.eval_batch == 8 and s.provenance["eval_batch"].origin == "default"
    assert s.seq_len == 4096 and s.zero_stage == 2 and s.method == "full"
    assert s.provenance["zero_stage"].detail == "deepspeed (inline): zero_optimization.stage"
    no_eval = _setup('{"per_device_train_batch_size": 4, "output_dir": "o"}', "args.json")
    assert no_eval.eval_batch is None and no_eval.micro_batch == 4


def test_shell_scripts_map_launcher_gpus_lora_and_flash_attention():
    folder = SEEDS / "deepke-llama2-13b"
    files = {p.name: p.read_text() for p in folder.iterdir()}
    s = _setup(files["run.sh"], "run.sh", files)
    assert s.num_gpus == 3 and s.provenance["num_gpus"].detail == "run.sh: --nproc_per_node"
    assert s.method == "lora" and s.lora_rank == 64
    assert s.seq_len == 512 and s.micro_batch == 1 and s.eval_batch == 1
    assert s.model is not None and s.model.num_layers == 40     # models/llama2-13b-chat resolves to Llama-2-13B
    folder = SEEDS / "moe-llava-phi2"
    files = {p.name: p.read_text() for p in folder.iterdir()}
    s = _setup(files["finetune_moe.sh"], "finetune_moe.sh", files)
    assert s.framework == "deepspeed_script" and s.zero_stage == 2 and s.gradient_checkpointing
    assert s.attn_implementation == "flash_attention_2"      # train_mem.py patches in flash-attn
    assert s.model.num_experts == 4 and s.model.num_experts_per_tok == 2 and s.model.vision is not None
    assert s.model.extra["moe_layers_idx"] == list(range(0, s.model.num_layers, 2))   # moe_mode sparse
    assert (s.micro_batch, s.grad_accum, s.seq_len) == (8, 2, 2048)


def test_accelerate_config_and_log_style_pseudo_document():
    s = _setup((CONFIGS / "accelerate_ds.yaml").read_text(), "accelerate_ds.yaml")
    assert s.num_gpus == 4 and s.zero_stage == 2 and s.precision == "bf16_mixed"
    # the setup assembler feeds printed training arguments as a settings-only document
    doc = ConfigDocument(name="log", format="hf_json", text="", settings={
        "per_device_train_batch_size": 16, "gradient_checkpointing": True, "bf16": True, "model_name_or_path": "Qwen/Qwen2.5-0.5B"})
    s = apply_config_to_setup(doc, TrainingSetup())
    assert s.micro_batch == 16 and s.gradient_checkpointing and s.precision == "bf16_mixed" and s.model is not None


def test_ms_swift_command_lines():
    text = ("MAX_PIXELS=1003520 NPROC_PER_NODE=2 CUDA_VISIBLE_DEVICES=0,1 swift sft \\\n  --model Qwen/Qwen2.5-VL-7B-Instruct \\\n"
            "  --train_type full \\\n  --deepspeed zero3-offload \\\n  --max_length 4096 \\\n  --output_dir out\n")
    doc = load_config(text, "sft.sh", {})           # a preset name, not a file: no file needed
    assert doc.framework == "swift" and doc.launcher["num_gpus"] == 2
    s = apply_config_to_setup(doc, TrainingSetup())
    assert s.method == "full" and s.zero_stage == 3 and s.offload_optimizer and s.offload_param
    assert s.seq_len == 4096 and s.micro_batch == 1 and s.gradient_checkpointing      # ms-swift defaults
    assert s.image_max_pixels == 1003520 and s.model is not None and s.model.vision is not None
    old = _setup("swift sft --model_type qwen2_5-7b-instruct --sft_type lora --batch_size 4 --deepspeed default-zero2\n", "run.sh")
    assert old.method == "lora" and old.micro_batch == 4 and old.zero_stage == 2 and old.model is not None


def test_llamafactory_entry_scripts_get_llamafactory_defaults():
    text = ("CUDA_VISIBLE_DEVICES=0 python src/train_bash.py \\\n    --stage sft \\\n    --model_name_or_path Qwen/Qwen2.5-7B \\\n"
            "    --finetuning_type full \\\n    --template qwen \\\n    --per_device_train_batch_size 2\n")
    s = _setup(text, "run.sh")
    assert s.framework == "llamafactory" and s.gradient_checkpointing and s.seq_len == 2048 and s.num_gpus == 1


@pytest.mark.parametrize("text, name, where", [
    ("stage: sft\nmodel_name_or_path: x\nper_device_train_batch_size: -1\n", "train.yaml",
     "train.yaml line 3: per_device_train_batch_size = -1 is impossible: negative"),
    ("stage: sft\ngradient_accumulation_steps: 0\n", "train.yaml", "train.yaml line 2: gradient_accumulation_steps = 0 is impossible: zero"),
    ("stage: sft\n\ncutoff_len: -2048  # tokens\n", "train.yaml", "train.yaml line 3: cutoff_len = -2048 is impossible: negative"),
    ('{\n  "learning_rate": NaN,\n  "output_dir": "o"\n}', "args.json", None),   # not JSON at all: the reader's error
    ("stage: sft\nlearning_rate: nan\n", "train.yaml", "train.yaml line 2: learning_rate = 'nan' is impossible: not a finite"),
    ("stage: sft\nlearning_rate: .nan\n", "train.yaml", "train.yaml line 2: learning_rate = '.nan' is impossible"),
    ("stage: sft\nper_device_train_batch_size: 100000000000\n", "train.yaml", "line 2: per_device_train_batch_size = "
     "100000000000 is impossible: absurdly large"),
    ("stage: sft\nper_device_train_batch_size: 2.5\n", "train.yaml", "not a whole number"),
    ("stage: sft\nper_device_train_batch_size: eight\n", "train.yaml", "not a number"),
    ('{\n  "zero_optimization": {\n    "stage": 7\n  }\n}', "ds.json", "ds.json line 3: zero_optimization.stage = 7 is impossible"),
    ('{\n  "train_micro_batch_size_per_gpu": -4\n}', "ds.json", "ds.json line 2: train_micro_batch_size_per_gpu = -4"),
    ("#!/bin/bash\ndeepspeed train.py \\\n  --per_device_train_batch_size -8 \\\n  --bf16\n", "run.sh",
     "run.sh line 3: per_device_train_batch_size = -8 is impossible: negative"),
    ("args = TrainingArguments(\n    output_dir='o',\n    gradient_accumulation_steps=0,\n)\n", "train.py",
     "train.py line 3: gradient_accumulation_steps = 0 is impossible: zero"),
])
def test_impossible_values_are_errors_naming_the_key_and_the_line(text, name, where):
    """A negative batch, zero accumulation or `cutoff_len: -2048` used to read as 'not set' and take the framework's
    default, so `fix` said "fits"; now the answer stops with the file, the line and the key (exit 2)."""
    with pytest.raises(InputError) as err:
        load_config(text, name)
    if where is not None:
        assert isinstance(err.value, ImpossibleValue) and where in str(err.value)


def test_values_nobody_can_check_here_pass():
    doc = load_config('{\n  "train_micro_batch_size_per_gpu": "auto",\n  "zero_optimization": {"stage": 3}\n}', "ds.json")
    assert doc.deepspeed["train_micro_batch_size_per_gpu"] == "auto"
    doc = load_config("#!/bin/bash\nBS=${1}\ndeepspeed train.py --per_device_train_batch_size $BS --max_steps -1\n", "run.sh")
    assert doc.settings["max_steps"] == -1
    assert load_config("stage: sft\nper_device_train_batch_size: null\ncutoff_len: 4096\n", "t.yaml").settings["cutoff_len"] == 4096


def test_impossible_values_in_a_named_deepspeed_file_name_that_file():
    with pytest.raises(ImpossibleValue, match=r"ds_z3\.json line 4: zero_optimization\.stage = 4"):
        load_config("stage: sft\ndeepspeed: ds_z3.json\n", "train.yaml",
                    {"ds_z3.json": '{\n  "train_batch_size": "auto",\n  "zero_optimization": {\n    "stage": 4}\n}'})


def test_unknown_model_stands_in_by_stated_family_and_size():
    """A model the registry lacks resolves to its nearest family/size neighbour, shown as an assumption."""
    s = _setup("model_name_or_path: /data/models/Qwen1.5-32B-Chat\nstage: sft\nfinetuning_type: lora\n")
    assert s.model is not None and s.model.name == "Qwen/Qwen2.5-32B"
    assert s.provenance["model"].origin == "derived" and "assumed" in s.provenance["model"].detail
    # a family without that size: a Llama-architecture model of the same size
    s = _setup("model_name_or_path: /home/me/baichuan-7b\nstage: sft\nfinetuning_type: lora\n")
    assert s.model is not None and s.model.name == "meta-llama/Llama-2-7b-hf"


def test_opaque_model_name_resolves_through_its_adapter_path():
    text = ("torchrun --nproc_per_node=3 src/finetune.py \\\n    --model_name_or_path '/cache/hub/ORG/OneKE' \\\n"
            "    --checkpoint_dir 'ckpt/llama2-13b-IEPile-lora' \\\n    --finetuning_type lora\n")
    s = _setup(text, "run.sh")
    assert s.model is not None and s.model.name == "meta-llama/Llama-2-13b-hf"
    assert "checkpoint_dir" in s.provenance["model"].detail


def test_unknown_model_without_size_stays_unknown():
    assert _setup("model_name_or_path: my-org/secret-model\nstage: sft\n").model is None


@pytest.mark.parametrize("text, name, bits", [
    ("python3.10 generate.py --base_model=meta-llama/Llama-2-13b-chat-hf --load_8bit=True --max_new_tokens=1024\n",
     "run.sh", 8),
    ("python -m fastchat.serve.cli --model-path lmsys/vicuna-13b-v1.5 --load-8bit\n", "run.sh", 8),
    ("model_name_or_path: meta-llama/Llama-2-13b-hf\nload_in_4bit: true\n", "train.yaml", 4)])
def test_a_base_loaded_quantized_is_held_at_that_width_and_not_trained_in_full(text, name, bits):
    """load_in_8bit and the scripts' load_8bit / --load-8bit load the weights quantized: the run holds them at that
    width, and with no method stated it cannot be full fine-tuning (adapters, shown as the assumption it is)."""
    from ask_oom.tools.memory import estimate_memory

    s = _setup(text, name)
    assert s.quantization_bit == bits and s.provenance["quantization_bit"].origin == "config"
    assert s.method == "qlora" and s.provenance["method"].origin == "default"
    full = s.with_fact("method", "full", "default", "no LoRA settings").with_fact("quantization_bit", None, "default", "")
    assert estimate_memory(s).breakdown.all_weights() < estimate_memory(full).breakdown.all_weights() / 1.8
