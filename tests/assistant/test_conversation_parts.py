"""Classifying what a chat message carries: a log, a training config, a model config.json, or chat."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ask_oom.assistant.message_parts import (
    classify_file, classify_text, config_name_for, referenced_deepspeed, split_message, unescape_slack,
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
    assert config_name_for("swift export --merge_lora true --ckpt_dir out/x") == "pasted_run.sh"   # a subcommand
    assert config_name_for('args = dict(\n  stage="sft",\n  cutoff_len=8192,\n)') == "pasted_config.py"
    assert config_name_for("from transformers import TrainingArguments\n") == "pasted_config.py"
    assert referenced_deepspeed("deepspeed: examples/deepspeed/ds_z3_config.json\n") == "examples/deepspeed/ds_z3_config.json"
    assert referenced_deepspeed("deepspeed train.py --deepspeed ./scripts/zero2.json --bf16") == "./scripts/zero2.json"


# -- issue 18: any mix of log, config and words, in any order, fenced or not ----------------------------------------
def _seed(seed: str) -> tuple[str, str]:
    d = SEEDS / seed
    exp = json.loads((d / "expected.json").read_text(encoding="utf-8"))
    return (d / exp["log"]).read_text(encoding="utf-8"), (d / exp["config"]).read_text(encoding="utf-8")


@pytest.mark.parametrize("seed", sorted(p.name for p in SEEDS.iterdir() if p.is_dir()))
@pytest.mark.parametrize("fence", ["```", "```yaml", "```bash"])
def test_a_log_above_a_fenced_config_is_the_log(seed, fence):
    """The log pasted unfenced above a fenced config used to be chat ("No memory error found")."""
    log, cfg = _seed(seed)
    parts = split_message(f"{log}\n{fence}\n{cfg}```\nwhy does it run out of memory?")
    assert [p.kind for p in parts] == ["log", "config", "chat"]
    assert parts[0].text.strip() == log.strip() and parts[1].text == cfg and parts[2].text == "why does it run out of memory?"


@pytest.mark.parametrize("seed", ["kimi-vl-a3b", "qwen2.5-32b", "deepke-llama2-13b"])
def test_an_unfenced_config_beside_a_log_is_cut_out_in_either_order(seed):
    log, cfg = _seed(seed)
    for message in (f"I get this error:\n{log}\n\nmy config:\n{cfg}", f"{cfg}\n\n{log}"):
        parts = split_message(message)
        kinds = sorted(p.kind for p in parts)
        assert kinds.count("config") == 1 and kinds.count("log") == 1, kinds
        (config,) = [p.text for p in parts if p.kind == "config"]
        (got,) = [p.text for p in parts if p.kind == "log"]
        assert config.strip() in cfg.strip() and len(config) > 0.6 * len(cfg.strip())
        assert log.strip().splitlines()[-1] in got


def test_a_config_is_found_at_either_end_of_a_long_log_and_not_looked_for_in_its_middle():
    """A user pastes a config above or below the log, never inside its middle megabytes of progress: blocks open in
    the text's scan window (log_parser.lines.scan_window), so a 2 MiB log is read for them at its two ends only."""
    from ask_oom.tools.log_parser.lines import SCAN_HEAD

    log, cfg = _seed("qwen2.5-32b")
    progress = "".join(f"{{'loss': {1.5 - i / 1e5:.5f}, 'epoch': {i / 1000:.2f}}}\n" for i in range(2 * SCAN_HEAD // 30))
    for message in (f"{cfg}\n\n{progress}{log}", f"{progress}{log}\n\nmy config:\n{cfg}"):
        parts = split_message(message)
        assert sorted(p.kind for p in parts if p.kind != "chat") == ["config", "log"]
    middle = split_message(f"{progress}{cfg}\n\n{progress}{log}")
    assert [p.kind for p in middle if p.kind != "chat"] == ["log"]


@pytest.mark.parametrize("log", sorted((SEEDS.parent / "logs").glob("*.log")) + sorted(SEEDS.glob("*/train.log")),
                         ids=lambda p: p.parent.name + "/" + p.stem)
def test_blocks_printed_inside_a_log_stay_in_the_log(log):
    """Argument dumps, a launcher's echoed command, an axolotl config printed between log lines: part of the log."""
    parts = split_message(log.read_text(encoding="utf-8", errors="replace"))
    if "code_fences" in log.name:   # a GitHub issue with a fenced YAML and a fenced log: both are read
        assert [p.kind for p in parts] == ["config", "log", "chat"]
    else:
        assert [p.kind for p in parts if p.kind != "chat"] in (["log"], [])


def test_a_llamafactory_yaml_with_a_deepspeed_key_is_a_yaml_not_a_script():
    _, cfg = _seed("kimi-vl-a3b")
    assert "deepspeed:" in cfg and config_name_for(cfg) == "pasted_config.yaml"
    assert config_name_for("model_name_or_path: x\nstage: sft\ndeepspeed: examples/deepspeed/ds_z3_config.json\n") == \
        "pasted_config.yaml"
    assert config_name_for("CUDA_VISIBLE_DEVICES=0,1 deepspeed --num_gpus 2 train.py --deepspeed ds.json") == "pasted_run.sh"
    assert config_name_for("nohup deepspeed train.py --bf16 > log.txt &") == "pasted_run.sh"


@pytest.mark.parametrize("text", [
    "- 模型：Qwen2.5-7B-Instruct\n- batch size：1\n- 学习率: 1e-4\n- 梯度累积: 8\n- 序列长度: 4096",
    "* model: meta-llama/Llama-3.1-8B\n* micro batch size: 2\n* gradient accumulation: 16\n* seq len: 8192",
    "per_device_train_batch_size=8\ngradient_accumulation_steps=2\nlearning_rate=2e-5\nmodel_max_length=2048",
])
def test_lists_of_settings_are_configs(text):
    assert classify_text(text) == "config"
    parts = split_message(f"训练时显存溢出 CUDA out of memory, 配置如下:\n\n{text}")
    assert "config" in [p.kind for p in parts]


def test_slack_escaping_is_undone_once():
    assert unescape_slack("cd /w &amp;&amp; deepspeed train.py &gt; out.log 2&gt;&amp;1") == \
        "cd /w && deepspeed train.py > out.log 2>&1"
    assert unescape_slack("a literal &amp;lt; stays") == "a literal &lt; stays"
    assert unescape_slack("see <https://huggingface.co/Qwen/Qwen2-7B|Qwen/Qwen2-7B> and <https://x.org>") == \
        "see Qwen/Qwen2-7B and https://x.org"


@pytest.mark.parametrize("seed", ["deepke-llama2-13b", "kimi-vl-a3b", "qwen2.5-32b"])
def test_a_paste_of_log_and_configs_diagnoses_like_the_files(seed, tmp_path):
    """One message with the log and its configs (the DeepSpeed JSON too) gives the diagnosis the same files attached
    give: what the web UI and the Slack bot both hand to the conversation."""
    from ask_oom.assistant.conversation import Conversation
    from ask_oom.assistant.session import SessionStore
    from ask_oom.assistant.settings import Settings

    d = SEEDS / seed
    exp = json.loads((d / "expected.json").read_text(encoding="utf-8"))
    log = (d / exp["log"]).read_text(encoding="utf-8")
    configs = {name: (d / name).read_text(encoding="utf-8") for name in [exp["config"], *exp.get("extra_configs", [])]}
    conv = Conversation(SessionStore(tmp_path / "s.db"), Settings(llm_base_url=None))
    as_files = conv.handle("files", "", files={**configs, "train.log": log}).diagnosis
    paste = log + "".join(f"\n```{'json' if n.endswith('.json') else ''}\n{t}```\n" for n, t in configs.items())
    as_paste = conv.handle("paste", paste).diagnosis
    assert as_files is not None and as_paste is not None
    assert as_paste.primary_cause == as_files.primary_cause and as_paste.fixed_config == as_files.fixed_config
    assert [(c.key, c.to_value) for c in as_paste.fixes] == [(c.key, c.to_value) for c in as_files.fixes]
    assert as_paste.setup.zero_stage == as_files.setup.zero_stage


@pytest.mark.parametrize("text", ["deepspeed isn't installed on our cluster and I can't add it",
                                  "torchrun is not allowed here, only plain python"])
def test_a_launcher_named_in_prose_is_chat_not_a_config(text):
    from ask_oom.assistant.message_parts import split_message

    assert [p.kind for p in split_message(text)] == ["chat"]


@pytest.mark.parametrize("text", ["deepspeed --num_gpus 8 train.py --bf16", "deepspeed train.py --deepspeed ds.json",
                                  "CUDA_VISIBLE_DEVICES=0,1 torchrun --nproc_per_node 2 train.py \\\n  --bf16 True"])
def test_a_launcher_command_is_still_a_config(text):
    from ask_oom.assistant.message_parts import split_message

    assert "config" in [p.kind for p in split_message(text)]


def test_a_python_argument_dict_above_a_log_is_the_config_with_its_closing_parenthesis():
    """LLaMA-Factory's Python entry (`args = dict(...)`), pasted above the log: the whole call is the config."""
    code = ('args = dict(\n  stage="sft",\n  model_name_or_path="llama3 8B",\n  finetuning_type="lora",\n'
            '  per_device_train_batch_size=2,\n  cutoff_len=8192,\n)\n')
    log = "[INFO|trainer.py:2081] 2024-06-01 16:22:16,125 >>   Instantaneous batch size per device = 2\n"
    parts = split_message(code + "\n" + log)
    config = next(p.text for p in parts if p.kind == "config")
    assert config.rstrip().endswith(")") and "cutoff_len=8192" in config
    assert all(p.text.strip() != ")" for p in parts if p.kind == "log")
