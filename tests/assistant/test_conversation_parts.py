"""Classifying what a chat message carries: a log, a training config, a model config.json, or chat."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ask_oom.assistant.message_parts import (
    classify_file, classify_text, config_name_for, referenced_deepspeed, split_message,
)

SEEDS = Path(__file__).resolve().parents[1] / "fixtures" / "seeds"


@pytest.mark.parametrize("seed", sorted(p.name for p in SEEDS.iterdir() if p.is_dir()))
def test_seed_logs_and_configs(seed):
    d = SEEDS / seed
    assert classify_text((d / "train.log").read_text()) == "log"
    for cfg in d.iterdir():
        if cfg.suffix in (".yaml", ".sh", ".json") and cfg.name != "expected.json":
            assert classify_file(cfg.name, cfg.read_text()) == "config", cfg.name
            if cfg.suffix != ".json":   # pasted without a name, the content alone decides
                assert classify_text(cfg.read_text()) == "config", cfg.name


@pytest.mark.parametrize("text", ["why?", "I have 4x A100 40GB", "what if cutoff_len is 8192?", "还是OOM", "use QLoRA instead"])
def test_chat_is_chat(text):
    assert classify_text(text) == "chat"


def test_model_config_json():
    cfg = {"architectures": ["LlamaForCausalLM"], "hidden_size": 4096, "num_hidden_layers": 32,
           "num_attention_heads": 32, "vocab_size": 32000, "model_type": "llama"}
    assert classify_text(json.dumps(cfg, indent=2)) == "model_config"


def test_split_message_with_prose_and_fenced_blocks():
    log = (SEEDS / "kimi-vl-a3b" / "train.log").read_text()
    cfg = (SEEDS / "kimi-vl-a3b" / "train.yaml").read_text()
    parts = split_message(f"I have 8x H20 96GB, here is the log:\n```\n{log}```\nand my config:\n```yaml\n{cfg}```\nwhy?")
    kinds = [p.kind for p in parts]
    assert kinds == ["log", "config", "chat"]
    assert "8x H20" in parts[-1].text and "why?" in parts[-1].text


def test_split_message_files_and_bare_log():
    log = (SEEDS / "deepke-llama2-13b" / "train.log").read_text()
    parts = split_message(log, files={"run.sh": (SEEDS / "deepke-llama2-13b" / "run.sh").read_text(), "notes.txt": "just text"})
    assert [(p.kind, p.name) for p in parts] == [("log", None), ("config", "run.sh"), ("log", "notes.txt")]


def test_pasted_config_names_and_deepspeed_reference():
    assert config_name_for("model_name_or_path: x\ncutoff_len: 1024\n") == "pasted_config.yaml"
    assert config_name_for('{"zero_optimization": {"stage": 3}}') == "pasted_deepspeed.json"
    assert config_name_for("torchrun --nproc_per_node 8 train.py --per_device_train_batch_size 4") == "pasted_run.sh"
    assert referenced_deepspeed("deepspeed: examples/deepspeed/ds_z3_config.json\n") == "examples/deepspeed/ds_z3_config.json"
    assert referenced_deepspeed("deepspeed train.py --deepspeed ./scripts/zero2.json --bf16") == "./scripts/zero2.json"
