#!/usr/bin/env bash
# The device checks, as one script for a session lent a GPU: the probe's and the snapshot reader's GPU tests (each
# result and skip reason printed), then the probe benchmark. Results go to $OUT (default ./gpu-results) so the session
# gets them back. Run from the repository root with the project installed: bash evals/gpu_checks.sh
set -uo pipefail
OUT="${OUT:-gpu-results}"
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
python - > "$OUT/torch.txt" 2>&1 <<'PY'
import torch
print(torch.__version__, torch.version.cuda, torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
PY
# the GPU tests: the probe against the calibration rows, find-max, and a real allocator snapshot read back (-s prints
# the snapshot's summary so a format surprise can be read off the output)
timeout 420 python -m pytest -q -m gpu -rs -s tests/tools/test_probe.py tests/tools/test_snapshot_gpu.py \
  > "$OUT/gpu-tests.txt" 2>&1
echo "gpu tests: exit $?" | tee -a "$OUT/summary.txt"
timeout 240 python evals/probe_benchmark.py --runs 1 > "$OUT/probe-benchmark.txt" 2>&1
echo "probe benchmark: exit $?" | tee -a "$OUT/summary.txt"
tail -3 "$OUT/gpu-tests.txt" "$OUT/probe-benchmark.txt"
