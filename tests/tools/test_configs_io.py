"""Config readers/rewriter: formats, exact round-trips, in-place edits, and safe loading."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from ask_oom.tools.configs import ConfigChange, apply_changes, load_config, unified_diff
from ask_oom.tools.configs.documents import detect_format
from ask_oom.tools.configs.yaml_doc import read_yaml
from ask_oom.tools.errors import InputError

SEEDS = Path(__file__).resolve().parents[1] / "fixtures" / "seeds"
CONFIGS = Path(__file__).resolve().parents[1] / "fixtures" / "configs"


def _files(folder: str) -> dict[str, str]:
    return {p.name: p.read_text() for p in (SEEDS / folder).iterdir() if p.name not in ("train.log", "expected.json")}


SEED_MAIN = {
    "kimi-vl-a3b": "train.yaml", "qwen2.5-vl-7b": "train.yaml", "qwen2.5-32b": "train.yaml",
    "moe-llava-phi2": "finetune_moe.sh", "deepke-llama2-13b": "run.sh",
}


@pytest.mark.parametrize("folder,main", sorted(SEED_MAIN.items()))
def test_seed_configs_load_and_round_trip_unchanged(folder, main):
    files = _files(folder)
    doc = load_config(files[main], main, files)
    text, ds = apply_changes(doc, [])
    assert text == files[main]
    assert ds is None
    assert unified_diff(files[main], text, main) == ""


def test_formats_are_detected():
    files = _files("kimi-vl-a3b")
    assert load_config(files["train.yaml"], "train.yaml", files).format == "llamafactory_yaml"
    assert load_config(files["ds_z3_config.json"], "ds_z3_config.json").format == "deepspeed_json"
    assert load_config(_files("moe-llava-phi2")["finetune_moe.sh"], "finetune_moe.sh", _files("moe-llava-phi2")).format == "shell"
    assert load_config((CONFIGS / "hf_args.json").read_text(), "hf_args.json").format == "hf_json"
    assert load_config((CONFIGS / "accelerate_ds.yaml").read_text(), "accelerate_ds.yaml").format == "accelerate_yaml"
    # no telling file name: the content decides
    assert detect_format("deepspeed train.py --bf16 True\n", "pasted") == "shell"
    assert detect_format('{"zero_optimization": {"stage": 2}}', "pasted") == "json"


def test_yaml_edit_changes_only_the_value_and_keeps_comments_and_quotes():
    text = (
        "# my run\n"
        "model_name_or_path: 'Qwen/Qwen2.5-7B-Instruct'  # quoted on purpose\n"
        "finetuning_type: lora\n"
        "cutoff_len: 4096   # long samples\n"
        "per_device_train_batch_size: 8\n"
        "gradient_accumulation_steps: 2\n"
        "learning_rate: 1.0e-4\n"
        "unknown_key_kept: {a: 1}\n"
    )
    doc = load_config(text, "train.yaml")
    new, _ = apply_changes(doc, [ConfigChange(key="cutoff_len", to_value=2048),
                                 ConfigChange(key="per_device_train_batch_size", to_value=4),
                                 ConfigChange(key="model_name_or_path", to_value="Qwen/Qwen2.5-3B-Instruct")])
    assert new.splitlines()[0] == "# my run"
    assert "cutoff_len: 2048   # long samples" in new
    assert "model_name_or_path: 'Qwen/Qwen2.5-3B-Instruct'  # quoted on purpose" in new
    assert "learning_rate: 1.0e-4" in new and "unknown_key_kept: {a: 1}" in new
    changed = [line for line in unified_diff(text, new, "t").splitlines() if line.startswith(("+", "-")) and not line.startswith(("+++", "---"))]
    assert len(changed) == 6


def test_yaml_new_key_goes_beside_its_related_key():
    files = _files("kimi-vl-a3b")
    doc = load_config(files["train.yaml"], "train.yaml", files)
    new, _ = apply_changes(doc, [ConfigChange(key="freeze_multi_modal_projector", to_value=True),
                                 ConfigChange(key="flash_attn", to_value="fa2"),
                                 ConfigChange(key="quantization_bit", to_value=4)])
    lines = new.splitlines()
    assert lines[lines.index("image_max_pixels: 1003520") + 1] == "flash_attn: fa2"
    assert lines[lines.index("finetuning_type: full") + 1] == "quantization_bit: 4"
    assert "freeze_multi_modal_projector: true" in lines
    assert read_yaml(new)["flash_attn"] == "fa2"


def test_nested_yaml_edit_in_accelerate_config():
    text = (CONFIGS / "accelerate_ds.yaml").read_text()
    doc = load_config(text, "accelerate_ds.yaml")
    new, _ = apply_changes(doc, [ConfigChange(key="deepspeed_config.zero_stage", to_value=3),
                                 ConfigChange(key="deepspeed_config.offload_optimizer_device", to_value="cpu")])
    data = read_yaml(new)
    assert data["deepspeed_config"]["zero_stage"] == 3
    assert data["deepspeed_config"]["offload_optimizer_device"] == "cpu"
    assert new.count("\n") - text.count("\n") in (0, 1)
    assert "# written by accelerate config" in new


def test_deepspeed_json_edits_keep_indent_and_auto_values():
    files = _files("moe-llava-phi2")
    doc = load_config(files["finetune_moe.sh"], "finetune_moe.sh", files)
    _, ds = apply_changes(doc, [
        ConfigChange(key="zero_optimization.stage", to_value=3, target="deepspeed"),
        ConfigChange(key="zero_optimization.offload_optimizer", to_value={"device": "cpu", "pin_memory": True}, target="deepspeed"),
    ])
    data = json.loads(ds)
    assert data["zero_optimization"]["stage"] == 3
    assert data["zero_optimization"]["offload_optimizer"] == {"device": "cpu", "pin_memory": True}
    assert '        "stage": 3,' in ds                      # the file's 4-space indent, 8 at this depth
    assert '"sub_group_size": 1e9' in ds                    # untouched literals stay as written
    assert '"train_batch_size": "auto"' in ds
    assert '            "device": "cpu",' in ds


def test_hf_json_and_inline_deepspeed():
    text = (CONFIGS / "hf_args.json").read_text()
    doc = load_config(text, "hf_args.json")
    assert doc.deepspeed_inline and doc.deepspeed["zero_optimization"]["stage"] == 2
    new, ds = apply_changes(doc, [ConfigChange(key="per_device_train_batch_size", to_value=2),
                                  ConfigChange(key="zero_optimization.stage", to_value=3, target="deepspeed")])
    assert ds is None
    data = json.loads(new)
    assert data["per_device_train_batch_size"] == 2 and data["deepspeed"]["zero_optimization"]["stage"] == 3
    assert data["output_dir"] == json.loads(text)["output_dir"]


def test_shell_edits_in_place_and_adds_flags_in_the_scripts_style():
    files = _files("deepke-llama2-13b")
    doc = load_config(files["run.sh"], "run.sh", files)
    assert doc.launcher["num_gpus"] == 3 and doc.launcher["program"] == "torchrun"
    new, _ = apply_changes(doc, [ConfigChange(key="bits", to_value=4), ConfigChange(key="cutoff_len", to_value=256),
                                 ConfigChange(key="output_dir", to_value="out dir")])
    assert new.endswith("    --bf16 \\\n    --bits 4\n")
    assert "    --cutoff_len 256 \\\n" in new
    assert "--output_dir='out dir' \\\n" in new
    again = load_config(new, "run.sh", files)
    assert again.settings["bits"] == 4 and again.settings["cutoff_len"] == 256 and again.settings["output_dir"] == "out dir"
    # everything before the command is untouched
    head = files["run.sh"].split("CUDA_VISIBLE_DEVICES")[0]
    assert new.startswith(head)


def test_shell_single_line_command_and_quoted_values():
    text = 'export PYTHONPATH=.\nllamafactory-cli train --model_name_or_path "Qwen/Qwen2.5-7B" --cutoff_len=1024 --stage sft\necho done\n'
    doc = load_config(text, "train.sh")
    assert doc.framework == "llamafactory" and doc.settings["cutoff_len"] == 1024
    new, _ = apply_changes(doc, [ConfigChange(key="cutoff_len", to_value=512), ConfigChange(key="quantization_bit", to_value=4),
                                 ConfigChange(key="model_name_or_path", to_value="Qwen/Qwen2.5-3B")])
    assert new == ('export PYTHONPATH=.\nllamafactory-cli train --model_name_or_path "Qwen/Qwen2.5-3B" --cutoff_len=512 '
                   '--stage sft --quantization_bit 4\necho done\n')


def test_shell_variables_launchers_and_gpu_counts():
    moe = load_config(_files("moe-llava-phi2")["finetune_moe.sh"], "finetune_moe.sh", _files("moe-llava-phi2"))
    assert moe.settings["num_experts"] == 4                 # ${num_experts} resolved from the script
    assert moe.settings["data_path"] == ["ft_json/llava_image_tune_.json", "ft_json/nlp_tune.json"]
    assert moe.settings["mm_vision_select_layer"] == -2
    assert moe.deepspeed["zero_optimization"]["stage"] == 2  # ./scripts/zero2.json matched by file name
    cases = {
        "deepspeed --include localhost:0,1,2,3 train.py --bf16 True\n": 4,
        "deepspeed --num_gpus 2 train.py --bf16 True\n": 2,
        "torchrun --nproc_per_node=8 --nnodes 2 train.py --bf16 True\n": 8,
        "CUDA_VISIBLE_DEVICES=0,1 accelerate launch --num_processes 2 train.py --bf16 True\n": 2,
        "CUDA_VISIBLE_DEVICES=0,1,2 deepspeed train.py --bf16 True\n": 3,
        "python -m torch.distributed.run --nproc_per_node 4 train.py --bf16 True\n": 4,
        "python -m torch.distributed.launch --nproc_per_node=2 --use_env train.py --bf16 True\n": 2,
        "deepspeed --hostfile hosts --num_nodes 2 --num_gpus 8 train.py --bf16 True\n": 8,
    }
    for text, n in cases.items():
        assert load_config(text, "run.sh").launcher["num_gpus"] == n, text
    assert load_config("torchrun --nproc_per_node=8 --nnodes 2 train.py --bf16 True\n", "r.sh").launcher["num_nodes"] == 2


# ----------------------------------------------------------------------------------------- safety

def test_yaml_bomb_is_refused_quickly():
    bomb = "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n"
    prev = "a"
    for name in "bcdefghi":
        bomb += f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]\n"
        prev = name
    start = time.perf_counter()
    with pytest.raises(InputError, match="alias bomb"):
        load_config(bomb, "bomb.yaml")
    assert time.perf_counter() - start < 5


def test_python_tags_are_refused_and_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    evil = f"model_name_or_path: !!python/object/apply:os.system ['touch {marker}']\ncutoff_len: 1024\n"
    with pytest.raises(InputError, match="tag"):
        load_config(evil, "evil.yaml")
    assert not marker.exists()
    with pytest.raises(InputError, match="tag"):
        load_config("a: !!python/name:os.system\n", "evil.yaml")
    with pytest.raises(InputError, match="tag"):
        load_config("a: !custom 1\n", "evil.yaml")


def test_large_deep_and_malformed_configs_are_refused():
    with pytest.raises(InputError, match="KB limit"):
        load_config("cutoff_len: 1024\n" + "# pad\n" * 2_000_000, "big.yaml")
    start = time.perf_counter()
    with pytest.raises(InputError, match="entries"):
        load_config("".join(f"k{i}: 1\n" for i in range(25000)), "many.yaml")
    assert time.perf_counter() - start < 5
    with pytest.raises(InputError, match="deeper"):
        load_config("a: " + "[" * 200 + "]" * 200 + "\n", "deep.yaml")
    with pytest.raises(InputError, match="deeper"):
        load_config('{"a": ' + "[" * 200 + "]" * 200 + "}", "deep.json")
    with pytest.raises(InputError, match="not valid YAML"):
        load_config("a: [1, 2\nb: c: d\n", "bad.yaml")
    with pytest.raises(InputError, match="not valid JSON"):
        load_config('{"zero_optimization": {"stage": 2,}}', "bad.json")
    with pytest.raises(InputError, match="mapping"):
        load_config("- just\n- a list\n", "list.yaml")
    with pytest.raises(InputError, match="no training command"):
        load_config("#!/bin/bash\necho hello\n", "run.sh")


def test_missing_deepspeed_file_is_a_note_whether_or_not_other_files_are_given():
    """Every entry point reads a config the same way: a named DeepSpeed file nobody gave is a note, never an error
    that one door raises and another does not. LLaMA-Factory's ds_z3_config.json is assumed with its published
    content; a name nobody publishes has its stage inferred from the name."""
    files = _files("kimi-vl-a3b")
    for extra in ({"other.json": "{}"}, {}, None):
        doc = load_config(files["train.yaml"], "train.yaml", extra)
        assert doc.deepspeed["zero_optimization"]["stage"] == 3 and doc.deepspeed["train_micro_batch_size_per_gpu"] == "auto"
        assert doc.deepspeed_text is None and "hiyouga/LLaMA-Factory" in doc.deepspeed_assumed
        assert any("ds_z3_config.json" in n and "assumed" in n and "not given" in n for n in doc.notes)
        own = load_config(files["train.yaml"].replace("ds_z3_config.json", "my_z3.json"), "train.yaml", extra)
        assert own.deepspeed == {"zero_optimization": {"stage": 3}}
        assert any("my_z3.json" in n and "inferred" in n and "not given" in n for n in own.notes)


def test_shell_flag_set_through_a_variable_edits_the_assignment():
    text = ('#!/bin/bash\nBS=8\nGA="2"\nOUT=out\ndeepspeed train.py \\\n  --per_device_train_batch_size $BS \\\n'
            '  --gradient_accumulation_steps ${GA} \\\n  --output_dir $OUT/x \\\n  --logging_dir $OUT/logs\n')
    doc = load_config(text, "run.sh")
    assert doc.settings["per_device_train_batch_size"] == 8 and doc.settings["gradient_accumulation_steps"] == 2
    new, _ = apply_changes(doc, [ConfigChange(key="per_device_train_batch_size", to_value=4),
                                 ConfigChange(key="gradient_accumulation_steps", to_value=4),
                                 ConfigChange(key="output_dir", to_value="o2")])
    assert new.startswith('#!/bin/bash\nBS=4\nGA="4"\nOUT=out\n')       # the assignments, in their quoting
    assert "--per_device_train_batch_size $BS \\\n" in new
    assert "--output_dir o2 \\\n" in new and "--logging_dir $OUT/logs\n" in new   # $OUT is shared: edited in place


def test_yaml_missing_sections_are_created_as_nested_blocks():
    text = "compute_environment: LOCAL_MACHINE\ndistributed_type: MULTI_GPU\nnum_processes: 4  # four\n"
    doc = load_config(text, "accelerate.yaml")
    new, _ = apply_changes(doc, [ConfigChange(key="deepspeed_config.zero_stage", to_value=3),
                                 ConfigChange(key="deepspeed_config.offload_optimizer_device", to_value="cpu")])
    assert new == text + "deepspeed_config:\n  zero_stage: 3\n  offload_optimizer_device: cpu\n"


def test_windows_line_ends_and_byte_order_marks_survive_edits():
    y = "model_name_or_path: Qwen/Qwen2.5-7B\r\nstage: sft\r\ncutoff_len: 4096\r\nper_device_train_batch_size: 4\r\n"
    new, _ = apply_changes(load_config(y, "t.yaml"), [ConfigChange(key="cutoff_len", to_value=2048),
                                                      ConfigChange(key="gradient_accumulation_steps", to_value=2)])
    assert new == y.replace("4096", "2048") + "gradient_accumulation_steps: 2\r\n"
    sh = "deepspeed train.py \\\r\n  --per_device_train_batch_size 8 \\\r\n  --bf16 True\r\n"
    doc = load_config(sh, "r.sh")
    assert doc.settings == {"per_device_train_batch_size": 8, "bf16": True}
    new, _ = apply_changes(doc, [ConfigChange(key="per_device_train_batch_size", to_value=4), ConfigChange(key="bits", to_value=4)])
    assert new == "deepspeed train.py \\\r\n  --per_device_train_batch_size 4 \\\r\n  --bf16 True \\\r\n  --bits 4\r\n"
    ds = '\ufeff{\r\n  "zero_optimization": {\r\n    "stage": 2\r\n  }\r\n}\r\n'
    doc = load_config(ds, "ds.json")
    new, _ = apply_changes(doc, [ConfigChange(key="zero_optimization.offload_optimizer", to_value={"device": "cpu"}, target="deepspeed")])
    assert "\n" not in new.replace("\r\n", "") and new.startswith("\ufeff{")
    assert json.loads(new.lstrip("\ufeff"))["zero_optimization"]["offload_optimizer"] == {"device": "cpu"}


def test_yaml_anchors_and_merge_keys_are_read():
    text = "base: &b\n  cutoff_len: 1024\nrun:\n  <<: *b\n  finetuning_type: lora\nmodel_name_or_path: x\ntemplate: qwen\n"
    assert load_config(text, "t.yaml").settings["run"] == {"cutoff_len": 1024, "finetuning_type": "lora"}


def test_odd_yaml_keys_become_strings():
    assert load_config(":\n1: a\n", "odd.yaml").settings == {"null": None, "1": "a"}


def test_pasted_command_without_backslashes_keeps_its_flag_lines():
    """Issue trackers drop the trailing backslashes; a line starting with --flag still continues the command."""
    text = ("CUDA_VISIBLE_DEVICES=0 python src/train_bash.py\n--stage sft\n--model_name_or_path /m/baichuan-7b\n"
            "--per_device_train_batch_size 4\n--gradient_accumulation_steps 8\n")
    doc = load_config(text, "run.sh")
    assert doc.settings["per_device_train_batch_size"] == 4 and doc.settings["gradient_accumulation_steps"] == 8
    new, _ = apply_changes(doc, [ConfigChange(key="per_device_train_batch_size", from_value=4, to_value=1, rationale="fit")])
    again = load_config(new, "run.sh")
    assert again.settings["per_device_train_batch_size"] == 1 and again.settings["stage"] == "sft"
    assert new.replace("--per_device_train_batch_size 1", "--per_device_train_batch_size 4") == text


def test_a_shortened_yaml_paste_reads_with_its_cut_marker_as_a_comment():
    text = ("### model\nmodel_name_or_path: Qwen/Qwen2.5-7B\n[...]\nfinetuning_type: lora\n  ...\n"
            "per_device_train_batch_size: 4\ncutoff_len: 4096\n")
    doc = load_config(text, "train.yaml")
    assert doc.settings["per_device_train_batch_size"] == 4 and doc.settings["finetuning_type"] == "lora"
    assert "# [...]" in doc.text and any("cut" in n for n in doc.notes)
    with pytest.raises(InputError):
        load_config("a: [1, 2\nb: 3\n", "train.yaml")   # broken YAML without a cut marker is still an error


def test_a_json_paste_cut_short_with_markers_reads_and_rewrites_in_place():
    from ask_oom.tools.configs.json_doc import parse_json, set_json_values

    text = '{\n  "a": 1,\n  [...]\n  "b": {"c": 2,\n   ...\n  },\n  "d": 3\n  [...]\n}\n'
    index = parse_json(text)
    assert index.value == {"a": 1, "b": {"c": 2}, "d": 3} and index.cuts == 3
    out = set_json_values(text, {("a",): 5, ("b", "c"): 7})
    assert out == text.replace('"a": 1', '"a": 5').replace('"c": 2', '"c": 7')   # the marks stay where the user put them
    doc = load_config('{\n  "cutoff_len": 4096,\n  [...]\n  "per_device_train_batch_size": 2\n}\n', "config.json")
    assert doc.settings["cutoff_len"] == 4096 and any("cut" in n for n in doc.notes)
    with pytest.raises(InputError):
        load_config('{\n  "a": 1,\n  [...] "b"\n}\n', "config.json")     # a mark inside a member is still not JSON


MEGATRON = ("MICRO_BATCH_SIZE=4\nSEQ_LENGTH=4096\n"
            "torchrun --nproc_per_node 8 pretrain_gpt.py \\\n"
            "       --tensor-model-parallel-size 2 \\\n"
            "       --micro-batch-size $MICRO_BATCH_SIZE \\\n"
            "       --seq-length $SEQ_LENGTH \\\n"
            "       --bf16\n")


def test_dashed_flags_are_the_settings_argparse_stores_and_are_edited_as_written():
    """Megatron spells its flags --micro-batch-size; argparse stores micro_batch_size. Read under both names, edited
    where they stand (here: the one assignment the flag takes its value from), new flags spelled the script's way."""
    from ask_oom.tools.configs import apply_config_to_setup
    from ask_oom.tools.training_setup import TrainingSetup

    doc = load_config(MEGATRON, "pretrain.sh")
    assert doc.settings["micro-batch-size"] == 4 and doc.settings["micro_batch_size"] == 4
    setup = apply_config_to_setup(doc, TrainingSetup())
    assert setup.micro_batch == 4 and setup.seq_len == 4096
    new, _ = apply_changes(doc, [ConfigChange(key="micro_batch_size", from_value=4, to_value=1),
                                 ConfigChange(key="recompute_granularity", to_value="full")])
    assert new.startswith("MICRO_BATCH_SIZE=1\n") and "--micro_batch_size" not in new
    assert new.endswith("--bf16 \\\n       --recompute-granularity full\n")


def test_a_pastes_elision_after_a_flag_is_not_its_value():
    text = ("deepspeed --num_gpus=1 src/train_bash.py \\\n    --stage pt \\\n    --finetuning_type lora \\\n"
            "    --cutoff_len 16384 \\\n[...]\n")
    assert load_config(text, "run.sh").settings["cutoff_len"] == 16384


@pytest.mark.parametrize("flags, seq_len", [
    ("--source_max_len 384 --target_max_len 128", 512),                   # qlora.py
    ("--max_prompt_seq_len 256 --max_answer_seq_len 256", 512),           # DeepSpeed-Chat step 3
    ("--prompt_max_len 1024 --generate_max_len 1024", 2048),              # OpenRLHF PPO
    ("--max_prompt_length 512 --max_completion_length 1536", 2048),       # TRL GRPO
    ("--max_length 4096 --max_prompt_length 512", 4096),                  # one cap on the whole sequence wins
])
def test_capped_prompt_and_answer_lengths_add_up_to_the_sequence(flags, seq_len):
    from ask_oom.tools.configs import apply_config_to_setup
    from ask_oom.tools.training_setup import TrainingSetup

    doc = load_config(f"deepspeed train.py --per_device_train_batch_size 2 {flags}\n", "run.sh")
    assert apply_config_to_setup(doc, TrainingSetup()).seq_len == seq_len


def test_llama_recipes_and_deepspeed_chat_batch_keys_are_the_micro_batch():
    from ask_oom.tools.configs import apply_config_to_setup
    from ask_oom.tools.training_setup import TrainingSetup

    for text in ("torchrun --nproc_per_node 1 finetuning.py --use_peft --batch_size_training 2\n",
                 "deepspeed main.py --per_device_training_batch_size 2 --actor_zero_stage 2\n"):
        assert apply_config_to_setup(load_config(text, "run.sh"), TrainingSetup()).micro_batch == 2, text
