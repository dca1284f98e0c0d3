"""The fixes the user's words say worked name the cause (tools/fixes_said.py); fixes only tried, suggested or asked
about say nothing."""

from __future__ import annotations

import pytest

from ask_oom.tools.fixes_said import FIX_KNOBS, fixes_said, triggers_said
from ask_oom.tools.labels import Label
from ask_oom.tools.log_cues import log_cues
from ask_oom.tools.log_parser import parse_log
from ask_oom.tools.root_causes import rank_root_causes
from ask_oom.tools.training_setup import TrainingSetup


@pytest.mark.parametrize("text, label", [
    ("I resolved this problem by reducing num_beams", Label.generation_kv_cache),
    ("solved after i enable gradient checkpointing.", Label.no_gradient_checkpointing),
    ("把 `--deepspeed zero2` 改成 `--deepspeed zero3` 后问题解决了。", Label.zero_stage_insufficient),
    ("添加了batch_size设置可以了", Label.batch_too_large),
    ("After switching to the int4 quantized version it works;", Label.weights_exceed_gpu),
    ("it got solved when I installed flash attention", Label.eager_attention),
    ("Had to allocate 70Gb of swap to make it work.", Label.offload_host_ram),
    ("When I set PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True the code runs fine", Label.fragmentation),
    # said in the present tense, and a framework's own batch setting
    ("Reducing train_batch_per_replica to 4 resolves the error.", Label.batch_too_large),
    ("TLDR: Reducing seq_len solves it.", Label.seq_len_too_long),
    # said to seem to work
    ("when i use 38400 batch size i got OOM right now i am using half of it 19200 seems working", Label.batch_too_large),
])
def test_a_fix_that_worked_names_its_cause(text, label):
    assert [f.label for f in fixes_said(text)] == [label]


@pytest.mark.parametrize("text", [
    "try reducing the batch size, it should work",            # a suggestion
    "reducing the batch size did not help, still OOM",        # a fix that failed
    "显存不够，调小batch_size也没有解决",                         # ... in Chinese
    "how can I fix it? I use gradient checkpointing already",  # a question
    "请问怎么解决，batch_size已经是1了",                          # "how to fix it", not a fix
    'solved by setting CUDA_VISIBLE_DEVICES="" so it merges in system RAM',   # the CPU, not another process
    "would lowering train_micro_batch_size_per_gpu resolve it?",              # a question in the present tense
    "I tried reducing the batch size, it seems working? not sure",            # unsure, and asked
])
def test_a_fix_only_tried_suggested_or_asked_about_says_nothing(text):
    assert fixes_said(text) == []


def test_every_knob_names_a_label_and_the_ranking_weighs_the_fix():
    assert all(isinstance(label, Label) for label in FIX_KNOBS)
    text = ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 MiB.\n"
            "I resolved this problem by reducing num_beams from 8 to 2.\n")
    causes = rank_root_causes(parse_log(text), TrainingSetup(), cues=log_cues(text))
    kv = next(c for c in causes if c.label == "generation_kv_cache")
    assert any("num_beams fixed it (line 2" in w for w in kv.why)


@pytest.mark.parametrize("text, label, value", [
    ("I'm experiencing `RuntimeError: CUDA error: out of memory` when I use a `batch_size` of 96-128.",
     Label.batch_too_large, 96),
    ("at seq_len=21000 my A800 reports OOM.", Label.seq_len_too_long, 21000),
    ("but if seq_len is set above 32k it OOMs;", Label.seq_len_too_long, 32768),
    ("我在A800环境下，长度在10000左右就会OOM", Label.seq_len_too_long, 10000),
    # inputs said to be long are the length, with no number
    ("fine-tuning always OOMs because the articles are too long", Label.seq_len_too_long, None),
    ("I get cuda out of memory errors whenever i try long audio in inference", Label.seq_len_too_long, None),
    ("采用官方推理代码，改成 num_beams=2 推理部分数据就会报错OOM", Label.generation_kv_cache, 2),
    ("[title] 怎么修改分辨率，视频推理的时候显存不足", Label.vision_tokens, None),
    # a count of tokens as the condition is the sequence length in plain numbers
    ("Qwen1.5-chat 72B int4 4卡(V100) 推理过程中token数到10k会报错OOM", Label.seq_len_too_long, 10240),
    ("OOM once the token count exceeds 8192", Label.seq_len_too_long, 8192),
    ("I get CUDA out of memory at 16384 input tokens", Label.seq_len_too_long, 16384),
])
def test_a_size_said_to_bring_the_error_on_names_its_cause(text, label, value):
    assert [(t.label, t.value) for t in triggers_said(text)] == [(label, value)]


@pytest.mark.parametrize("text", [
    "Even if I set the per_device_train_batch_size = 1, I still have an OOM problem",   # small, and it ran out anyway
    "尝试调小batch_size，但是过一轮数据都没问题，第二轮开始就报OOM。",                      # made smaller: a fix tried
    "with ZeRO-3 and gradient checkpointing it OOMs",                                   # mitigations, not sizes
    "the kv cache with max sequence length runs out of memory",                         # the cache's length
    "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB.",          # the error alone
    "My batch size is 64 and the sequence length 4096.",                                # sizes, no error
    "even with 512 tokens it still OOMs",                                               # small, and it ran out anyway
    "The model generated 300 tokens and then ran out of memory",                        # a count, not a condition
])
def test_a_size_named_without_bringing_the_error_on_says_nothing(text):
    assert [t.label for t in triggers_said(text) if t.label in (Label.batch_too_large, Label.seq_len_too_long)] == []


def test_the_ranking_weighs_a_trigger_unless_its_number_is_at_the_floor():
    def why(words: str) -> list[str]:
        text = "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 MiB.\n" + words + "\n"
        causes = rank_root_causes(parse_log(text), TrainingSetup(), cues=log_cues(text))
        return [w for c in causes if c.label == "seq_len_too_long" for w in c.why]

    assert any("the words say the error comes with seq_len at 21,000 (line 2" in w for w in why("at seq_len=21000 it OOMs."))
    # a length under long_cutoff_tokens is already short: no trigger
    assert not any("the words say the error comes" in w for w in why("CUDA OOM when finetuning with seq_length 64."))


def test_a_fix_said_below_a_long_log_is_read_with_its_line():
    progress = "".join(f"{{'loss': {i % 7 / 3:.4f}, 'epoch': {i / 1000:.2f}}}\n" for i in range(5000))
    found = fixes_said("Training dies after a while.\n" + progress
                       + "It works after I set per_device_train_batch_size to 1.\n")
    assert [(f.label, f.line) for f in found] == [(Label.batch_too_large, 5002)]
