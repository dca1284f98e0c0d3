"""Memory on the failing GPU that is not this process's tensors: other processes, other ranks' CUDA
contexts, and buffers outside PyTorch's allocator."""

from __future__ import annotations

from ..gpus import CUDA_CONTEXT_BYTES
from ..labels import Label
from ..memory.schema import MemoryEstimate
from ..report import OOMReport
from ..training_setup import TrainingSetup
from ..units import GiB, format_bytes
from .fragmentation import unallocated_bytes
from .signals import Signal, support
from .weights import LISTED_ITEMS, THRESHOLDS, Thresholds


def other_processes(report: OOMReport, th: Thresholds = THRESHOLDS) -> list[Signal]:
    """GPU memory held outside this process's tensors: foreign processes, ranks' CUDA contexts, non-PyTorch buffers."""
    out: list[Signal] = []
    req = report.requested_bytes or 0
    total = report.gpu_total_bytes
    unalloc = unallocated_bytes(report)
    # Other processes on the same GPU: memory in use that is neither ours nor free.
    used = report.process_used_bytes
    others = [p for p in report.other_processes]
    same = th["same_process_slack"]
    if total:
        reliable = used is not None and (report.torch_allocated_bytes is None or used >= report.torch_allocated_bytes)
        if reliable and report.gpu_free_bytes is not None:
            outside = total - report.gpu_free_bytes - used
            if outside >= th["outside_memory_share"] * total:
                listed = ", ".join(f"PID {p.pid} {format_bytes(p.bytes)}" for p in others if abs(p.bytes - used) > same * total)
                reason = (f"{format_bytes(outside)} of the GPU is held outside this process ({listed or 'other processes'}); "
                          f"this process has only {format_bytes(used)}")
                out.append(support(Label.other_process, "memory_outside_process", reason))
                out.append(support(Label.other_process, "memory_outside_share", reason,
                                   min(outside / total, th["outside_share_cap"])))
                if used + req <= th["fit_alone_share"] * total:
                    out.append(support(Label.other_process, "would_fit_alone",
                                       f"alone, this process would have fit: {format_bytes(used)} in use + "
                                       f"{format_bytes(req)} requested < {th['fit_alone_share']:.0%} of {format_bytes(total)}"))
        elif used is None and (reserved := _reserved(report)) is not None and report.gpu_free_bytes is not None:
            # The old message prints no process total: this process holds PyTorch's reserved cache and one CUDA
            # context (tools.gpus.CUDA_CONTEXT_BYTES); the rest of what is not free is another process's, or this
            # process's memory outside PyTorch (a display, cuBLAS or NCCL buffers, a non-PyTorch kernel library). Its
            # own rule, weighed by the share: most of the card held elsewhere is another process. "0 bytes reserved"
            # with the card full is the plainest case: this process holds nothing yet.
            mine = reserved + CUDA_CONTEXT_BYTES
            outside = total - report.gpu_free_bytes - mine
            if outside >= th["outside_memory_share"] * total:
                out.append(support(Label.other_process, "memory_outside_reserved",
                                   f"{format_bytes(outside)} of the GPU is neither free nor in PyTorch's cache here "
                                   f"({format_bytes(total)} total - {format_bytes(report.gpu_free_bytes)} free - "
                                   f"{format_bytes(reserved)} reserved - one CUDA context)",
                                   min(outside / total, th["outside_share_cap"]) / th["outside_share_cap"]))
        elif len(others) >= th["several_processes"]:
            biggest = sorted(others, key=lambda p: -p.bytes)
            out.append(support(Label.other_process, "several_processes", "several processes share the GPU: " +
                               ", ".join(f"PID {p.pid} {format_bytes(p.bytes)}" for p in biggest)))
    small = [p for p in others if p.bytes <= th["cuda_context_max_bytes"] and
             (used is None or abs(p.bytes - used) > same * (total or GiB))]
    if small and total and sum(p.bytes for p in small) < th["cuda_contexts_max_share"] * total:
        # A few hundred MiB per foreign process is a CUDA context: other ranks touching this GPU (no set_device per
        # rank, tensors created on cuda:0), which piles up on GPU 0 (tools.gpus.CUDA_CONTEXT_BYTES).
        listed = ", ".join(f"PID {p.pid} {format_bytes(p.bytes)}" for p in small[:LISTED_ITEMS])
        several = len(small) >= th["several_processes"]
        out.append(support(Label.multi_gpu_imbalance, "cuda_contexts" if several else "cuda_context",
                           f"{listed}: CUDA-context-sized processes on this GPU, other ranks creating their context here"))
        out.append(support(Label.other_process, "cuda_contexts_memory" if several else "cuda_context_memory",
                           f"{listed} also hold memory on this GPU"))
    if used and report.torch_allocated_bytes and used >= report.torch_allocated_bytes:
        non_torch = used - report.torch_allocated_bytes - (unalloc or 0)
        if total and non_torch >= max(th["non_torch_min_bytes"], th["non_torch_min_share"] * total):
            out.append(support(Label.other_process, "outside_allocator",
                               f"{format_bytes(non_torch)} of this process's memory is outside PyTorch's allocator "
                               "(NCCL buffers, cuBLAS workspaces, another library)"))
    return out


def _reserved(report: OOMReport) -> int | None:
    """What PyTorch's allocator reserves in this process: printed (the pre-2.1 message, the memory-fraction one), or
    allocated + reserved-but-unallocated (the current message when it lists the processes but not this one's total)."""
    if report.torch_reserved_bytes is not None:
        return report.torch_reserved_bytes
    if report.torch_allocated_bytes is not None and report.torch_reserved_unallocated_bytes is not None:
        return report.torch_allocated_bytes + report.torch_reserved_unallocated_bytes
    return None


def raw_error_while_loading(report: OOMReport, setup: TrainingSetup | None, estimate: MemoryEstimate | None,
                            th: Thresholds = THRESHOLDS) -> list[Signal]:
    """"CUDA error: out of memory" (the runtime's error, not the caching allocator's message with its numbers) while the
    model is first moved to the GPU: the CUDA context or the very first allocation failed, before PyTorch held anything.
    A GPU that cannot take even that is already occupied (another job, a leftover process) when the weights are small."""
    if report.kind != "cuda_oom" or report.requested_bytes is not None or report.phase != "model_loading":
        return []
    if "cuda error: out of memory" not in (report.message or "").lower():
        return []
    total = report.gpu_total_bytes or (setup.gpu.memory_bytes if setup is not None and setup.gpu is not None else None)
    weights = estimate.breakdown.all_weights() if estimate is not None else None
    if weights and total and weights < th["small_weights_share"] * total:
        return [support(Label.other_process, "first_allocation_failed_small_weights",
                        f"the weights need only {format_bytes(weights)} of the {format_bytes(total)} GPU, yet its first "
                        "allocation failed: something else already holds the GPU (nvidia-smi shows it)")]
    return [support(Label.other_process, "raw_cuda_error_loading",
                    "the CUDA runtime's own error, not PyTorch's allocator message, at the first transfer of the "
                    "weights: the GPU may already be held by another process or a leftover run (check nvidia-smi)")]


def colocated_vllm(report: OOMReport) -> list[Signal]:
    """An OOM inside vLLM's cumem allocator (its sleep-mode memory pool) during training: the rollout engine runs on
    the trainer's GPUs (colocated RL: GRPO/PPO in verl, OpenRLHF, TRL) and claims gpu_memory_utilization of each card
    for weights and KV cache, on top of what the actor and reference models hold."""
    if "cumem_allocator" not in (report.message or "") and not any("cumem_allocator" in e.text for e in report.evidence):
        return []
    return [support(Label.other_process, "colocated_vllm",
                    "the allocation failed in vLLM's cumem allocator: a colocated rollout engine shares the GPU with the "
                    "trainer and claims its gpu_memory_utilization share (lower it)"),
            support(Label.generation_kv_cache, "colocated_vllm_kv_cache",
                    "vLLM's share is mostly KV cache sized from gpu_memory_utilization and max_model_len")]


def held_before_start(report: OOMReport, th: Thresholds = THRESHOLDS) -> list[Signal]:
    """An engine's start-up check found the GPU already part full (vLLM: "Free memory on device (31.44/47.38 GiB) on
    startup"): nothing of the run was loaded yet, so whatever is not free belongs to another process."""
    if not any(e.fact == "startup_free" for e in report.evidence) or not report.gpu_total_bytes or report.gpu_free_bytes is None:
        return []
    total, held = report.gpu_total_bytes, report.gpu_total_bytes - report.gpu_free_bytes
    if held < th["outside_memory_share"] * total:
        return []
    reason = (f"{format_bytes(held)} of the {format_bytes(total)} GPU were already in use when the engine started "
              f"({format_bytes(report.gpu_free_bytes)} free): another process holds it")
    return [support(Label.other_process, "held_before_start", reason),
            support(Label.other_process, "held_before_start_share", reason, min(held / total, th["outside_share_cap"]))]
