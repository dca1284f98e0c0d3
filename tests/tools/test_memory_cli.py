"""`ask-oom estimate`: flags alone, a training config, DeepSpeed's estimator mode, and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ask_oom.tools.units import GiB


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ask_oom.ui.cli", "estimate", *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1"})


def test_flags_only_json():
    p = run_cli("--model", "qwen2.5-7b", "--method", "lora", "--lora-rank", "16", "--micro-batch", "1",
                "--seq-len", "16384", "--gradient-checkpointing", "--gpu", "H100", "--framework", "other", "--json")
    assert p.returncode == 0, p.stderr
    data = json.loads(p.stdout)
    for key in ("peak_bytes", "breakdown", "peak_phase", "host_bytes", "fits", "max_micro_batch", "max_seq_len"):
        assert key in data
    assert data["breakdown"]["logits_and_loss"] == 14 * 16384 * 152064
    assert sum(data["breakdown"].values()) == data["peak_bytes"]
    # the calibration run of this setup peaked at 50.54 GiB
    assert abs(data["peak_bytes"] / GiB - 50.54) / 50.54 < 0.05
    assert data["fits"] is True and data["peak_phase"] == "backward"
    assert data["setup"]["provenance"]["seq_len"]["origin"] == "user"


def test_does_not_fit_exit_5_and_markdown():
    p = run_cli("--model", "Qwen/Qwen2.5-32B-Instruct", "--method", "full", "--gpu", "4090")
    assert p.returncode == 5
    assert "does NOT fit" in p.stdout and "| weights |" in p.stdout


def test_model_config_file(tmp_path):
    cfg = {"model_type": "llama", "hidden_size": 2048, "intermediate_size": 5632, "num_hidden_layers": 22,
           "num_attention_heads": 32, "num_key_value_heads": 4, "vocab_size": 32000}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    p = run_cli("--model-config", str(tmp_path), "--gpu-memory", "24", "--json")
    assert p.returncode == 0, p.stderr
    data = json.loads(p.stdout)
    assert data["n_params"] == 1_100_048_384  # TinyLlama-1.1B layout
    assert data["gpu_bytes"] == 24 * GiB


def test_config_path(tmp_path):
    pytest.importorskip("ask_oom.tools.configs.mapping")
    y = tmp_path / "train.yaml"
    y.write_text("model_name_or_path: Qwen/Qwen2.5-7B-Instruct\nstage: sft\ndo_train: true\nfinetuning_type: lora\n"
                 "lora_rank: 16\nlora_target: all\ncutoff_len: 8192\nper_device_train_batch_size: 2\n"
                 "gradient_accumulation_steps: 8\nbf16: true\n")
    p = run_cli("--config", str(y), "--gpu", "A100-80GB", "--json")
    assert p.returncode == 0, p.stderr
    data = json.loads(p.stdout)
    assert data["setup"]["micro_batch"] == 2 and data["setup"]["seq_len"] == 8192
    assert data["setup"]["gradient_checkpointing"] is True  # LLaMA-Factory default
    assert data["n_trainable"] == 40_370_176
    # a flag overrides the file
    p2 = run_cli("--config", str(y), "--micro-batch", "1", "--json")
    assert json.loads(p2.stdout)["setup"]["micro_batch"] == 1


def test_deepspeed_estimate_mode():
    p = run_cli("--model", "Qwen2.5-32B-Instruct", "--deepspeed-estimate", "--zero", "3")
    assert p.returncode == 0, p.stderr
    for figure in ("539.10GB", "804.29GB", "2.90GB", "62.48GB"):
        assert figure in p.stdout
    j = run_cli("--model", "Qwen2.5-32B-Instruct", "--deepspeed-estimate", "--zero", "2", "--offload", "optimizer", "--json")
    assert round(json.loads(j.stdout)["selected"]["cpu_bytes"] / GiB, 2) == 714.93


@pytest.mark.parametrize("args, needle", [
    (["--model", "no-such-model-xyz"], "unknown model"),
    ([], "no model"),
    (["--model", "qwen2.5-7b", "--micro-batch", "0"], "--micro-batch"),
    (["--model", "qwen2.5-7b", "--gpu", "Voodoo5"], "unknown GPU"),
    (["--model-config", "/nonexistent/config.json"], "not found"),
])
def test_bad_input_is_one_line_exit_2(args, needle):
    p = run_cli(*args)
    assert p.returncode == 2
    assert needle in p.stderr and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


def test_host_verdict_flag():
    p = run_cli("--model", "Qwen2.5-32B-Instruct", "--method", "full", "--zero", "3", "--gpus", "8", "--offload", "all",
                "--gpu-memory", "96", "--host-ram", "744")
    assert "does NOT fit the host" in p.stdout


def test_trainer_frameworks_drop_the_logits_before_backward():
    """HF Trainer returns only the loss from compute_loss: 12 B x b x s x V at backward instead of 14."""
    base = ["--model", "qwen2.5-7b", "--method", "lora", "--seq-len", "16384", "--gradient-checkpointing", "--json"]
    loop = json.loads(run_cli(*base, "--framework", "other").stdout)
    trainer = json.loads(run_cli(*base, "--framework", "hf_trainer").stdout)
    assert loop["breakdown"]["logits_and_loss"] == 14 * 16384 * 152064
    assert trainer["breakdown"]["logits_and_loss"] == 12 * 16384 * 152064


def test_seed_kimi_vl_config_counts_eager_attention():
    """LLaMA-Factory flash_attn auto on Kimi-VL (no sdpa class, flash-attn absent) runs eager: the estimate
    says so and does not fit an H20 at 16384 tokens; with --attn flash_attention_2 it fits."""
    seed = str(Path(__file__).resolve().parents[1] / "fixtures" / "seeds" / "kimi-vl-a3b") + "/"
    base = ("--config", seed + "train.yaml", "--config", seed + "ds_z3_config.json", "--gpu", "H20", "--gpus", "8")
    p = run_cli(*base)
    assert p.returncode == 5, p.stderr
    assert "attention sdpa (runs eager)" in p.stdout and "falls back to eager" in p.stdout
    eager = json.loads(run_cli(*base, "--json").stdout)
    fa2 = json.loads(run_cli(*base, "--attn", "flash_attention_2", "--json").stdout)
    assert eager["breakdown"]["attention_scores"] >= 16 * GiB  # one layer's fp32 scores: 16 heads x 16384^2 x 4 B
    assert fa2["fits"] is True and "attention_scores" not in fa2["breakdown"]
    assert eager["peak_bytes"] - fa2["peak_bytes"] > 16 * GiB


def test_dpo_with_a_reference_model_on_a_mac():
    base = ("--model", "qwen2.5-7b", "--method", "full", "--micro-batch", "1", "--seq-len", "2048", "--zero", "3",
            "--gpus", "8", "--gpu", "A100-80GB", "--json")
    sft = json.loads(run_cli(*base).stdout)
    dpo = run_cli(*base, "--stage", "dpo", "--reference-model")
    assert dpo.returncode == 0, dpo.stderr
    dpo = json.loads(dpo.stdout)
    assert dpo["setup"]["stage"] == "dpo" and dpo["setup"]["reference_model"] is True
    assert dpo["breakdown"]["reference_weights"] == sft["breakdown"]["weights"] and dpo["peak_bytes"] > sft["peak_bytes"]
    mac = run_cli("--model", "qwen2.5-7b", "--method", "lora", "--framework", "mlx", "--gpu", "M3 Max 128GB")
    assert mac.returncode == 0 and "Apple M3 Max (128 GB unified)" in mac.stdout
