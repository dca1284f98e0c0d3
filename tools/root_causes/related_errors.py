"""Errors beside (or instead of) the memory error: no OOM at all, a device-side assert, unsupported dtypes,
missing flash-attn, bitsandbytes misuse. Each names a cause, strongly when nothing ran out."""

from __future__ import annotations

from ..described_oom import DescribedOOM
from ..labels import Label
from ..log_cues import Cue, LogCues, is_aftermath
from ..report import OOMReport
from ..training_setup import TrainingSetup
from .facts import observed
from .request_size import impossible_request
from .signals import Signal, discount, support
from .weights import QUOTE_LONG, QUOTE_SHORT


# the rules that say the paste shows no failure at all (then the rest of the evidence is what the failure left)
NO_FAILURE_RULES = frozenset({"no_failure_shown", "traceback_cut"})


def not_a_memory_error(report: OOMReport, failure: Cue | None = None,
                       oom_said: DescribedOOM | None = None, cut: Cue | None = None) -> list[Signal]:
    """Nothing ran out: name what the log shows instead (a bus error, SIGFPE, no OOM message at all). `failure` is the
    last failure the log shows (log_cues): another error is evidence the run died of something else; a paste with no
    failure at all (progress bars, a fragment) may just have lost the error, and says much less. `oom_said` is the
    words' own statement of a memory failure: beside another error it weakens that error's case (the words may tell
    of an earlier run, or of the failure the shown error followed), so it is a rule of its own. `cut` is the last
    frame of a traceback the paste stops in: its error was cut off, which says less of "nothing ran out" than a
    paste that ran on without one (its own rule, its own weight)."""
    signal = (report.exit_signal or "").upper()
    if "SIGBUS" in signal or "-7" in signal:
        return [support(Label.not_oom, "sigbus_exit", f"the launcher reports {report.exit_signal} (bus error): usually "
                                                      "/dev/shm too small in a container, not GPU memory")]
    if "SIGFPE" in signal or "-8" in signal:
        return [support(Label.not_oom, "sigfpe_exit", f"the launcher reports {report.exit_signal} (floating-point "
                                                      "exception): a library bug (e.g. cuBLAS on H20), not memory")]
    if report.kind == "not_oom" and failure is None and cut is not None:
        return [support(Label.not_oom, "traceback_cut",
                        f"the paste stops inside a traceback (line {cut.line}: {cut.text[:QUOTE_SHORT]}): Python prints "
                        "the error after the frames, so it was cut off; paste the traceback's last line")]
    if report.kind == "not_oom" and failure is None:
        return [support(Label.not_oom, "no_failure_shown",
                        "the log shows no failure at all, and no out-of-memory message: the error may be missing "
                        "from the paste")]
    if report.kind == "not_oom" and is_aftermath(failure):
        return [support(Label.not_oom, "no_failure_shown",
                        f"the log shows only a dead rank's aftermath (line {failure.line}: {failure.text[:QUOTE_SHORT]}), "
                        "not why it died: the failing rank's own error is missing from the paste")]
    if report.kind == "not_oom" and oom_said is not None:
        return [support(Label.not_oom, "other_error_oom_said",
                        f"no out-of-memory message (CUDA, host, NCCL, cuBLAS) was found in the log; it fails with "
                        f"something else (line {failure.line}: {failure.text[:QUOTE_SHORT]}), although the words say "
                        f"memory ran out (line {oom_said.line}: {oom_said.text[:QUOTE_SHORT]})")]
    if report.kind == "not_oom":
        return [support(Label.not_oom, "no_oom_message",
                        f"no out-of-memory message (CUDA, host, NCCL, cuBLAS) was found in the log; it fails with "
                        f"something else (line {failure.line}: {failure.text[:QUOTE_SHORT]})")]
    return [support(Label.not_oom, "error_without_oom",
                    "the log shows an error met while fixing memory, but no out-of-memory message")]


def memory_error_shown(report: OOMReport) -> list[Signal]:
    """The log prints an out-of-memory error (not only words that describe one) and nothing beside it says the CUDA
    context broke: "no memory error" (not_oom) is what the log contradicts, whatever the neighbours' words say (an
    OOM's traceback shares "CUDA_LAUNCH_BLOCKING" and "device-side assertions" with an illegal memory access)."""
    described = any(e.fact == "described_oom" for e in report.evidence)
    broken = any(RELATED.get(e.kind, (None,))[0] == Label.not_oom for e in report.related_errors)
    if not report.is_memory_error or described or broken or impossible_request(report):
        return []
    return [discount(Label.not_oom, "memory_error_shown",
                     f"but the log prints an out-of-memory error ({report.kind}): something did run out")]


def cublas_after_assert(report: OOMReport, index_error: Cue | None = None) -> list[Signal]:
    """A cuBLAS allocation failure after a device-side assert, or beside an out-of-range index: the broken CUDA context,
    not memory (the first cuBLAS call after an embedding lookup past the vocabulary fails to create its handle)."""
    assert_line = next((e.line for e in report.related_errors if e.kind == "device_side_assert"), None)
    where = (f"follows a device-side assert (log line {assert_line})" if assert_line is not None else
             f"comes with an out-of-range index (line {index_error.line}: {index_error.text[:QUOTE_SHORT]})" if index_error
             else "comes without any allocator numbers")
    return [support(Label.not_oom, "cublas_after_assert",
                    f"the cuBLAS allocation failure {where}: usually an out-of-range index (token id, label) that broke "
                    "the CUDA context, not memory"),
            *related_errors(report, memory_error=False)]


RELATED: dict[str, tuple[Label, str]] = {
    "bnb_quantization_kwargs": (Label.quantization_setup, "bitsandbytes: load_in_4bit/8bit passed together with quantization_config"),
    "dtype_not_implemented": (Label.dtype_unsupported, "an op is not implemented for this dtype (version incompatibility)"),
    "flash_attn_missing": (Label.eager_attention, "flash-attn is not installed: attention falls back to a slower, memory-hungrier path"),
    "flash_attn_unused": (Label.eager_attention, "the log warns that FlashAttention-2 is not used"),
    "weights_offloaded": (Label.weights_exceed_gpu, "the device map offloaded part of the weights off the GPU (CPU or disk): "
                          "they did not fit the memory it may use there"),
    "device_side_assert": (Label.not_oom, "a device-side assert fired: an allocation failure after it is not a memory budget problem"),
    "sigbus": (Label.not_oom, "SIGBUS: shared memory (/dev/shm) exhausted, not GPU memory"),
    "sigfpe": (Label.not_oom, "SIGFPE: a library bug, not memory"),
}


def related_errors(report: OOMReport, *, memory_error: bool) -> list[Signal]:
    """Each kind of related error once: decisive without an OOM, a contributing cause beside one."""
    out: list[Signal] = []
    seen: set[str] = set()
    for err in report.related_errors:
        if err.kind not in RELATED or err.kind in seen:
            continue
        seen.add(err.kind)
        label, meaning = RELATED[err.kind]
        # weights offloaded off the GPU speak of the weights' size whether or not an OOM followed: a rule of their
        # own, not the generic related error's (whose fitted weight is shared with setup errors that often mean no OOM)
        rule = "weights_offloaded" if err.kind == "weights_offloaded" else _related_rule(label, memory_error)
        out.append(support(label, rule, f"{meaning} (log line {err.line})"))
    return out


def _related_rule(label: Label, memory_error: bool) -> str:
    """The rule a related error fires: alone it decides; beside an OOM, missing flash-attn weighs most, an assert least."""
    if not memory_error:
        return "related_error_alone"
    if label == Label.eager_attention:
        return "related_attention_beside_oom"
    if label == Label.not_oom:
        return "related_not_oom_beside_oom"
    return "related_error_beside_oom"


def dtype_support(report: OOMReport, setup: TrainingSetup | None, cues: LogCues | None, *, memory_error: bool) -> list[Signal]:
    """A dtype the GPU or an op cannot run: an error to fix before memory, or the whole story when nothing ran out."""
    out: list[Signal] = []
    if cues is not None and cues.dtype_error is not None:
        # Without an OOM, a named dtype error is the specific diagnosis (it outranks the generic not_oom).
        out.append(support(Label.dtype_unsupported, "dtype_error_beside_oom" if memory_error else "dtype_error_alone",
                           f"the log shows a dtype error (line {cues.dtype_error.line}: {cues.dtype_error.text[:QUOTE_LONG]})"))
    gpu = setup.gpu if setup is not None else None
    if gpu is not None and not gpu.bf16 and "bf16" in setup.precision and observed(setup, "precision") \
            and observed(setup, "gpu"):
        # bf16 needs compute capability 8.0 (Ampere); V100 / T4 emulate it slowly or refuse it (PyTorch, vLLM checks).
        out.append(support(Label.dtype_unsupported, "no_bf16_beside_oom" if memory_error else "no_bf16_alone",
                           f"{setup.precision} is asked for on a {gpu.name}, which has no native bf16 (pre-Ampere): "
                           "use fp16 or fp32"))
    return out
