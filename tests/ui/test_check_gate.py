"""`ask-oom check`: the launch gate's exit codes follow the CLI's table, its --json, several configs, the hook file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ask_oom.ui.cli import main
from ask_oom.ui.errors import EXIT_BORDERLINE, EXIT_DOES_NOT_FIT, EXIT_OK, EXIT_USAGE

ROOT = Path(__file__).resolve().parents[2]
GIB = 1024 ** 3

TRAIN_YAML = """\
model_name_or_path: Qwen/Qwen2.5-7B-Instruct
stage: sft
do_train: true
finetuning_type: lora
lora_rank: 8
dataset: alpaca_en_demo
cutoff_len: 2048
per_device_train_batch_size: 2
gradient_accumulation_steps: 8
bf16: true
output_dir: saves/out
"""


@pytest.fixture
def train_yaml(tmp_path: Path) -> Path:
    path = tmp_path / "train.yaml"
    path.write_text(TRAIN_YAML)
    return path


def check_json(capsys, *args: str) -> tuple[int, dict]:
    code = main(["check", *args, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_the_exit_code_is_the_verdict_of_the_band_against_the_budget(capsys, train_yaml):
    code, big = check_json(capsys, str(train_yaml), "--gpu", "H100-80GB")
    est = big["estimate"]
    assert (code, big["verdict"]) == (EXIT_OK, "fits") and est["band_upper_bytes"] <= est["budget_bytes"]
    code, small = check_json(capsys, str(train_yaml), "--gpu", "T4")
    assert (code, small["verdict"]) == (EXIT_DOES_NOT_FIT, "does_not_fit")
    assert small["estimate"]["band_lower_bytes"] > small["estimate"]["budget_bytes"]


def test_a_budget_inside_the_band_is_borderline_with_the_probe_command(capsys, train_yaml):
    _, ref = check_json(capsys, str(train_yaml), "--gpu-memory", "80")
    est = ref["estimate"]
    # budget = capacity x margin - CUDA context: choose the capacity whose budget is the middle of the band
    middle = (est["band_lower_bytes"] + est["band_upper_bytes"]) / 2
    margin = est["budget_bytes"] + est["cuda_context_bytes"]
    capacity_gib = (middle + est["cuda_context_bytes"]) / (margin / (80 * GIB)) / GIB
    code, mid = check_json(capsys, str(train_yaml), "--gpu-memory", f"{capacity_gib:.4f}")
    assert (code, mid["verdict"]) == (EXIT_BORDERLINE, "borderline")
    assert mid["probe_command"].startswith("ask-oom probe --config")
    assert main(["check", str(train_yaml), "--gpu-memory", f"{capacity_gib:.4f}"]) == EXIT_BORDERLINE
    out = capsys.readouterr().out
    assert "borderline" in out and "ask-oom probe" in out


def test_no_gpu_to_judge_against_is_a_usage_error(capsys, train_yaml):
    assert main(["check", str(train_yaml)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "--gpu" in err and len(err.strip().splitlines()) == 1


def test_bad_input_is_exit_2_not_a_verdict(capsys, tmp_path):
    bad = tmp_path / "train.yaml"
    bad.write_text(TRAIN_YAML.replace("per_device_train_batch_size: 2", "per_device_train_batch_size: -2"))
    assert main(["check", str(bad), "--gpu", "H100"]) == EXIT_USAGE
    assert "per_device_train_batch_size" in capsys.readouterr().err
    assert main(["check", str(tmp_path / "missing.yaml"), "--gpu", "H100"]) == EXIT_USAGE


def test_several_configs_exit_on_the_worst(capsys, tmp_path, train_yaml):
    long = tmp_path / "long.yaml"
    long.write_text(TRAIN_YAML.replace("cutoff_len: 2048", "cutoff_len: 32768"))
    code, both = check_json(capsys, str(train_yaml), str(long), "--gpu", "A100-40GB")
    verdicts = [c["verdict"] for c in both["checks"]]
    assert verdicts[0] == "fits" and verdicts[1] != "fits"
    assert both["verdict"] == verdicts[1] and code in (EXIT_BORDERLINE, EXIT_DOES_NOT_FIT)


def test_host_ram_short_for_offload_does_not_fit(capsys, train_yaml):
    code, out = check_json(capsys, str(train_yaml), "--method", "full", "--zero", "3", "--offload", "all",
                           "--gpus", "8", "--gpu", "H100", "--host-ram", "16")
    assert out["estimate"]["host_fits"] is False
    assert (code, out["verdict"]) == (EXIT_DOES_NOT_FIT, "does_not_fit")
    assert any(r.startswith("host RAM") for r in out["reasons"])


def test_the_readme_gate_runs_the_next_command_only_when_it_fits(tmp_path, train_yaml):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    marker = tmp_path / "launched"
    cmd = f'"{sys.executable}" -m ask_oom.ui.cli check "{train_yaml}" --gpu {{gpu}} && touch "{marker}"'
    subprocess.run(cmd.format(gpu="T4"), shell=True, env=env, capture_output=True, timeout=120)
    assert not marker.exists()
    subprocess.run(cmd.format(gpu="H100"), shell=True, env=env, capture_output=True, timeout=120)
    assert marker.exists()


def test_the_pre_commit_hook_runs_check_on_the_staged_files(tmp_path, train_yaml):
    from ruamel.yaml import YAML

    hooks = YAML(typ="safe").load((ROOT / ".pre-commit-hooks.yaml").read_text())
    hook = next(h for h in hooks if h["id"] == "ask-oom-check")
    assert hook["entry"].split()[:2] == ["ask-oom", "check"] and hook["language"] == "python"
    import re

    assert re.search(hook["files"], train_yaml.name)
    # pre-commit runs: entry + args + the staged file names
    argv = hook["entry"].split()[1:] + ["--gpu", "T4", str(train_yaml), str(train_yaml)]
    assert main(argv) == EXIT_DOES_NOT_FIT


def test_a_failed_check_prints_the_fix_command_for_the_same_config_and_gpu(capsys, train_yaml):
    import re
    import shlex

    assert main(["check", str(train_yaml), "--gpu", "T4", "--gpus", "2"]) == EXIT_DOES_NOT_FIT
    out = capsys.readouterr().out
    m = re.search(r"`(ask-oom fix [^`]+)`", out)
    assert m, out
    argv = shlex.split(m.group(1))
    assert argv[:4] == ["ask-oom", "fix", "--config", str(train_yaml)] and "--gpu" in argv and "--gpus" in argv
    assert main(argv[1:]) in (EXIT_OK, EXIT_DOES_NOT_FIT)      # a command `fix` accepts as it is
    assert capsys.readouterr().out.startswith("# ")
