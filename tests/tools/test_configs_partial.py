"""Configs no format reader accepts (issue 18): a JSON or YAML cut short, a Markdown list of settings, key=value text, a
Python argument list. Every key that can be read is read, the note says what could not be; with an OOM in the log such
a config never ends the answer, without one it is still the one-line error (exit 2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ask_oom.assistant.agent import diagnose
from ask_oom.assistant.diagnosis import DiagnoseRequest
from ask_oom.tools.configs import load_config
from ask_oom.tools.configs.partial import read_partial
from ask_oom.tools.configs.validation import ImpossibleValue
from ask_oom.tools.errors import InputError

SEEDS = Path(__file__).resolve().parents[1] / "fixtures" / "seeds"
LOG = (SEEDS / "qwen2.5-32b" / "train.log").read_text(encoding="utf-8")

TRUNCATED_JSON = ('{\n  "model_name_or_path": "Qwen/Qwen2.5-7B-Instruct",\n  "per_device_train_batch_size": 4,\n'
                  '  "gradient_accumulation_steps": 2,\n  "max_seq_length": 4096,\n'
                  '  "deepspeed": {"zero_optimization": {"stage": 3, "offload_param": {"device": "cp')
TRUNCATED_YAML = ("model_name_or_path: Qwen/Qwen2.5-7B-Instruct\nstage: sft\nfinetuning_type: lora\ncutoff_len: 4096\n"
                  "per_device_train_batch_size: 2\ngradient_accumulation_steps: 8\ntemplate: \"qwe")
MARKDOWN_ZH = ("我的配置：\n- 模型：Qwen2.5-7B-Instruct\n- batch size：1\n- 学习率: 1e-4\n- 梯度累积: 8\n- 序列长度: 4k\n"
               "- 微调方式：lora\n显卡是 8 张 A100")
KEY_VALUE = "per_device_train_batch_size=8\ngradient_accumulation_steps=2,\nlearning_rate=2e-5\nmodel_max_length=2048"
ARG_LIST = ("['/usr/bin/python3', '-u', 'train.py', '--local_rank=0', '--per_device_train_batch_size', '8', "
            "'--model_max_length', '2048', '--bf16', '--deepspeed', 'examples/deepspeed/ds_z3_config.json']")


@pytest.mark.parametrize("text, name, expected, unread", [
    (TRUNCATED_JSON, "args.json", {"per_device_train_batch_size": 4, "gradient_accumulation_steps": 2,
                                   "max_seq_length": 4096}, "line 6"),
    (TRUNCATED_YAML, "train.yaml", {"cutoff_len": 4096, "per_device_train_batch_size": 2, "finetuning_type": "lora"},
     "line 7"),
    (MARKDOWN_ZH, "config.md", {"model_name_or_path": "Qwen2.5-7B-Instruct", "batch_size": 1, "learning_rate": 1e-4,
                                "gradient_accumulation_steps": 8, "max_seq_length": 4096, "finetuning_type": "lora"},
     "lines 1, 8"),
    (KEY_VALUE, "args.txt", {"per_device_train_batch_size": 8, "gradient_accumulation_steps": 2, "learning_rate": 2e-5,
                             "model_max_length": 2048}, None),
    (ARG_LIST, "cmd.txt", {"per_device_train_batch_size": 8, "model_max_length": 2048, "bf16": True}, None),
])
def test_every_readable_key_is_read_and_the_rest_is_said(text, name, expected, unread):
    with pytest.raises(InputError):
        load_config(text, name)   # no format reader takes it whole
    doc = read_partial(text, name)
    assert doc.format == "partial" and not doc.deepspeed_text
    assert {k: doc.settings[k] for k in expected} == expected
    assert "is not a complete config" in doc.notes[0] and "not written into it" in doc.notes[0]
    if unread:
        assert f"could not read {unread}" in doc.notes[0]


def test_a_nested_deepspeed_setting_cut_short_keeps_what_was_complete():
    doc = read_partial(TRUNCATED_JSON, "args.json")
    assert doc.deepspeed == {"zero_optimization": {"stage": 3}} and doc.deepspeed_inline


def test_an_impossible_value_in_a_partial_config_is_still_an_error_with_its_line():
    with pytest.raises(ImpossibleValue, match=r"config\.md line 3: batch size = -1 is impossible: negative"):
        read_partial("- model: x\n- lr: 1e-4\n- batch size: -1\n", "config.md")


def test_nothing_readable_is_an_input_error():
    with pytest.raises(InputError, match="no setting could be read"):
        read_partial("::::\n[[[\n", "x.yaml")


@pytest.mark.parametrize("text, name", [(TRUNCATED_JSON, "args.json"), (MARKDOWN_ZH, "pasted_config.yaml"),
                                        (TRUNCATED_YAML, "train.yaml")])
def test_with_an_oom_in_the_log_an_unreadable_config_never_ends_the_answer(text, name):
    d = diagnose(DiagnoseRequest(log_text=LOG, config_text=text, config_name=name, retrieve=False))
    assert d.status == "diagnosed" and d.report.is_memory_error and d.config.format == "partial"
    assert any("is not a complete config" in n for n in d.notes)
    assert d.fixed_config is None   # a partial read is never rewritten
    assert d.setup.provenance["micro_batch"].origin == "config"


def test_with_an_oom_and_nothing_readable_it_diagnoses_from_the_log_and_asks_for_the_config():
    d = diagnose(DiagnoseRequest(log_text=LOG, config_text="::::\n[[[\n", config_name="x.yaml", retrieve=False))
    assert d.status == "diagnosed" and d.report.is_memory_error
    assert any("could not be read" in n and "diagnosed from the log alone" in n for n in d.notes)
    assert "config" in [q.slot for q in d.questions]


def test_without_an_oom_an_unreadable_config_is_still_the_error():
    with pytest.raises(InputError, match="not valid JSON"):
        diagnose(DiagnoseRequest(config_text=TRUNCATED_JSON, config_name="args.json", retrieve=False))
    with pytest.raises(InputError):
        diagnose(DiagnoseRequest(log_text="all good, training finished", config_text=MARKDOWN_ZH,
                                 config_name="pasted_config.yaml", retrieve=False))


def test_an_impossible_value_ends_the_answer_even_with_an_oom():
    with pytest.raises(ImpossibleValue, match="cutoff_len = -2048"):
        diagnose(DiagnoseRequest(log_text=LOG, config_text="stage: sft\ncutoff_len: -2048\n", config_name="t.yaml",
                                 retrieve=False))


@pytest.mark.parametrize("text", ["a: !!python/object/apply:os.system ['true']\ncutoff_len: 1024\n",
                                  "a: &x0 [1]\n" + "".join(f"b{i}: &x{i} [{', '.join([f'*x{i - 1}'] * 9)}]\n"   # an alias bomb
                                                            for i in range(1, 9))])
def test_a_config_refused_for_safety_is_never_read_in_part(text):
    from ask_oom.tools.errors import UnsafeInput

    with pytest.raises(UnsafeInput):
        diagnose(DiagnoseRequest(log_text=LOG, config_text=text, config_name="train.yaml", retrieve=False))


ONE_LINE_COMMAND = ("torchrun --nproc_per_node=2 --master_port=9999 train.py     --model_name_or_path ../llama-13b/     "
                    "--fp16 True     --per_device_train_batch_size 1     --fsdp \"full_shard auto_wrap\"     "
                    "--fsdp_transformer_layer_cls_to_wrap 'LlamaDecoderLa")
CUT_ARG_LIST = ("['/usr/bin/python3', '-u', 'fine-tune.py', '--local_rank=0', '--model_name_or_path', "
                "'/data/models/Baichuan2-7B-Base', '--model_max_length', '256', '--per_device_train_batch_size', '1', "
                "'--gradient_accumulation [...]\n")


def test_every_flag_of_a_command_on_one_line_is_read_even_when_the_paste_cuts_it():
    with pytest.raises(InputError):
        load_config(ONE_LINE_COMMAND, "pasted_run.sh")   # the shell reader stops at the cut quote
    doc = read_partial(ONE_LINE_COMMAND, "pasted_run.sh")
    assert {k: doc.settings[k] for k in ("model_name_or_path", "fp16", "per_device_train_batch_size", "fsdp")} == {
        "model_name_or_path": "../llama-13b/", "fp16": True, "per_device_train_batch_size": 1,
        "fsdp": "full_shard auto_wrap"}


def test_a_notebook_command_and_a_program_the_readers_do_not_know():
    doc = read_partial("!python finetune/adapter_v2.py --data_dir data/alpaca --checkpoint_dir "
                       "checkpoints/tiiuae/falcon-7b\n", "x.sh")
    assert doc.settings == {"data_dir": "data/alpaca", "checkpoint_dir": "checkpoints/tiiuae/falcon-7b"}
    doc = read_partial("CUDA_VISIBLE_DEVICES=1,0 swift infer --model_type qwen2-vl-7b-instruct   --model_id_or_path "
                       "/data1/gpt/model/qwen2-vl-7b-instruct\n", "x.sh")
    assert doc.settings == {"model_type": "qwen2-vl-7b-instruct", "model_id_or_path": "/data1/gpt/model/qwen2-vl-7b-instruct"}


def test_an_argument_list_whose_closing_bracket_was_cut_off():
    doc = read_partial(CUT_ARG_LIST, "cmd.txt")
    assert doc.settings["model_max_length"] == 256 and doc.settings["per_device_train_batch_size"] == 1
    assert doc.settings["model_name_or_path"] == "/data/models/Baichuan2-7B-Base"


def test_engine_arguments_inside_a_value_make_it_a_vllm_run():
    doc = read_partial('lm_eval --model vllm --model_args "pretrained=Qwen/Qwen2.5-72B-Instruct,tensor_parallel_size=8,'
                       'gpu_memory_utilization=0.8" --batch_size 1 --tasks leaderboard\n', "x.sh")
    assert doc.settings["tensor_parallel_size"] == 8 and doc.settings["gpu_memory_utilization"] == 0.8
    assert doc.settings["pretrained"] == "Qwen/Qwen2.5-72B-Instruct" and doc.framework == "vllm"
    assert read_partial("- batch size: 1\n- lr: 1e-4\n", "c.md").framework != "vllm"


def test_a_config_beside_words_that_describe_an_oom_is_read_in_part():
    words = "Loading Qwen2.5-7B with this command runs out of GPU memory on my 4090.\n"
    d = diagnose(DiagnoseRequest(log_text=words, config_text=ONE_LINE_COMMAND, config_name="pasted_run.sh", retrieve=False))
    assert d.config is not None and d.config.format == "partial"
    assert d.setup.provenance["micro_batch"].origin == "config"
    with pytest.raises(InputError):   # no memory error shown or described: still the one-line error
        diagnose(DiagnoseRequest(log_text="training finished fine", config_text=ONE_LINE_COMMAND,
                                 config_name="pasted_run.sh", retrieve=False))


@pytest.mark.parametrize("text", ['"\\0"', '{"a\\q": 1}', '{"lr": "2e-5\\x"}', '{"a": "x\\u12"}'])
def test_a_string_escape_json_does_not_know_is_a_one_line_input_error(text):
    """JSON knows \\n, \\t, \\uXXXX and a few more; "\\0" or "\\q" in a pasted config is the paste's error, said in one
    line with its place (found by the property test), not the decoder's traceback."""
    from ask_oom.tools.configs import load_config
    from ask_oom.tools.errors import InputError

    with pytest.raises(InputError) as exc:
        load_config(text, "c.json")
    assert "\n" not in str(exc.value) and "escape" in str(exc.value)
