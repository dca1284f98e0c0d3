"""The follow-up intent/slot parser, English and Chinese."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from ask_oom.assistant.intents import parse_followup, parse_followups, parse_value, zh_number


def names(text: str) -> list[str]:
    return [i.name for i in parse_followups(text)]


@pytest.mark.parametrize("text, gpu, count, mem", [
    ("I have 4x A100 40GB", "A100-40GB", 4, None),
    ("我有4张A100 40G", "A100-40GB", 4, None),
    ("we run on 8 x H100 80GB", "H100-80GB", 8, None),
    ("A100 80G * 8", "A100-80GB", 8, None),
    ("8卡A800", "A800-80GB", 8, None),
    ("两张4090", "RTX-4090-24GB", 2, None),
    ("单卡3090", "RTX-3090-24GB", 1, None),
    ("I'm on a single 4090", "RTX-4090-24GB", 1, None),
    ("我们用的是V100 32G，共8张", "V100-32GB", 8, None),
    ("two L40S", "L40S-48GB", 2, None),
    ("we have 2 GPUs with 24GB", None, 2, 24.0),
    ("4张卡，每张24G", None, 4, 24.0),
    ("显存24G", None, None, 24.0),
    # a count and a size with no card name, "*" for "x" and the size glued to the word for the cards
    ("I used 8*80G GPUs", None, 8, 80.0),
    ("2*22G显卡", None, 2, 22.0),
])
def test_set_hardware(text, gpu, count, mem):
    intent = parse_followup(text)
    assert intent.name == "set_hardware"
    assert intent.slots.get("gpu") == gpu
    assert intent.slots.get("count") == count
    assert intent.slots.get("memory_gib") == mem


@pytest.mark.parametrize("text, keep", [
    ("I must keep full fine-tuning", ["full"]),
    ("必须全量微调", ["full"]),
    ("LoRA is not an option for us", ["full"]),
    ("不能用LoRA", ["full"]),
    ("cutoff_len不能改", ["seq"]),
    ("I can't reduce the sequence length", ["seq"]),
    ("序列长度必须保持", ["seq"]),
    ("batch size must stay 8", ["batch"]),
    ("batch不能改", ["batch"]),
    ("no deepspeed please", ["no-deepspeed"]),
    ("不能用DeepSpeed", ["no-deepspeed"]),
    ("full fine-tuning is required and I can't change the context length", ["full", "seq"]),
])
def test_keep_constraint(text, keep):
    got = [i for i in parse_followups(text) if i.name == "keep_constraint"]
    assert got and got[0].slots["keep"] == keep


def test_release_constraint():
    got = parse_followups("LoRA is fine actually")
    assert [i.name for i in got] == ["release_constraint"]
    assert got[0].slots["release"] == ["full"]


@pytest.mark.parametrize("text, key, field, value", [
    ("what if cutoff_len is 8192?", "cutoff_len", "seq_len", 8192),
    ("cutoff_len改成8192会怎样", "cutoff_len", "seq_len", 8192),
    ("what if I set batch size to 2", "per_device_train_batch_size", "micro_batch", 2),
    ("如果batch size设为2呢", "per_device_train_batch_size", "micro_batch", 2),
    ("what about seq len 4k", "cutoff_len", "seq_len", 4096),
    ("try gradient_checkpointing=true", "gradient_checkpointing", "gradient_checkpointing", True),
    ("梯度检查点设为开启会怎样", "gradient_checkpointing", "gradient_checkpointing", True),
    ("what if zero stage 3?", "zero_stage", "zero_stage", 3),
    ("what if max_seq_length=2048", "max_seq_length", "seq_len", 2048),
    ("cutoff_len 8192 would fit?", "cutoff_len", "seq_len", 8192),
    ("set lora_target=all", "lora_target", None, "all"),
])
def test_what_if(text, key, field, value):
    intent = parse_followup(text)
    assert intent.name == "what_if", parse_followups(text)
    assert intent.slots == {"key": key, "field": field, "value": value}


@pytest.mark.parametrize("text, method", [
    ("use QLoRA instead", "qlora"), ("用QLoRA", "qlora"), ("改用LoRA", "lora"), ("switch to lora", "lora"),
    ("let's try 4-bit", "qlora"), ("换成全量微调", "full"),
])
def test_switch_method(text, method):
    intent = parse_followup(text)
    assert intent.name == "switch_method" and intent.slots["method"] == method


@pytest.mark.parametrize("text, name", [
    ("why?", "explain"), ("为什么", "explain"), ("为啥会OOM", "explain"), ("explain please", "explain"),
    ("show the diff again", "show_diff"), ("再给我看一下diff", "show_diff"), ("what did you change?", "show_diff"),
    ("改了什么", "show_diff"),
    ("show me the fixed config", "show_config"), ("给我完整配置", "show_config"), ("修改后的yaml发我", "show_config"),
    ("it worked", "mark_solved"), ("解决了", "mark_solved"), ("thanks, that fixed it!", "mark_solved"),
    ("跑通了，谢谢", "mark_solved"), ("training runs now, no more OOM", "mark_solved"),
    ("still OOM", "mark_unsolved"), ("还是OOM", "mark_unsolved"), ("it didn't work", "mark_unsolved"),
    ("仍然显存不足", "mark_unsolved"), ("not solved", "mark_unsolved"), ("same error", "mark_unsolved"),
    ("reset", "reset"), ("start over", "reset"), ("重新开始", "reset"),
    ("help", "help"), ("你能做什么", "help"), ("what can you do?", "help"),
    ("hello there", "unknown"), ("", "unknown"), ("it worked?", "unknown"),
])
def test_single_intents(text, name):
    assert parse_followup(text).name == name


def test_several_intents_in_one_message():
    got = parse_followups("I have 4x A100 40GB and must keep full fine-tuning")
    assert {i.name for i in got} == {"set_hardware", "keep_constraint"}
    assert next(i for i in got if i.name == "set_hardware").slots["count"] == 4


def test_negated_or_hypothetical_words_do_not_flip_intents():
    assert "mark_solved" not in names("show me the fixed config")      # "fixed" is not "it's fixed"
    assert "mark_unsolved" not in names("还是用LoRA吧")                   # 还是 = "rather", not "still"
    assert "keep_constraint" not in names("what if cutoff_len is 8192?")
    assert "switch_method" not in names("I must keep full fine-tuning")
    assert names("what if I use 8 A100s?") == ["set_hardware"]


def test_explain_keeps_the_topic():
    assert parse_followup("Why is the vision tower so big?").slots["topic"] == "the vision tower so big"


@pytest.mark.parametrize("raw, value", [
    ("8192", 8192), ("8k", 8192), ("4K", 4096), ("1e-4", 1e-4), ("0.5", 0.5), ("true", True), ("off", False),
    ("开启", True), ("关闭", False), ("zero3", 3), ("ZeRO-2", 2), ("4bit", 4), ("四", 4), ("all", "all"),
])
def test_parse_value(raw, value):
    assert parse_value(raw) == value


def test_zh_numbers():
    assert [zh_number(t) for t in ["一", "两", "十", "十六", "二十", "三十二", "abc"]] == [1, 2, 10, 16, 20, 32, None]


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_never_raises_on_any_text(text):
    got = parse_followups(text)
    assert got and all(i.name for i in got)


def test_long_text_is_bounded():
    assert parse_followups("why " * 100_000)[0].name == "explain"


@pytest.mark.parametrize("text", ["undo", "drop the what-ifs", "back to my original config", "撤销", "恢复原配置"])
def test_undo(text):
    assert parse_followup(text).name == "undo"


@pytest.mark.parametrize("text", ["what if cutoff_len is 4096 and batch size 2?", "cutoff_len改成4096，batch size改成2会怎样"])
def test_several_what_ifs_in_one_message(text):
    got = parse_followups(text)
    assert [(i.name, i.slots["field"], i.slots["value"]) for i in got] == [
        ("what_if", "seq_len", 4096), ("what_if", "micro_batch", 2)]


@pytest.mark.parametrize("text", ["we have 256GB memory of host RAM", "the server has 512G内存"])
def test_host_ram_is_not_gpu_memory(text):
    assert all(i.slots.get("memory_gib") is None for i in parse_followups(text))
