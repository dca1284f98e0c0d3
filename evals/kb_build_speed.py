"""Index build speed for a knowledge base of N cases (default 1,000 synthetic variants of the real cases):
full build (lexical + MiniLM embeddings + llama-index persist), lexical-only build, reload without re-embedding,
and warm query latency on the big index. Median of several runs, printed as a table.

    python evals/kb_build_speed.py [--n 1000] [--runs 3] [--threads 2]

Target (issue 5): building the index for 1,000 cases under 60 s on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

GPUS = [("A100", 40.0), ("A100", 80.0), ("H100", 80.0), ("RTX 4090", 24.0), ("RTX 3090", 24.0), ("V100", 32.0),
        ("L40S", 48.0), ("H20", 96.0), ("A800", 80.0), ("T4", 16.0)]
SIZES = ["0.5B", "1.5B", "3B", "7B", "8B", "13B", "14B", "32B", "70B", "72B"]


def synthetic_cases(base: list, n: int, seed: int = 0) -> list:
    """n schema-valid variants of the real cases: other GPUs, sizes, setting values and error numbers."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        case = base[i % len(base)]
        gpu, mem = rng.choice(GPUS)
        size = rng.choice(SIZES)
        settings = {k: (v * rng.choice([1, 2, 4]) if isinstance(v, int) and not isinstance(v, bool) else v)
                    for k, v in case.settings.items()}
        numbers = {k: round(v * rng.uniform(0.5, 2.0), 3) for k, v in case.symptom.numbers.items()}
        out.append(case.model_copy(update={
            "id": f"{case.id[:60]}-syn{i}",
            "title": f"{case.title} (variant {i}: {size} on {gpu} {mem:.0f}GB)",
            "model": case.model.model_copy(update={"size": size}),
            "hardware": case.hardware.model_copy(update={"gpu": gpu, "memory_gib": mem, "count": rng.choice([1, 2, 4, 8])}),
            "settings": settings,
            "symptom": case.symptom.model_copy(update={"numbers": numbers}),
        }))
    return out


def timed(fn):
    t0 = time.perf_counter()
    value = fn()
    return time.perf_counter() - t0, value


def cpu_timed(fn):
    """(wall s, process CPU s over all threads, value): CPU time is what a shared, busy machine cannot inflate."""
    w0, c0 = time.perf_counter(), time.process_time()
    value = fn()
    return time.perf_counter() - w0, time.process_time() - c0, value


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (the target is stated for 2 cores)")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from ask_oom.kb.cases import load_cases
    from ask_oom.kb.embedding import load_embed_model
    from ask_oom.kb.index import CaseIndex

    load_model_s, _ = timed(load_embed_model)  # once per process; reported separately from the build itself
    cases = synthetic_cases(load_cases(), args.n)
    full, full_cpu, lexical, reload, q_hybrid, q_fast = [], [], [], [], [], []
    queries = ["CUDA out of memory during evaluation, predictions kept on GPU", "ZeRO-3 offload host RAM killed 70B",
               "Qwen2.5-VL 显存逐渐增加 全量微调", "vLLM gpu_memory_utilization KV cache OOM", "QLoRA 4-bit bf16 V100"]
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            s, cpu, index = cpu_timed(lambda: CaseIndex.from_cases(cases, Path(tmp) / "idx", dense=True))
            full.append(s)
            full_cpu.append(cpu)
            s, _ = timed(lambda: CaseIndex.from_cases(cases, Path(tmp) / "lex", dense=False))
            lexical.append(s)

            def reload_index():
                idx = CaseIndex._load(Path(tmp) / "idx", index.manifest.cases_hash)
                idx.ensure_dense()
                return idx

            s, loaded = timed(reload_index)
            reload.append(s)
            for q in queries:
                loaded.search(q, k=5, mode="hybrid")  # warm-up
                q_hybrid.append(timed(lambda: loaded.search(q, k=5, mode="hybrid"))[0])
                q_fast.append(timed(lambda: loaded.search(q, k=5, mode="fast"))[0])

    med = statistics.median
    print(f"Index build speed: {args.n} cases ({len(load_cases())} real + variants), {args.runs} runs, "
          f"torch threads {torch.get_num_threads()}, {os.cpu_count()} CPUs visible\n")
    rows = [
        ("embedding model load (once per process)", load_model_s, None),
        ("full build: lexical + embeddings + persist", med(full), 60.0),
        ("  same, process CPU time (all threads)", med(full_cpu), 60.0),
        ("lexical-only build (fast path)", med(lexical), None),
        ("reload from disk, no re-embedding", med(reload), None),
        ("warm hybrid query, 1k cases (median)", med(q_hybrid), 0.050),
        ("warm fast query, 1k cases (median)", med(q_fast), None),
    ]
    print(f"{'measure':<46}{'median':>12}{'target':>10}")
    print("-" * 68)
    for name, value, target in rows:
        unit = f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"
        tgt = "" if target is None else (f"< {target * 1000:.0f} ms" if target < 1 else f"< {target:.0f} s")
        print(f"{name:<46}{unit:>12}{tgt:>10}")
    # CPU time summed over threads bounds the wall time on two dedicated cores from above (it is the time on
    # one); wall time on a shared machine also counts the time other processes held the cores.
    ok = min(med(full), med(full_cpu)) < 60.0
    print(f"\nload average (1/5/15 min): {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"full build of {args.n} cases: wall {med(full):.1f} s, CPU {med(full_cpu):.1f} s "
          f"(runs: {', '.join(f'{x:.1f}' for x in full)}) → {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
