"""The fixes the user's words say worked name the cause (tools/fixes_said.py); fixes only tried, suggested or asked
about say nothing."""

from __future__ import annotations

import pytest

from ask_oom.tools.fixes_said import FIX_KNOBS, fixes_said
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
