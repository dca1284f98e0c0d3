"""Probe wall time on a GPU: a Qwen2.5-7B LoRA step (goal < 60 s, model build included) and a find-max
search over the micro-batch (goal < 3 min). Median of --runs runs, printed as a table.

    python evals/probe_benchmark.py --runs 3        # on the GPU machine (see README, "Live probe")
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from ask_oom.tools.probe.runner import run_probe
from ask_oom.tools.probe.schema import ProbeSpec, Trial

CALIBRATION = Path(__file__).resolve().parents[2] / "shared" / "calibration" / "gpu_peaks.jsonl"


def qwen7b_config() -> dict:
    for line in CALIBRATION.read_text().splitlines():
        row = json.loads(line)
        if row["model"] == "qwen2.5-7b":
            return row["architecture"]
    raise SystemExit("no qwen2.5-7b row in the calibration set")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("probe benchmark: needs a CUDA device", file=sys.stderr)
        return 4
    spec = ProbeSpec(hf_config=qwen7b_config(), method="lora", lora_rank=16, gradient_checkpointing=True, steps=3)
    rows = []
    for name, kwargs in (("7B LoRA step (build + 3 steps)", {}), ("7B LoRA find-max batch @2048", {"find_max": "batch"})):
        times, detail = [], ""
        for _ in range(args.runs):
            t0 = time.perf_counter()
            result = run_probe(spec, Trial(micro_batch=4, seq_len=2048), **kwargs)
            times.append(time.perf_counter() - t0)
            main_trial = result.main
            detail = (f"peak {main_trial.peak_allocated_bytes / 2**30:.2f} GiB" if main_trial and main_trial.peak_allocated_bytes else "")
            if kwargs:
                detail += f", max batch {result.max_fitting} in {len(result.trials)} trials"
        rows.append((name, statistics.median(times), min(times), max(times), detail))
    print(f"{'benchmark':<34} {'median s':>9} {'min s':>7} {'max s':>7}  detail")
    for name, med, lo, hi, detail in rows:
        print(f"{name:<34} {med:>9.1f} {lo:>7.1f} {hi:>7.1f}  {detail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
