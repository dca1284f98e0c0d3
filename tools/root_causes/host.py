"""Host (CPU RAM) running out: offloaded states, per-rank model loading, the calculator's host estimate, or a
bus error that is /dev/shm rather than memory."""

from __future__ import annotations

from ..memory.schema import MemoryEstimate
from ..report import OOMReport
from ..training_setup import TrainingSetup
from ..units import format_bytes
from .scores import Scores


def host_memory(report: OOMReport, setup: TrainingSetup | None, estimate: MemoryEstimate | None, s: Scores) -> None:
    """Host RAM ran out: offload, per-rank loading and the calculator's host estimate say why; a bus error is not memory."""
    bus = next((e for e in report.related_errors if e.kind == "sigbus"), None)
    if bus is not None or "bus error" in (report.message or "").lower():
        # A worker killed by SIGBUS is shared memory (/dev/shm), not RAM or GPU memory running out.
        line = f" (log line {bus.line})" if bus is not None else ""
        s.add("not_oom", 8, f"the process died of a bus error{line}: /dev/shm too small for DataLoader workers "
                            "(raise --shm-size or use fewer workers); not a memory budget problem")
        return
    what = report.exit_signal or (report.message or "host allocation failure")
    s.add("offload_host_ram", 6, f"host (CPU) memory ran out: {what}")
    used, have = report.host_ram_used_bytes, report.host_ram_total_bytes
    if used and have and used >= 0.9 * have:
        # The log's own RAM readings (DeepSpeed's "CPU Virtual Memory") show the host at its limit before the kill.
        s.add("offload_host_ram", 1.5, f"the log shows host RAM at {format_bytes(used)} of {format_bytes(have)} ({used / have:.0%})")
    if report.phase in ("model_loading", "lora_merge", "checkpoint_save"):
        ranks = setup.num_gpus if setup else 1
        extra = f"; {ranks} ranks each load a copy" if ranks > 1 else ""
        s.add("model_load_oom", 5, f"the host ran out while {report.phase.replace('_', ' ')}{extra}")
    if setup is not None and (setup.offload_optimizer or setup.offload_param):
        parts = [n for n, on in (("optimizer", setup.offload_optimizer), ("parameters", setup.offload_param)) if on]
        s.add("offload_host_ram", 2, f"ZeRO-{setup.zero_stage} offloads the {' and '.join(parts)} to CPU RAM")
        if setup.method == "full":
            s.add("full_ft_model_states", 1.5, "full fine-tuning: fp32 master weights, gradients and Adam states all live in the offloaded RAM")
    if estimate is not None and estimate.host_bytes:
        have = setup.host_ram_bytes if setup else None
        if have:
            verdict = "more than" if estimate.host_bytes > have else "close to" if estimate.host_bytes > 0.8 * have else "within"
            pts = 2.5 if estimate.host_bytes > have else 1.0 if estimate.host_bytes > 0.8 * have else 0
            s.add("offload_host_ram", pts, f"the calculator puts host RAM needs at {format_bytes(estimate.host_bytes)}, "
                                           f"{verdict} the {format_bytes(have)} available")
        elif estimate.host_fits is False:
            s.add("offload_host_ram", 2, f"the calculator puts host RAM needs at {format_bytes(estimate.host_bytes)}: more than the host has")
