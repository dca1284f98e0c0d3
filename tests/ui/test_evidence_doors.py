"""--snapshot, --dataset and multi-rank logs through the doors: the pipeline reads them once, every command shows
them, and unsafe or missing input is a one-line exit 2."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from ask_oom.ui.cli import main
from ask_oom.ui.errors import EXIT_DOES_NOT_FIT, EXIT_OK, EXIT_USAGE

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from test_snapshot_builders import dumps, llama_snapshot  # noqa: E402
from test_snapshot_log_ranks import _msg, _traceback  # noqa: E402

GIB = 1 << 30

TRAIN_YAML = """\
model_name_or_path: meta-llama/Llama-3.1-8B-Instruct
stage: sft
do_train: true
finetuning_type: lora
dataset: mine
cutoff_len: 8192
per_device_train_batch_size: 2
gradient_accumulation_steps: 4
bf16: true
output_dir: out
"""


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    (tmp_path / "train.yaml").write_text(TRAIN_YAML)
    data = tmp_path / "data"
    data.mkdir()
    rows = [{"instruction": "q " * 50, "input": "", "output": "a " * 50} for _ in range(300)]
    rows[217] = {"instruction": "long " * 7000, "input": "", "output": "a"}      # one sample far longer than the rest
    (data / "mine.json").write_text(json.dumps(rows))
    (data / "dataset_info.json").write_text(json.dumps({"mine": {"file_name": "mine.json"}, "other": {"file_name": "x.json"}}))
    return tmp_path


def four_rank_log() -> str:
    lines = ["{'loss': 1.93, 'epoch': 0.1}"]
    for rank, (alloc, unalloc, free) in {0: (60.1, 2.3, 1.2), 1: (61.0, 1.0, 1.1), 2: (59.8, 2.0, 1.3),
                                         3: (74.1, 2.3, 1.2)}.items():
        lines += _traceback(rank) + [_msg(rank, alloc, unalloc, free)]
    return "\n".join(lines) + "\n"


def test_snapshots_are_reconciled_with_the_estimate_per_rank(capsys, run_dir):
    log = run_dir / "train.log"
    log.write_text(four_rank_log())
    for rank, extra in ((0, 0), (1, 5 * GIB)):
        (run_dir / f"snapshot_rank{rank}.pickle").write_bytes(dumps(llama_snapshot(extra_activations=extra)))
    args = ["diagnose", str(log), "--config", str(run_dir / "train.yaml"), "--gpu", "H100", "--gpus", "4",
            "--snapshot", str(run_dir / "snapshot_rank0.pickle"), "--snapshot", str(run_dir / "snapshot_rank1.pickle")]
    assert main([*args, "--json"]) == EXIT_OK
    out = json.loads(capsys.readouterr().out)
    rec = out["reconciliation"]
    assert [c["rank"] for c in rec["comparisons"]] == [0, 1]
    assert "rank 1" in rec["finding"] and "activations" in rec["finding"]
    assert out["ranks"] is None          # the snapshots' table wins over the log's
    assert main(args) == EXIT_OK
    text = capsys.readouterr().out
    assert "## Memory snapshots: held vs predicted" in text and "rank 1" in text


def test_a_log_where_several_ranks_ran_out_gets_the_rank_table(capsys, run_dir):
    log = run_dir / "train.log"
    log.write_text(four_rank_log())
    assert main(["diagnose", str(log), "--json"]) == EXIT_OK
    ranks = json.loads(capsys.readouterr().out)["ranks"]
    assert ranks["busiest_rank"] == 3 and [r["rank"] for r in ranks["rows"]] == [0, 1, 2, 3]
    assert main(["diagnose", str(log)]) == EXIT_OK
    assert "## Ranks" in capsys.readouterr().out


def test_a_malicious_snapshot_is_refused_without_running_anything(capsys, tmp_path, run_dir):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    bad = tmp_path / "rank0.pickle"
    bad.write_bytes(pickle.dumps({"segments": [Evil()]}))
    log = run_dir / "train.log"
    log.write_text(four_rank_log())
    proc = subprocess.run([sys.executable, "-m", "ask_oom.ui.cli", "diagnose", str(log), "--snapshot", str(bad)],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == EXIT_USAGE and not marker.exists()
    assert "refused" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_the_dataset_worst_batch_in_estimate_fix_and_check(capsys, run_dir):
    base = ["--config", str(run_dir / "train.yaml"), "--dataset", str(run_dir / "data"), "--gpu", "A100-40GB"]
    assert main(["estimate", *base, "--json"]) in (EXIT_OK, EXIT_DOES_NOT_FIT)
    est = json.loads(capsys.readouterr().out)
    ds = est["dataset"]
    assert ds["profile"]["samples"] == 300 and ds["profile"]["datasets"] == ["mine"]   # the config's entry only
    assert ds["verdict"]["worst_sample"]["index"] == 217 and ds["verdict"]["worst_length"] == 8192
    # the same worst batch decides the gate; its arithmetic is the calculator's at 2 x 8192 tokens
    code = main(["check", *base, "--json"])
    gate = json.loads(capsys.readouterr().out)
    assert gate["reasons"][0].startswith("dataset: worst batch 2 x 8192 tokens")
    assert code == {"fits": 0, "borderline": 7, "does_not_fit": 5}[ds["verdict"]["verdict"]]
    assert main(["fix", *base]) in (EXIT_OK, EXIT_DOES_NOT_FIT)
    text = capsys.readouterr().out
    assert "## Dataset: the worst batch" in text and "| 217 |" in text


def test_a_short_dataset_lets_a_long_cutoff_launch(capsys, run_dir):
    """Batches pad to their longest sample: a dataset of short samples fits where cutoff_len-long ones would not."""
    data = run_dir / "data"
    rows = [{"instruction": "q " * 50, "input": "", "output": "a " * 50} for _ in range(300)]
    (data / "mine.json").write_text(json.dumps(rows))
    long = run_dir / "long.yaml"
    long.write_text(TRAIN_YAML.replace("cutoff_len: 8192", "cutoff_len: 32768"))
    assert main(["check", str(long), "--gpu", "A100-40GB"]) != EXIT_OK
    capsys.readouterr()
    assert main(["check", str(long), "--gpu", "A100-40GB", "--dataset", str(data)]) == EXIT_OK


def test_missing_dataset_or_tokenizer_is_exit_2(capsys, run_dir):
    base = ["estimate", "--config", str(run_dir / "train.yaml"), "--gpu", "H100"]
    assert main([*base, "--dataset", str(run_dir / "nope")]) == EXIT_USAGE
    assert "no such file" in capsys.readouterr().err
    assert main([*base, "--dataset", str(run_dir / "data"), "--tokenizer", str(run_dir)]) == EXIT_USAGE
    assert "tokenizer.json" in capsys.readouterr().err
    assert main([*base, "--dataset", str(run_dir / "data"), "--dataset-name", "missing"]) == EXIT_USAGE


def test_fix_with_a_dataset_that_fits_changes_nothing(capsys, run_dir):
    """`fix --dataset` agrees with `check --dataset`: when the data's worst batch fits, no change is planned, though
    every sample at the configured cutoff_len would not."""
    data = run_dir / "data"
    rows = [{"instruction": "q " * 50, "input": "", "output": "a " * 50} for _ in range(300)]
    (data / "mine.json").write_text(json.dumps(rows))
    long = run_dir / "long.yaml"
    long.write_text(TRAIN_YAML.replace("cutoff_len: 8192", "cutoff_len: 32768"))
    base = ["fix", "--config", str(long), "--gpu", "A100-40GB", "--json"]
    main(base)
    without = json.loads(capsys.readouterr().out)
    assert without["changes"]                                   # at 32768 tokens a sample, something must change
    assert main([*base, "--dataset", str(data)]) == EXIT_OK
    with_data = json.loads(capsys.readouterr().out)
    assert with_data["changes"] == [] and with_data["fixed_config"] is None
    assert any("no change needed for this dataset" in n for n in with_data["notes"])
    assert main([*base[:-1], "--dataset", str(data)]) == EXIT_OK
    assert capsys.readouterr().out.startswith("# Already fits this dataset")
