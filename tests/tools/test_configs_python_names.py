"""Values a pasted Python snippet gives names (tools/configs/python_names.py): read as the snippet sets them, never run."""

from __future__ import annotations

import pytest

from ask_oom.tools.configs import apply_config_to_setup, load_config
from ask_oom.tools.configs.partial import read_partial
from ask_oom.tools.configs.python_names import UNSET, Reference, named_values, resolve, stated_values
from ask_oom.tools.configs.validation import ImpossibleValue
from ask_oom.tools.training_setup import TrainingSetup

SNIPPET = '''max_seq_length = 1024*32
max_model_len, tp_size = 131072, 1
    max_seq_len: int = 384 + 8                # 8 for eos token
num_train_epochs: int = field(default=10, metadata={"help": "epochs"})
max_length: Optional[int] = 1024
if steps == 3: pass
parser.add_argument("--batch_size", type=int, default=64, help="Batch size")
parser.add_argument(
    "-lr", "--learning-rate",
    type=float,
    default=2e-5)
parser.add_argument("--bs", dest="per_device_train_batch_size", default=4)
ds_config = {
    "train_micro_batch_size_per_gpu": batch_size // 16,
}
model = Qwen/Qwen2-7B
'''


def test_assignments_fields_flags_and_entries_are_read_with_their_lines_and_forms():
    stated = {(s.name, s.line): s for s in stated_values(SNIPPET)}
    assert stated["max_seq_length", 1].value == 32768 and stated["max_seq_length", 1].form == "assignment"
    assert stated["max_model_len", 2].value == 131072 and stated["tp_size", 2].value == 1
    assert stated["max_seq_len", 3].value == 392 and stated["max_seq_len", 3].form == "field"
    assert stated["num_train_epochs", 4].value == 10          # dataclasses.field(default=...)
    assert stated["max_length", 5].value == 1024
    assert stated["batch_size", 7].value == 64 and stated["batch_size", 7].form == "argument"
    assert stated["learning_rate", 8].value == 2e-5            # a call over several lines, at the line it starts
    assert stated["per_device_train_batch_size", 12].value == 4   # dest= names the setting
    assert stated["train_micro_batch_size_per_gpu", 14].value == Reference("batch_size // 16")
    assert not any(s.name in ("steps", "model") for s in stated.values())   # a comparison; not Python at all
    names = named_values(stated_values(SNIPPET))
    assert resolve("batch_size // 16", names) == 4 and resolve("args.batch_size", names) == 64
    assert resolve("undefined_name", names) is UNSET and resolve("batch_size // 0", names) is UNSET


def test_a_keyword_given_by_name_takes_the_value_the_snippet_sets():
    text = ('max_seq_length = 1024*32\n'
            'model, tokenizer = FastLanguageModel.from_pretrained(\n'
            '    model_name = "unsloth/Meta-Llama-3.1-8B",\n'
            '    max_seq_length = max_seq_length, # Choose any for long context!\n'
            '    load_in_4bit = True,\n)\n')
    doc = load_config(text, "train.py")
    assert doc.settings["max_seq_length"] == 32768
    assert apply_config_to_setup(doc, TrainingSetup()).seq_len == 32768


def test_argparse_defaults_reach_the_training_arguments_that_name_them():
    text = ('parser.add_argument("--per_device_train_batch_size", type=int, default=4)\n'
            'args = parser.parse_args()\n'
            'training_args = TrainingArguments(output_dir="o", per_device_train_batch_size=args.per_device_train_batch_size,\n'
            '                                  gradient_accumulation_steps=args.grad_accum)\n')
    doc = load_config(text, "train.py")
    assert doc.settings["per_device_train_batch_size"] == 4
    # a variable the snippet never sets is unknown, not an impossible value: the run's default stands
    assert "gradient_accumulation_steps" not in doc.settings
    setup = apply_config_to_setup(doc, TrainingSetup())
    assert setup.micro_batch == 4 and setup.provenance["grad_accum"].origin == "default"


def test_a_numeric_setting_given_an_unknown_variable_is_not_impossible():
    doc = read_partial("max_seq_length = max_seq_length, # any\nper_device_train_batch_size = 2\n", "pasted_config.yaml")
    assert doc.settings == {"per_device_train_batch_size": 2}
    with pytest.raises(ImpossibleValue):   # a literal that no run can have is still the user's to fix
        read_partial("per_device_train_batch_size = -2\n", "pasted_config.yaml")


def test_dataclass_fields_and_argparse_defaults_read_where_no_format_reader_can():
    fields = ('per_device_train_batch_size: int = field(default=1, metadata={"help": "batch"})\n'
              'gradient_checkpointing: bool = field(default=False, metadata={"help": "ckpt"})\n'
              'max_length: Optional[int] = 1024\n')
    assert read_partial(fields, "pasted_config.yaml").settings == {
        "per_device_train_batch_size": 1, "gradient_checkpointing": False, "max_length": 1024}
    # YAML reads this line as {max_seq_len: "int = 384 + 8"}: the field's default is what it says
    assert read_partial("    max_seq_len: int = 384 + 8   # eos\n\n    x = PROJECT_ROOT + '/m'\n",
                        "pasted_config.yaml").settings["max_seq_len"] == 392
    flags = 'parser.add_argument("--batch_size", type=int, default=64, help="Batch size")\n'
    assert read_partial(flags, "pasted_config.yaml").settings == {"batch_size": 64}


def test_literal_lines_read_as_before():
    assert read_partial("cutoff_len: 1024 # tokens = words\n", "pasted_config.yaml").settings == {"cutoff_len": 1024}
    doc = read_partial("model = Qwen/Qwen2-7B\nbf16 = true\nlr = 2e-5\n", "pasted_run.sh")
    assert doc.settings == {"model": "Qwen/Qwen2-7B", "bf16": True, "learning_rate": 2e-5}


def test_lm_eval_auto_batch_and_shell_comments():
    assert read_partial("batch_size = 'auto:4'\n", "pasted_config.yaml").settings == {"batch_size": "auto:4"}
    doc = read_partial("bash finetune.sh --per_device_train_batch_size 4  # only --num_train_epochs changed\n",
                       "pasted_run.sh")
    assert doc.settings == {"per_device_train_batch_size": 4}


def test_cut_and_hostile_snippets_stay_bounded():
    """Calls cut by the paste, a line too deep to recurse into (a 990-term sum is a tree 990 levels deep), an absurd
    line: read or left unread, never a crash; a wide literal is read whatever its size."""
    deep = "1+" * 990 + "1"
    text = ("parser.add_argument(\n" * 2_000 + f"y = {deep}\nz: int = {deep}\n"
            f"parser.add_argument('--w', default={deep})\n" + "x = (" * 5_000 + "\nper_device_train_batch_size = 2\n")
    stated = stated_values(text)
    assert not any(s.name in ("y", "z", "w") for s in stated)   # too large to be a hand-written value
    assert named_values(stated)["per_device_train_batch_size"] == 2
    assert read_partial(text, "pasted_config.yaml").settings["per_device_train_batch_size"] == 2
    doc = load_config(f"TrainingArguments(per_device_train_batch_size={deep}, gradient_accumulation_steps=2)\n", "t.py")
    assert doc.settings == {"gradient_accumulation_steps": 2}
    # a wide literal is not a deep one: an inline DeepSpeed dict of any size still reads
    wide = "{" + ", ".join(f'"key_{i}": {i}' for i in range(500)) + ', "zero_optimization": {"stage": 3}}'
    doc = load_config(f"TrainingArguments(output_dir='o', deepspeed={wide})\n", "t.py")
    assert doc.settings["deepspeed"]["key_499"] == 499 and doc.settings["deepspeed"]["zero_optimization"]["stage"] == 3
