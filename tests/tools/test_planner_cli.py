"""`ask-oom fix` end to end: config (+ DeepSpeed file, + log) in, fixed config, diff and exit codes out."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ask_oom.ui.cli import main

SEEDS = Path(__file__).resolve().parents[1] / "fixtures" / "seeds"


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["fix", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_fix_moe_llava_script_with_log_json(capsys):
    d = SEEDS / "moe-llava-phi2"   # its files are symbolic links into ui/examples
    code, out, _ = _run(capsys, "--config", str(d / "finetune_moe.sh"), "--config", str(d / "zero2.json"),
                        "--log", str(d / "train.log"), "--json", "--allow-symlinks")
    assert code == 0
    data = json.loads(out)
    assert data["fits"] and data["verified"] and data["format"] == "shell"
    keys = {c["key"]: (c["from_value"], c["to_value"]) for c in data["changes"] if c["key"]}
    assert keys["per_device_train_batch_size"] == (8, 4) and keys["gradient_accumulation_steps"] == (2, 4)
    assert "--per_device_train_batch_size 4 \\\n" in data["fixed_config"]
    assert data["diff"].startswith("--- a/finetune_moe.sh\n+++ b/finetune_moe.sh\n")
    assert data["estimate_after"]["peak_bytes"] < data["estimate_before"]["peak_bytes"]
    assert data["root_causes"][0]["label"] == "batch_too_large"


def test_fix_markdown_and_write(capsys, tmp_path):
    d = SEEDS / "kimi-vl-a3b"
    out_path = tmp_path / "fixed.yaml"
    code, out, _ = _run(capsys, "--config", str(d / "train.yaml"), "--log", str(d / "train.log"), "--write", str(out_path))
    assert code == 0
    assert out.startswith("# Fixed: the changed config fits")
    assert "## Changes" in out and "`flash_attn`" in out and "```diff" in out
    assert out_path.read_text().count("flash_attn: fa2") == 1
    # the DeepSpeed file beside the config was read without being passed (its stage is not guessed from the name)
    assert "inferred from its name" not in out
    assert "8 x GPU (94.50 GiB)" in out


def test_fix_without_log_uses_the_calculator_breakdown(capsys):
    d = SEEDS / "deepke-llama2-13b"
    code, out, _ = _run(capsys, "--config", str(d / "run.sh"), "--gpu", "4090", "--json")
    data = json.loads(out)
    assert code == 0 and data["fits"]
    assert data["root_causes"][0]["label"] == "weights_exceed_gpu"
    assert any(c["key"] == "bits" and c["to_value"] == 4 for c in data["changes"])
    assert data["setup"]["num_gpus"] == 3


def test_nothing_fits_exits_5_with_the_closest_option(capsys, tmp_path):
    cfg = tmp_path / "train.yaml"
    cfg.write_text("model_name_or_path: Qwen/Qwen2.5-72B\nstage: sft\nfinetuning_type: full\ncutoff_len: 4096\n"
                   "per_device_train_batch_size: 1\nbf16: true\n")
    code, out, _ = _run(capsys, "--config", str(cfg), "--gpu", "4090", "--gpus", "1", "--keep", "full")
    assert code == 5
    assert "nothing fits" in out and "hardware:" in out


def test_a_named_deepspeed_file_not_given_is_a_note_like_diagnose(capsys, tmp_path):
    """fix accepts what diagnose accepts: the DeepSpeed file the config names but nobody gave is inferred from its
    name (ds_z3 → ZeRO-3) and said in a note, never a refusal."""
    d = SEEDS / "kimi-vl-a3b"
    lonely = tmp_path / "train.yaml"
    lonely.write_text((d / "train.yaml").read_text())
    code, out, err = _run(capsys, "--config", str(lonely), "--gpu", "H20", "--json")
    assert code in (0, 5), err
    data = json.loads(out)
    assert data["setup"]["zero_stage"] == 3
    assert any("ds_z3_config.json" in n and "not given" in n for n in data["notes"])


def test_bad_inputs_exit_2_with_one_line(capsys, tmp_path):
    d = SEEDS / "kimi-vl-a3b"
    evil = tmp_path / "evil.yaml"
    evil.write_text("model_name_or_path: !!python/object/apply:os.system ['echo hi']\n")
    code, _, err = _run(capsys, "--config", str(evil))
    assert code == 2 and "tag" in err and "Traceback" not in err
    code, _, err = _run(capsys, "--config", str(tmp_path / "missing.yaml"))
    assert code == 2
    code, _, err = _run(capsys, "--config", str(d / "train.yaml"), "--write", str(d / "train.yaml"))
    assert code == 2 and "overwrite" in err


@pytest.mark.slow
def test_console_script_runs_fix():
    d = SEEDS / "qwen2.5-32b"
    exe = Path(sys.executable).with_name("ask-oom")
    proc = subprocess.run([str(exe), "fix", "--config", str(d / "train.yaml"), "--config", str(d / "ds_z3_offload_config.json"),
                           "--log", str(d / "train.log"), "--gpu", "H100-96GB", "--gpus", "1", "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert any(c["key"] == "finetuning_type" and c["to_value"] == "lora" for c in data["changes"])
    assert json.loads(data["fixed_deepspeed"])["zero_optimization"]["offload_optimizer"]["device"] == "none"


def test_write_puts_a_changed_deepspeed_file_beside_the_fixed_config(capsys, tmp_path):
    d = SEEDS / "qwen2.5-32b"
    out_path = tmp_path / "train.fixed.yaml"
    code, out, _ = _run(capsys, "--config", str(d / "train.yaml"), "--log", str(d / "train.log"), "--gpu", "H100-96GB",
                        "--gpus", "1", "--write", str(out_path), "--json")
    data = json.loads(out)
    assert code == 0 and data["written"] == [str(out_path), str(tmp_path / "ds_z3_offload_config.json")]
    assert "finetuning_type: lora" in out_path.read_text()
    written_ds = json.loads((tmp_path / "ds_z3_offload_config.json").read_text())
    assert written_ds["zero_optimization"]["offload_param"]["device"] == "none"
    # the user's original files are untouched
    assert json.loads((d / "ds_z3_offload_config.json").read_text())["zero_optimization"]["offload_param"]["device"] == "cpu"
