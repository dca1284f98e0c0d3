"""'run the live probe' in a conversation: refused clearly without a GPU; on a device (the CPU here, a tiny
model) it runs real training steps of the session's setup and keeps the measurement in the diagnosis."""

from __future__ import annotations

import json

import pytest

from ask_oom.assistant.conversation import Conversation
from ask_oom.assistant.session import SessionStore
from ask_oom.assistant.settings import Settings

TINY_LLAMA = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
              "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 512,
              "max_position_embeddings": 1024}
TINY_YAML = """model_name_or_path: /models/tiny-llama
stage: sft
do_train: true
finetuning_type: lora
lora_rank: 4
lora_target: all
dataset: alpaca_en_demo
template: llama3
cutoff_len: 32
per_device_train_batch_size: 2
gradient_accumulation_steps: 1
learning_rate: 1.0e-4
bf16: false
"""


def test_probe_without_a_device_says_how_to_run_it(tmp_path):
    conv = Conversation(SessionStore(tmp_path / "s.db"), Settings(llm_base_url=None), probe_device=None)
    conv.handle("s", "", files={"train.yaml": TINY_YAML, "config.json": json.dumps(TINY_LLAMA)})
    r = conv.handle("s", "run the live probe")
    assert r.intent == "run_probe" and "No CUDA device" in r.markdown and "ask-oom probe" in r.markdown
    assert r.diagnosis.probe is None


def test_probe_before_anything_asks_for_input(tmp_path):
    conv = Conversation(SessionStore(tmp_path / "s.db"), Settings(llm_base_url=None), probe_device="cpu")
    r = conv.handle("s", "run the live probe")
    assert r.intent == "run_probe" and "paste the error log" in r.markdown.lower()


@pytest.mark.slow
def test_cpu_probe_of_the_session_setup(tmp_path):
    pytest.importorskip("transformers")
    pytest.importorskip("peft")
    conv = Conversation(SessionStore(tmp_path / "s.db"), Settings(llm_base_url=None), probe_device="cpu")
    first = conv.handle("s", "", files={"train.yaml": TINY_YAML, "config.json": json.dumps(TINY_LLAMA)})
    assert first.diagnosis is not None and first.diagnosis.setup.model is not None
    r = conv.handle("s", "run the live probe")
    assert r.intent == "run_probe", r.markdown
    probe = conv.store.get("s").state.diagnosis.probe
    assert probe is not None and probe["error"] is None, r.markdown
    trial = probe["trials"][0]
    assert (trial["micro_batch"], trial["seq_len"], trial["result"]) == (2, 32, "ok")
    assert 0 < probe["n_trainable"] < probe["n_params"]          # LoRA from the config: only adapters train
    assert "Live probe" in r.markdown and "micro-batch 2, seq len 32: ran" in r.markdown
