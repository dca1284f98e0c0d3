"""Errors that are not out-of-memory but belong to the same troubleshooting story: the bitsandbytes
double-quantization ValueError, ops without a bf16/fp16 kernel, flash-attn missing or unused, weights that
accelerate's device map offloaded off the GPU, NCCL watchdog timeouts, device-side asserts, SIGBUS (/dev/shm) and
SIGFPE (cuBLAS on H20) crashes."""

from __future__ import annotations

import re

_DTYPE = re.compile(r"not implemented for '(BFloat16|Half|Float8\w{0,12}|ComplexHalf)'")

# kinds that alone make a log a "related_error" report; the others leave it "not_oom"
SETUP_ERROR_KINDS = frozenset({"bnb_quantization_kwargs", "dtype_not_implemented", "flash_attn_missing",
                               "flash_attn_unused", "weights_offloaded"})

# accelerate's device map (device_map="auto") places on the CPU or the disk the layers that do not fit the GPUs'
# max_memory, and says so: its warning when it dispatches ("Some parameters are on the meta device because they were
# offloaded to the cpu"), the errors of moving or using such a model (offloaded layers are meta tensors on the GPU
# side: "Cannot copy out of meta tensor", "Tensor on device meta is not on the expected device", "You can't move a model
# that has some modules offloaded"), a disk offload without a folder ("We need an `offload_dir` to dispatch this model
# according to this `device_map`, the following submodules need to be offloaded"), and bitsandbytes refusing to offload a
# quantized model ("Some modules are dispatched on the CPU or the disk").
OFFLOADED_PHRASES = ("some parameters are on the meta device", "cannot copy out of meta tensor",
              "tensor on device meta is not on the expected device", "had weights offloaded to the disk",
              "modules offloaded to cpu or disk", "dispatched on the cpu or the disk",
              "need an `offload_dir`", "need to be offloaded")


def detect_related(line: str, low: str, signal: str | None) -> str | None:
    """The RelatedError kind one line reports, or None."""
    if "kwarg" in low and "quantization_config" in low and ("load_in_4bit" in low or "load_in_8bit" in low):
        return "bnb_quantization_kwargs"
    if "not implemented for '" in low and _DTYPE.search(line):
        return "dtype_not_implemented"
    if "flash" in low:
        if ("flash_attn" in low or "flashattention" in low or "flash-attn" in low or "flash attention" in low) and (
                "not installed" in low or "no module named" in low or "not available" in low
                or "cannot be used" in low):
            return "flash_attn_missing"
        if "flash attention 2" in low and ("only supports" in low or "without specifying" in low
                                          or "not initialized on gpu" in low or "not supported" in low):
            return "flash_attn_unused"
        if "does not support flash attention" in low or "flash attention is not used" in low:
            return "flash_attn_unused"
    if any(phrase in low for phrase in OFFLOADED_PHRASES):
        return "weights_offloaded"
    if "watchdog" in low and ("timeout" in low or "timed out" in low):
        return "nccl_timeout"
    if "nccl" in low and ("timeout(ms)" in low or "timed out" in low):
        return "nccl_timeout"
    if "device-side assert triggered" in low or ("assertion" in low and "srcindex < srcselectdimsize" in low):
        return "device_side_assert"
    if signal == "SIGBUS" or "bus error" in low:
        return "sigbus"
    if signal == "SIGFPE" or "floating point exception" in low:
        return "sigfpe"
    return None
