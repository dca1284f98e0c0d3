"""The README's examples are real output: each command is run and the lines the README shows must be in what it
prints (and in the README), so a change to the tools that changes an answer changes the README too."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from ask_oom.ui.cli import main

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text(encoding="utf-8")

EXAMPLES = [
    ("check qwen2.5-7b-lora.yaml --gpu A100-80GB", 0,
     ["- GPU: predicted peak 45.64 GiB (band 45.19 GiB - 46.56 GiB) against a budget of 70.75 GiB on A100-80GB: fits"]),
    ("check qwen2.5-7b-lora.yaml --gpu A100-40GB --dataset sft-data.jsonl", 5,
     ["- dataset: worst batch 2 x 8192 tokens, predicted peak 45.64 GiB (band upper 46.56 GiB) against 34.96 GiB: "
      "does not fit; 1 sample(s) over budget (0.333%)",
      "For the smallest change that fits: `ask-oom fix --config qwen2.5-7b-lora.yaml --gpu A100-40GB --dataset sft-data.jsonl`"]),
    ("estimate --config qwen2.5-7b-lora.yaml --gpu A100-40GB --dataset sft-data.jsonl --steps 50", 5,
     ["| total | 78 | 362 | 538 | 602 | 10656 | 395.1 |",
      "- largest sequence that fits at micro_batch 2 (calculator, bisected): 5200 tokens for text-only samples",
      "- over budget: 1 sample(s) (0.333%), e.g. #212 (s0212): 10656"]),
    ("diagnose eval-oom.log --config qwen2.5-7b-lora-eval.yaml --gpu H100 --gpus 2 --snapshot eval-oom.rank0.pickle "
     "--snapshot eval-oom.rank1.pickle", 0,
     ["| eval_accumulated | 0.00 | 46.00 | +46.00 |", "| **total (reserved)** | 107.47 | 63.81 | -43.65 |"]),
    # the 30-second example: its answer and the ranked cause's score and probability (the fitted weights set them)
    ("diagnose moe-llava-phi2.log --config moe-llava-phi2.sh", 0,
     ["Not sure yet: batch too large (78%) or full ft model states (12%). What would decide it: What are",
      "1. **batch_too_large** (score 0.90, probability 78%): the per-device micro-batch is too large (train or eval)"]),
    ("diagnose eval-oom.log --config qwen2.5-7b-lora-eval.yaml --gpu H100 --gpus 2 --snapshot eval-oom.rank0.pickle "
     "--snapshot eval-oom.rank1.pickle", 0, ["likely cause (probability 98%): eval accumulation"]),
    ("diagnose save-oom-4ranks.log", 0,
     ["| 0 (busiest) | 74.10 | 76.40 | 4.00 | 0.90 | – |",
      "**Verdict:** imbalance: rank 0 holds 74.10 GiB allocated and rank 3 51.90 GiB: a spread of 30% of the busiest "
      "rank (over 10% is imbalance)"]),
]


@pytest.mark.parametrize("command, code, lines", EXAMPLES, ids=[c.split()[0] + "-" + str(i) for i, (c, _, _) in enumerate(EXAMPLES)])
def test_a_readme_example_prints_what_the_readme_shows(command, code, lines, capsys, monkeypatch):
    monkeypatch.chdir(REPO / "ui" / "examples")
    assert main(shlex.split(command)) == code
    out = capsys.readouterr().out
    for line in lines:
        assert line in README, line
        assert line in out, line


def test_the_vllm_serve_example(tmp_path, capsys):
    (tmp_path / "serve.sh").write_text("vllm serve meta-llama/Llama-3.1-8B-Instruct --max-model-len 131072 "
                                       "--gpu-memory-utilization 0.9\n")
    main(["estimate", "--config", str(tmp_path / "serve.sh"), "--gpu", "4090"])
    out = capsys.readouterr().out
    for line in ("| weights | 14.96 GiB | 70.3% |", "| kv_cache_pool | 4.47 GiB | 21.0% |"):
        assert line in README and line in out
    assert "131072-token sequence: **does NOT start**. Largest max_model_len: 36624" in out
