"""Errors beside (or instead of) the memory error: no OOM at all, a device-side assert, unsupported dtypes,
missing flash-attn, bitsandbytes misuse. Each names a cause, strongly when nothing ran out."""

from __future__ import annotations

from ..log_cues import LogCues
from ..report import OOMReport
from ..training_setup import TrainingSetup
from .facts import observed
from .scores import Scores


def not_a_memory_error(report: OOMReport, s: Scores) -> None:
    """Nothing ran out: name what the log shows instead (a bus error, SIGFPE, no OOM message at all)."""
    signal = (report.exit_signal or "").upper()
    if "SIGBUS" in signal or "-7" in signal:
        s.add("not_oom", 8, f"the launcher reports {report.exit_signal} (bus error): usually /dev/shm too small in a container, not GPU memory")
    elif "SIGFPE" in signal or "-8" in signal:
        s.add("not_oom", 8, f"the launcher reports {report.exit_signal} (floating-point exception): a library bug (e.g. cuBLAS on H20), not memory")
    elif report.kind == "not_oom":
        s.add("not_oom", 8, "no out-of-memory message (CUDA, host, NCCL, cuBLAS) was found in the log")
    else:
        s.add("not_oom", 3, "the log shows an error met while fixing memory, but no out-of-memory message")


def cublas_after_assert(report: OOMReport, s: Scores) -> None:
    """A cuBLAS allocation failure right after a device-side assert: the broken CUDA context, not memory."""
    line = next(e.line for e in report.related_errors if e.kind == "device_side_assert")
    s.add("not_oom", 7, f"the cuBLAS allocation failure follows a device-side assert (log line {line}): usually an "
                        "out-of-range index (token id, label) that broke the CUDA context, not memory")
    related_errors(report, s, memory_error=False)


RELATED: dict[str, tuple[str, str]] = {
    "bnb_quantization_kwargs": ("quantization_setup", "bitsandbytes: load_in_4bit/8bit passed together with quantization_config"),
    "dtype_not_implemented": ("dtype_unsupported", "an op is not implemented for this dtype (version incompatibility)"),
    "flash_attn_missing": ("eager_attention", "flash-attn is not installed: attention falls back to a slower, memory-hungrier path"),
    "flash_attn_unused": ("eager_attention", "the log warns that FlashAttention-2 is not used"),
    "device_side_assert": ("not_oom", "a device-side assert fired: an allocation failure after it is not a memory budget problem"),
    "sigbus": ("not_oom", "SIGBUS: shared memory (/dev/shm) exhausted, not GPU memory"),
    "sigfpe": ("not_oom", "SIGFPE: a library bug, not memory"),
}


def related_errors(report: OOMReport, s: Scores, *, memory_error: bool) -> None:
    """Each kind of related error once: decisive without an OOM, a contributing cause beside one."""
    seen: set[str] = set()
    for err in report.related_errors:
        if err.kind not in RELATED or err.kind in seen:
            continue
        seen.add(err.kind)
        label, meaning = RELATED[err.kind]
        pts = 2.0 if memory_error else 6.0
        if label == "eager_attention" and memory_error:
            pts = 3.0
        if label == "not_oom" and memory_error:
            pts = 1.0
        s.add(label, pts, f"{meaning} (log line {err.line})")


def dtype_support(report: OOMReport, setup: TrainingSetup | None, cues: LogCues | None, s: Scores, *, memory_error: bool) -> None:
    """A dtype the GPU or an op cannot run: an error to fix before memory, or the whole story when nothing ran out."""
    if cues is not None and cues.dtype_error is not None:
        # Without an OOM, a named dtype error is the specific diagnosis (it outranks the generic not_oom).
        s.add("dtype_unsupported", 3.0 if memory_error else 9.0,
              f"the log shows a dtype error (line {cues.dtype_error.line}: {cues.dtype_error.text[:120]})")
    gpu = setup.gpu if setup is not None else None
    if gpu is not None and not gpu.bf16 and "bf16" in setup.precision and observed(setup, "precision") \
            and observed(setup, "gpu"):
        # bf16 needs compute capability 8.0 (Ampere); V100 / T4 emulate it slowly or refuse it (PyTorch, vLLM checks).
        s.add("dtype_unsupported", 2.5 if memory_error else 5.0, f"{setup.precision} is asked for on a {gpu.name}, "
                                                                  "which has no native bf16 (pre-Ampere): use fp16 or fp32")
