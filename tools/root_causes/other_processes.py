"""Memory on the failing GPU that is not this process's tensors: other processes, other ranks' CUDA
contexts, and buffers outside PyTorch's allocator."""

from __future__ import annotations

from ..memory.schema import MemoryEstimate
from ..report import OOMReport
from ..training_setup import TrainingSetup
from ..units import GiB, format_bytes
from .fragmentation import unallocated_bytes
from .scores import Scores


def other_processes(report: OOMReport, s: Scores) -> None:
    """GPU memory held outside this process's tensors: foreign processes, ranks' CUDA contexts, non-PyTorch buffers."""
    req = report.requested_bytes or 0
    total = report.gpu_total_bytes
    unalloc = unallocated_bytes(report)
    # Other processes on the same GPU: memory in use that is neither ours nor free.
    used = report.process_used_bytes
    others = [p for p in report.other_processes]
    if total:
        reliable = used is not None and (report.torch_allocated_bytes is None or used >= report.torch_allocated_bytes)
        if reliable and report.gpu_free_bytes is not None:
            outside = total - report.gpu_free_bytes - used
            if outside >= 0.10 * total:
                listed = ", ".join(f"PID {p.pid} {format_bytes(p.bytes)}" for p in others if abs(p.bytes - used) > 0.01 * total)
                s.add("other_process", 4 + 3 * min(outside / total, 0.5),
                      f"{format_bytes(outside)} of the GPU is held outside this process ({listed or 'other processes'}); "
                      f"this process has only {format_bytes(used)}")
                if used + req <= 0.9 * total:
                    s.add("other_process", 3, f"alone, this process would have fit: {format_bytes(used)} in use + "
                                              f"{format_bytes(req)} requested < 90% of {format_bytes(total)}")
        elif len(others) >= 2:
            biggest = sorted(others, key=lambda p: -p.bytes)
            s.add("other_process", 4, "several processes share the GPU: " + ", ".join(f"PID {p.pid} {format_bytes(p.bytes)}" for p in biggest))
    small = [p for p in others if p.bytes <= 1.5 * GiB and (used is None or abs(p.bytes - used) > 0.01 * (total or GiB))]
    if small and total and sum(p.bytes for p in small) < 0.10 * total:
        # A few hundred MiB per foreign process is a CUDA context: other ranks touching this GPU (no set_device per
        # rank, tensors created on cuda:0), which piles up on GPU 0 (tools.gpus.CUDA_CONTEXT_BYTES).
        listed = ", ".join(f"PID {p.pid} {format_bytes(p.bytes)}" for p in small[:4])
        s.add("multi_gpu_imbalance", 1.5 if len(small) >= 2 else 0.6,
              f"{listed}: CUDA-context-sized processes on this GPU, other ranks creating their context here")
        s.add("other_process", 0.8 if len(small) >= 2 else 0.4, f"{listed} also hold memory on this GPU")
    if used and report.torch_allocated_bytes and used >= report.torch_allocated_bytes:
        non_torch = used - report.torch_allocated_bytes - (unalloc or 0)
        if total and non_torch >= max(2 * GiB, 0.10 * total):
            s.add("other_process", 1.5, f"{format_bytes(non_torch)} of this process's memory is outside PyTorch's allocator "
                                        "(NCCL buffers, cuBLAS workspaces, another library)")


def raw_error_while_loading(report: OOMReport, setup: TrainingSetup | None, estimate: MemoryEstimate | None, s: Scores) -> None:
    """"CUDA error: out of memory" (the runtime's error, not the caching allocator's message with its numbers) while the
    model is first moved to the GPU: the CUDA context or the very first allocation failed, before PyTorch held anything.
    A GPU that cannot take even that is already occupied (another job, a leftover process) when the weights are small."""
    if report.kind != "cuda_oom" or report.requested_bytes is not None or report.phase != "model_loading":
        return
    if "cuda error: out of memory" not in (report.message or "").lower():
        return
    total = report.gpu_total_bytes or (setup.gpu.memory_bytes if setup is not None and setup.gpu is not None else None)
    weights = estimate.breakdown.get("weights") if estimate is not None else None
    if weights and total and weights < 0.25 * total:
        s.add("other_process", 6, f"the weights need only {format_bytes(weights)} of the {format_bytes(total)} GPU, yet "
                                  "its first allocation failed: something else already holds the GPU (nvidia-smi shows it)")
        return
    s.add("other_process", 2.5, "the CUDA runtime's own error, not PyTorch's allocator message, at the first transfer of the "
                                "weights: the GPU may already be held by another process or a leftover run (check nvidia-smi)")


def colocated_vllm(report: OOMReport, s: Scores) -> None:
    """An OOM inside vLLM's cumem allocator (its sleep-mode memory pool) during training: the rollout engine runs on
    the trainer's GPUs (colocated RL: GRPO/PPO in verl, OpenRLHF, TRL) and claims gpu_memory_utilization of each card
    for weights and KV cache, on top of what the actor and reference models hold."""
    if "cumem_allocator" not in (report.message or "") and not any("cumem_allocator" in e.text for e in report.evidence):
        return
    s.add("other_process", 4.0, "the allocation failed in vLLM's cumem allocator: a colocated rollout engine shares the "
                                "GPU with the trainer and claims its gpu_memory_utilization share (lower it)")
    s.add("generation_kv_cache", 2.5, "vLLM's share is mostly KV cache sized from gpu_memory_utilization and max_model_len")
