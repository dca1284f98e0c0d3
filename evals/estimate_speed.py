"""Latency benchmark of the memory calculator: median milliseconds per `estimate_memory` call.

Includes the max-micro-batch / max-seq-len searches (a GPU is given), over a spread of
architectures and methods. Target (issue 4): under 10 ms per estimate, pure Python.
Run: .venv/bin/python evals/estimate_speed.py [--repeat N]
"""

from __future__ import annotations

import statistics
import sys
import time

from ask_oom.tools.gpus import lookup_gpu
from ask_oom.tools.memory import estimate_memory, resolve_model
from ask_oom.tools.training_setup import TrainingSetup

CASES = [
    ("Qwen/Qwen2.5-7B-Instruct", dict(method="lora", micro_batch=4, seq_len=4096, gradient_checkpointing=True)),
    ("meta-llama/Llama-2-13b-hf", dict(method="full", zero_stage=3, num_gpus=8, micro_batch=2, seq_len=2048)),
    ("mistralai/Mixtral-8x7B-v0.1", dict(method="qlora", quantization_bit=4, micro_batch=1, seq_len=4096)),
    ("Qwen/Qwen2.5-VL-7B-Instruct", dict(method="full", images_per_sample=2, image_max_pixels=1024 * 1024, seq_len=4096)),
    ("moonshotai/Kimi-VL-A3B-Instruct", dict(method="full", zero_stage=3, num_gpus=8, images_per_sample=1, seq_len=8192)),
    ("deepseek-ai/DeepSeek-V2-Lite", dict(method="lora", micro_batch=2, seq_len=4096, attn_implementation="eager")),
]


def main(argv: list[str]) -> int:
    repeat = int(argv[argv.index("--repeat") + 1]) if "--repeat" in argv else 50
    gpu = lookup_gpu("A100-80GB")
    print("| model | setup | median ms | p90 ms |")
    print("|---|---|---:|---:|")
    medians = []
    for name, kw in CASES:
        setup = TrainingSetup(model=resolve_model(name), gpu=gpu, **kw)
        estimate_memory(setup)  # warm caches (registry, parameter counts)
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            estimate_memory(setup)
            times.append((time.perf_counter() - t0) * 1000)
        times.sort()
        med = statistics.median(times)
        medians.append(med)
        desc = ", ".join(f"{k}={v}" for k, v in kw.items())
        print(f"| {name} | {desc} | {med:.2f} | {times[int(0.9 * (len(times) - 1))]:.2f} |")
    print(f"\noverall median: {statistics.median(medians):.2f} ms per estimate (target < 10 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
