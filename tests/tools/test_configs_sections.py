"""Training arguments nested in a section (litgpt's train:, ChatGLM3's training_args: and peft_config:): read as the run's
own, and edited where they stand."""

from __future__ import annotations

from ask_oom.tools.configs import ConfigChange, apply_changes, apply_config_to_setup, load_config
from ask_oom.tools.configs.keys import lift_sections
from ask_oom.tools.training_setup import TrainingSetup

CHATGLM3 = """model_name_or_path: THUDM/chatglm3-6b
max_input_length: 128
max_output_length: 256
training_args:
  # see `transformers.Seq2SeqTrainingArguments`
  output_dir: ./output
  per_device_train_batch_size: 4
  per_device_eval_batch_size: 16
  evaluation_strategy: steps
peft_config:
  peft_type: LORA
  r: 8
"""

LITGPT = """checkpoint_dir: checkpoints/meta-llama/Llama-2-7b-hf
precision: bf16-true
train:
  global_batch_size: 16
  micro_batch_size: 4
  max_seq_length: 2048
eval:
  interval: 100
"""


def test_a_sections_keys_are_read_beside_the_top_levels_which_wins():
    flat, where = lift_sections({"train": {"micro_batch_size": 4, "lr": 1}, "lr": 2, "eval": {"batch_size": 64}})
    assert flat["micro_batch_size"] == 4 and flat["lr"] == 2 and where == {"micro_batch_size": "train"}
    assert "batch_size" not in flat                      # an eval section is not the training step's
    assert lift_sections({"train": True}) == ({"train": True}, {})   # mlx-lm's train: true is a setting


def test_chatglm3_training_args_and_lengths_reach_the_setup():
    doc = load_config(CHATGLM3, "chatglm3.yaml")
    setup = apply_config_to_setup(doc, TrainingSetup())
    assert setup.micro_batch == 4 and setup.eval_batch == 16 and setup.method == "lora" and setup.lora_rank == 8
    assert setup.provenance["micro_batch"].detail == "chatglm3.yaml: training_args.per_device_train_batch_size"
    assert setup.seq_len == 384 and setup.provenance["seq_len"].detail.endswith("max_input_length + max_output_length")
    assert any("training_args" in n for n in doc.notes)


def test_litgpt_train_section_reaches_the_setup():
    setup = apply_config_to_setup(load_config(LITGPT, "lora.yaml"), TrainingSetup())
    assert setup.micro_batch == 4 and setup.seq_len == 2048 and setup.precision == "pure_bf16"


def test_changes_are_written_in_the_section_and_new_settings_go_into_it():
    doc = load_config(CHATGLM3, "chatglm3.yaml")
    new, _ = apply_changes(doc, [ConfigChange(key="per_device_train_batch_size", from_value=4, to_value=1),
                                 ConfigChange(key="gradient_checkpointing", from_value=None, to_value=True),
                                 ConfigChange(key="lora_alpha", from_value=None, to_value=16)])
    again = load_config(new, "chatglm3.yaml")
    assert again.settings["per_device_train_batch_size"] == 1 and again.sections["gradient_checkpointing"] == "training_args"
    assert again.sections["lora_alpha"] == "peft_config"
    assert again.settings["training_args"]["per_device_train_batch_size"] == 1
    assert new.count("per_device_train_batch_size") == 1   # edited in place, never added at the top level
    assert "  # see `transformers.Seq2SeqTrainingArguments`\n" in new   # the rest stays as written
