"""The live probe: the bracketing search (pure), the whole child-process path on CPU with a tiny model,
OOM handling (a real torch.OutOfMemoryError raised in the child), and GPU checks behind `-m gpu`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ask_oom.tools.probe.runner import run_probe
from ask_oom.tools.probe.schema import ProbeSpec, Trial
from ask_oom.tools.probe.search import bracket_search

TINY_LLAMA = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
              "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 512, "max_position_embeddings": 1024}


@given(limit=st.integers(0, 5000), start=st.integers(1, 5000))
@settings(max_examples=300, deadline=None)
def test_bracket_search_finds_the_largest_fitting_value(limit, start):
    calls: list[int] = []

    def fits(v: int) -> bool:
        calls.append(v)
        return v <= limit

    best, trials = bracket_search(fits, start, lo=1, hi=4096)
    expected = min(limit, 4096) if limit >= 1 else None
    assert best == expected
    assert len(calls) == len(set(calls)) == len(trials)  # never re-runs a trial
    assert len(trials) <= 2 * math.ceil(math.log2(4096)) + 2


def test_bracket_search_from_a_good_guess_takes_few_trials():
    best, trials = bracket_search(lambda v: v <= 37, 36, lo=1, hi=4096)
    assert best == 37 and len(trials) <= 8


def test_bracket_search_respects_granularity():
    best, trials = bracket_search(lambda v: v <= 5000, 1024, lo=64, hi=1 << 20, granularity=64)
    assert best == 4992 and all(v % 64 == 0 for v, _ in trials)


def test_cpu_probe_runs_lora_steps_in_a_child_and_records(tmp_path):
    spec = ProbeSpec(hf_config=TINY_LLAMA, device="cpu", method="lora", lora_rank=4, steps=2)
    record = tmp_path / "probe.jsonl"
    result = run_probe(spec, Trial(micro_batch=2, seq_len=32), record_path=record, record_meta={"model": "tiny"})
    assert result.error is None
    assert result.device_name == "cpu"
    assert 0 < result.n_trainable < result.n_params  # LoRA: only adapters train
    (trial,) = result.trials
    assert trial.result == "ok" and trial.fits_margin and len(trial.step_seconds) == 2 and trial.tokens_per_s > 0
    row = json.loads(record.read_text().splitlines()[0])
    for key in ("architecture", "method", "micro_batch", "seq_len", "result", "n_params", "n_trainable", "peak_allocated_bytes"):
        assert key in row
    assert row["architecture"]["model_type"] == "llama" and row["method"] == "lora"


def test_cpu_probe_full_finetune_with_checkpointing_and_eager():
    spec = ProbeSpec(hf_config=TINY_LLAMA, device="cpu", method="full", precision="fp32", steps=1,
                     gradient_checkpointing=True, attn_implementation="eager")
    result = run_probe(spec, Trial(micro_batch=1, seq_len=16))
    assert result.error is None and result.n_trainable == result.n_params
    assert result.trials[0].result == "ok"


def test_oom_in_the_child_is_a_result_with_a_parsed_report():
    spec = ProbeSpec(hf_config=TINY_LLAMA, device="cpu", method="lora", steps=1, inject_oom_above_tokens=100)
    result = run_probe(spec, Trial(micro_batch=4, seq_len=64))
    (trial,) = result.trials
    assert trial.result == "oom" and not trial.fits_margin
    assert trial.oom_report is not None and trial.oom_report.kind == "cuda_oom"
    assert trial.oom_report.requested_bytes == 4 * 64 * 512 * 4  # "Tried to allocate 0.50 MiB": the batch's fp32 logits


def test_find_max_against_a_memory_limit_brackets_the_boundary():
    # the child raises a real OutOfMemoryError above 1,000 tokens: with seq 64, micro-batch 15 fits and 16 does not
    spec = ProbeSpec(hf_config=TINY_LLAMA, device="cpu", method="lora", steps=1, inject_oom_above_tokens=1000)
    result = run_probe(spec, Trial(micro_batch=2, seq_len=64), find_max="batch")
    assert result.max_fitting == 15
    tried = {(t.micro_batch, t.result) for t in result.trials}
    assert (15, "ok") in tried and (16, "oom") in tried
    assert len(result.trials) <= 9


def test_a_broken_model_config_reports_an_error_not_a_crash():
    spec = ProbeSpec(hf_config={"model_type": "no_such_model_type"}, device="cpu", steps=1)
    result = run_probe(spec, Trial(micro_batch=1, seq_len=8), total_timeout_s=120)
    assert result.error and not result.trials


# ---- GPU: run with `pytest -m gpu` on a CUDA machine (README: "Live probe") ----

CALIBRATION = Path(__file__).resolve().parents[3] / "shared" / "calibration" / "gpu_peaks.jsonl"


def _calibration_rows(models_methods: list[tuple[str, str, int, int]]) -> list[dict]:
    rows = [json.loads(line) for line in CALIBRATION.read_text().splitlines()] if CALIBRATION.exists() else []
    picked = []
    for model, method, mb, seq in models_methods:
        picked += [r for r in rows if (r["model"], r["method"], r["micro_batch"], r["seq_len"]) == (model, method, mb, seq)][:1]
    return picked


@pytest.mark.gpu
@pytest.mark.parametrize("row", _calibration_rows([("qwen2.5-0.5b", "full_fp32_master", 1, 1024),
                                                   ("qwen2.5-1.5b", "full_bf16", 2, 2048),
                                                   ("qwen2.5-7b", "lora", 4, 2048)]),
                         ids=lambda r: f"{r['model']}-{r['method']}-{r['micro_batch']}x{r['seq_len']}")
def test_gpu_probe_matches_calibration_within_3_percent(row):
    method = {"full_fp32_master": "full", "full_bf16": "full", "lora": "lora", "qlora": "qlora"}[row["method"]]
    precision = "pure_bf16" if row["method"] == "full_bf16" else "bf16_mixed"
    spec = ProbeSpec(hf_config=row["architecture"], method=method, precision=precision, lora_rank=row.get("lora_r", 16),
                     gradient_checkpointing=row["gradient_checkpointing"], attn_implementation=row["attn_implementation"],
                     optimizer="adamw_fused" if row.get("fused") else "adamw", steps=3)
    result = run_probe(spec, Trial(micro_batch=row["micro_batch"], seq_len=row["seq_len"]))
    measured = result.trials[0].peak_allocated_bytes
    assert abs(measured - row["peak_allocated_bytes"]) / row["peak_allocated_bytes"] < 0.03


@pytest.mark.gpu
def test_gpu_find_max_agrees_with_direct_runs():
    arch = _calibration_rows([("qwen2.5-0.5b", "lora", 16, 1024)])[0]["architecture"]
    spec = ProbeSpec(hf_config=arch, method="lora", lora_rank=16, steps=2)
    found = run_probe(spec, Trial(micro_batch=8, seq_len=4096), find_max="batch")
    assert found.max_fitting
    ok = run_probe(spec, Trial(micro_batch=found.max_fitting, seq_len=4096))
    over = run_probe(spec, Trial(micro_batch=found.max_fitting + 1, seq_len=4096))
    assert ok.trials[0].fits_margin and not over.trials[0].fits_margin


# ---- the CLI ----

def _write_tiny(tmp_path: Path) -> tuple[Path, Path]:
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(TINY_LLAMA))
    train = tmp_path / "train.yaml"
    train.write_text("model_name_or_path: ./tiny\nstage: sft\nfinetuning_type: lora\nlora_rank: 4\n"
                     "per_device_train_batch_size: 2\ncutoff_len: 32\nbf16: true\n")
    return cfg, train


def test_cli_probe_on_cpu_prints_json_and_records(tmp_path, capsys):
    from ask_oom.ui.cli import main

    cfg, train = _write_tiny(tmp_path)
    record = tmp_path / "m.jsonl"
    code = main(["probe", "--config", str(train), "--model-config", str(cfg), "--device", "cpu", "--steps", "1",
                 "--record", str(record), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert out["trials"][0]["micro_batch"] == 2 and out["trials"][0]["seq_len"] == 32
    assert out["n_trainable"] < out["n_params"]
    assert json.loads(record.read_text())["method"] == "lora"


def test_cli_probe_without_cuda_says_so(tmp_path, capsys):
    import torch

    from ask_oom.ui.cli import main

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    cfg, train = _write_tiny(tmp_path)
    assert main(["probe", "--config", str(train), "--model-config", str(cfg)]) == 4
    assert "no CUDA device" in capsys.readouterr().err
