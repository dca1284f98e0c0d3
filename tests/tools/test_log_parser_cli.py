"""`ask-oom parse`: Markdown by default, the OOMReport as JSON with --json; exit 0 / 3 / 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

CORPUS = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "logs"


def run_parse(args: list[str], stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ask_oom.ui.cli", "parse", *args], input=stdin, capture_output=True,
                          timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1"})


def test_json_report_from_stdin_exit_0():
    log = (CORPUS / "lf_gemma7b_lora_logits_new_format.log").read_bytes()
    proc = run_parse(["--json"], log)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["kind"] == "cuda_oom" and data["requested_bytes"] == round(3.90 * 2**30)
    assert data["phase"] == "forward" and data["operation"] == "cross_entropy"
    assert data["training_args"]["per_device_train_batch_size"] == {"value": "4", "line": 11}


def test_markdown_summary_from_file():
    proc = run_parse([str(CORPUS / "multirank_zero3_allgather_rank_prefix.log")])
    assert proc.returncode == 0
    out = proc.stdout.decode()
    assert "cuda_oom" in out and "| requested | 1.02 GiB |" in out and "ranks reporting it: 0, 1, 2, 3" in out
    assert "zero3_allgather" in out


def test_no_memory_error_exit_3_and_still_says_what_it_found():
    proc = run_parse([str(CORPUS / "sigfpe_h20_not_oom.log")])
    assert proc.returncode == 3
    assert "No memory error found" in proc.stdout.decode() and "SIGFPE" in proc.stdout.decode()


def test_unusable_input_exit_2_one_line():
    for args, stdin in (([], b""), ([], bytes(range(256)) * 40), (["/no/such/file.log"], None)):
        proc = run_parse(args, stdin)
        err = proc.stderr.decode()
        assert proc.returncode == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
