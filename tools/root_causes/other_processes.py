"""Memory on the failing GPU that is not this process's tensors: other processes, other ranks' CUDA
contexts, and buffers outside PyTorch's allocator."""

from __future__ import annotations

from ..report import OOMReport
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
