"""Follow-up reading mechanisms (hardware with nodes and sizes, negations, questions, keep words, what-if vocabulary,
still-OOM / solved reports with settings). Phrasings are our own, not the evaluation set's."""

from __future__ import annotations

import pytest

from ask_oom.assistant.intent_host_ram import host_ram_gib
from ask_oom.assistant.intents import parse_followups
from ask_oom.assistant.intent_what_if import public_key
from ask_oom.assistant.session import SessionState
from ask_oom.assistant.state_updates import apply_intent
from ask_oom.tools.gpus import gpu_family, lookup_gpu, sized_variant


def hw(text: str) -> dict:
    found = [i for i in parse_followups(text) if i.name == "set_hardware"]
    return {k: v for k, v in found[0].slots.items() if k in ("gpu", "count", "memory_gib", "nodes")} if found else {}


def what_ifs(text: str) -> dict:
    out = {}
    for i in parse_followups(text):
        if i.name == "what_if":
            out[public_key(i.slots["key"])] = i.slots["value"]
        elif i.name == "switch_method":
            out["method"] = i.slots["method"]
    return out


def names(text: str) -> list[str]:
    return [i.name for i in parse_followups(text)]


# -- GPU catalogue ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, canonical, gib", [
    ("A800", "A800-80GB", 80), ("H800", "H800-80GB", 80), ("H20", "H20-96GB", 96), ("L20", "L20-48GB", 48),
    ("A40", "A40-48GB", 48), ("A10", "A10-24GB", 24), ("RTX 4090D", "RTX-4090D-24GB", 24), ("L40", "L40-48GB", 48),
])
def test_catalogue_knows_real_cards_with_their_memory(name, canonical, gib):
    spec = lookup_gpu(name)
    assert spec.name == canonical
    assert abs(spec.memory_bytes / 2**30 - gib) < 0.1 * gib


def test_sized_variants_and_families():
    assert sized_variant("A100-40GB", 80).name == "A100-80GB"
    assert sized_variant("V100", 32).name == "V100-32GB"
    assert sized_variant("RTX-4090-24GB", 48) is None
    assert gpu_family("A100-80GB") == gpu_family("A100-40GB") == "A100"


# -- hardware: sizes next to names, counts, nodes -----------------------------------------------------


@pytest.mark.parametrize("text, want", [
    ("40G A100 x 2", {"gpu": "A100-40GB", "count": 2}),
    ("two A100, 80GB each", {"gpu": "A100-80GB", "count": 2}),
    ("A100-80GB × 2", {"gpu": "A100-80GB", "count": 2}),
    ("16G V100 four of them", {"gpu": "V100-16GB", "count": 4}),
    ("our V100 x 4 are the 32G model", {"gpu": "V100-32GB", "count": 4}),
    ("两张32G的V100", {"gpu": "V100-32GB", "count": 2}),
    ("单块A100 80G", {"gpu": "A100-80GB", "count": 1}),
    ("renting a single L20", {"gpu": "L20-48GB", "count": 1}),
    ("an octa box of 4090D, 8 cards", {"gpu": "RTX-4090D-24GB", "count": 8}),
    ("a dual-RTX 3090 workstation", {"gpu": "RTX-3090-24GB", "count": 2}),
    ("4*h-800", {"gpu": "H800-80GB", "count": 4}),
])
def test_size_next_to_a_name_picks_the_variant(text, want):
    assert hw(text) == want


@pytest.mark.parametrize("text, want", [
    ("4 nodes x 8 H800", {"gpu": "H800-80GB", "count": 8, "nodes": 4}),
    ("3 machines with 4 A40 each", {"gpu": "A40-48GB", "count": 4, "nodes": 3}),
    ("32 A800s across 4 nodes", {"gpu": "A800-80GB", "count": 8, "nodes": 4}),
    ("三台服务器，每台4张卡", {"count": 4, "nodes": 3}),
    ("4机32卡", {"count": 8, "nodes": 4}),
    ("4台8卡H20", {"gpu": "H20-96GB", "count": 8, "nodes": 4}),
    ("just a single node with 2 GPUs", {"count": 2, "nodes": 1}),
    ("单节点4卡", {"count": 4, "nodes": 1}),
    ("24 V100 with 16GB each over 3 nodes", {"gpu": "V100-16GB", "count": 8, "nodes": 3}),
])
def test_nodes_and_gpus_per_node(text, want):
    assert hw(text) == want


@pytest.mark.parametrize("text, want", [
    ("it's an H800, not an H100", {"gpu": "H800-80GB"}),
    ("卡不是A100，而是A800", {"gpu": "A800-80GB"}),
    ("those are 80G cards, not 40G", {"memory_gib": 80.0}),
    ("there's no H100 in our lab", {}),
    ("4 identical gpus, 48GB each", {"count": 4, "memory_gib": 48.0}),
    ("every card has 16gig of vram", {"memory_gib": 16.0}),
    ("two cards with 12GB, there are 2 of them", {"count": 2, "memory_gib": 12.0}),
])
def test_negated_names_and_sizes_are_not_the_users(text, want):
    assert hw(text) == want


def test_counts_in_why_and_concept_questions_set_nothing():
    assert names("why is 4 gpus worse than 2 gpus here?") == ["explain"]
    assert names("为什么4卡比2卡还多用显存") == ["explain"]
    assert "what_if" not in names("what does zero 2 mean?")
    assert "what_if" not in names("stage3一般比stage2慢吗")


# -- host RAM ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, gib", [
    ("the node has 2.0Ti of RAM and 1.5Ti is free", 2048.0),
    ("does offload need lots of host RAM? we have 256G", 256.0),
    ("系统内存只有128G", 128.0),
])
def test_host_ram(text, gib):
    assert host_ram_gib(text)[0] == gib


def test_gpu_ram_is_not_host_ram():
    assert host_ram_gib("4 cards, each card has 48gig ram") is None
    assert hw("4 cards, each card has 48gig ram") == {"count": 4, "memory_gib": 48.0}


# -- keep --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, keep", [
    ("the overall batch size must stay at 256", ["effective_batch"]),
    ("全局batch size不能变", ["effective_batch"]),
    ("micro batch别改", ["batch"]),
    ("we can't switch to a smaller model", ["model"]),
    ("模型不能换", ["model"]),
    ("我们不能改deepspeed配置", ["no-deepspeed"]),
    ("DeepSpeed is not available on the cluster", ["no-deepspeed"]),
])
def test_keep_words(text, keep):
    got = [i for i in parse_followups(text) if i.name == "keep_constraint"]
    assert got and got[0].slots["keep"] == keep


def test_a_value_in_a_keep_statement_is_not_a_what_if():
    assert names("context length 8192 can't be reduced") == ["keep_constraint"]
    assert names("序列长度保持4k不变") == ["keep_constraint"]


# -- what-if vocabulary ------------------------------------------------------------------------------


@pytest.mark.parametrize("text, want", [
    ("what about z2?", {"zero_stage": 2}),
    ("如果从stage2换成stage3呢", {"zero_stage": 3}),
    ("what if stage 3 instead of stage 2", {"zero_stage": 3}),
    ("would ZeRO-3 with cpu offload fit?", {"zero_stage": 3, "offload": "all"}),
    ("try zero2 + offload", {"zero_stage": 2, "offload": "optimizer"}),
    ("what if I offload only the optimizer", {"offload": "optimizer"}),
    ("without offload would it fit?", {"offload": "none"}),
    ("use ds_z2_offload_config.json?", {"zero_stage": 2, "offload": "optimizer"}),
    ("what about max_length 1024?", {"cutoff_len": 1024}),
    ("how about 8k context?", {"cutoff_len": 8192}),
    ("ctx 32k would fit?", {"cutoff_len": 32768}),
    ("what if gas 4 and mbs 2", {"gradient_accumulation_steps": 4, "per_device_train_batch_size": 2}),
    ("batch_size from 16 down to 4?", {"per_device_train_batch_size": 4}),
    ("梯度累加改成8呢", {"gradient_accumulation_steps": 8}),
    ("rank从128降到32呢", {"lora_rank": 32}),
    ("int8 would help?", {"quantization_bit": 8}),
    ("try qlora then", {"method": "qlora"}),
    ("what if lora instead of full", {"method": "lora"}),
    ("lora_r改成16会怎样", {"lora_rank": 16}),
])
def test_what_if_vocabulary(text, want):
    assert what_ifs(text) == want


def test_public_keys_are_one_per_setting():
    assert public_key("max_seq_length") == public_key("ctx") == "cutoff_len"
    assert public_key("bs") == public_key("device_train_microbatch_size") == "per_device_train_batch_size"
    assert public_key("ga") == "gradient_accumulation_steps"


# -- still-OOM / solved reports ----------------------------------------------------------------------


@pytest.mark.parametrize("text, first, want", [
    ("ran with bs=2 and zero3, still ooms", "mark_unsolved", {"per_device_train_batch_size": 2, "zero_stage": 3}),
    ("开了梯度检查点，bs改成1也OOM", "mark_unsolved", {"gradient_checkpointing": True, "per_device_train_batch_size": 1}),
    ("after 100 steps it OOMs again", "mark_unsolved", {}),
    ("stage 2 with offload works fine now", "mark_solved", {"zero_stage": 2, "offload": "optimizer"}),
    ("finished successfully on zero3, thanks", "mark_solved", {"zero_stage": 3}),
])
def test_reports_with_settings(text, first, want):
    assert names(text)[0] == first
    assert what_ifs(text) == want


def test_questions_are_not_failures():
    assert "mark_unsolved" not in names("ga 4, bs 2 行不行")
    assert names("我没用deepspeed") != ["mark_unsolved"]


@pytest.mark.parametrize("text, name", [
    ("how did you compute the 52 GiB?", "explain"), ("这个峰值怎么算的", "explain"),
    ("can you verify it on a real gpu?", "run_probe"), ("来个probe测一下", "run_probe"),
    ("post the memory breakdown again", "show_report"), ("明细再发一下", "show_report"),
])
def test_why_probe_show(text, name):
    assert names(text)[0] == name


# -- state updates -----------------------------------------------------------------------------------


def _apply(state: SessionState, text: str) -> SessionState:
    for intent in parse_followups(text):
        apply_intent(state, intent, default_margin=0.9)
    return state


def test_bare_name_keeps_the_known_variant_and_nodes_make_the_world():
    state = _apply(SessionState(), "2 nodes x 8 A100 80G")
    req = state.request
    assert (req.gpu, req.num_gpus) == ("A100-80GB", 8)
    assert [f.value for f in req.facts if f.field == "num_nodes"] == [2]
    assert [f.value for f in req.facts if f.field == "num_gpus"] == [16]
    _apply(state, "actually A100 x 4")
    assert (req.gpu, req.num_gpus) == ("A100-80GB", 4)
    assert [f.value for f in req.facts if f.field == "num_gpus"] == [8]
    _apply(state, "不是A100，是A800")
    assert req.gpu == "A800-80GB"


def test_what_ifs_are_recorded_under_public_keys():
    state = _apply(SessionState(), "what if max_seq_length=2048?")
    _apply(state, "and ctx 1k?")
    assert state.overrides == {"cutoff_len": 1024}
