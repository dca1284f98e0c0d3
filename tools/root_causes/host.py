"""Host (CPU RAM) running out: offloaded states, per-rank model loading, the calculator's host estimate, or a
bus error that is /dev/shm rather than memory."""

from __future__ import annotations

from ..labels import Label
from ..memory.schema import MemoryEstimate
from ..report import OOMReport
from ..training_setup import TrainingSetup
from ..units import format_bytes
from .request_size import impossible_request, impossible_request_signals
from .signals import Signal, support
from .weights import THRESHOLDS, Thresholds


def died_of_bus_error(report: OOMReport) -> bool:
    """The process died of SIGBUS (or says "bus error"): shared memory (/dev/shm), not a memory budget."""
    return any(e.kind == "sigbus" for e in report.related_errors) or "bus error" in (report.message or "").lower()


def host_memory(report: OOMReport, setup: TrainingSetup | None, estimate: MemoryEstimate | None,
                th: Thresholds = THRESHOLDS) -> list[Signal]:
    """Host RAM ran out: offload, per-rank loading and the calculator's host estimate say why; a bus error is not memory."""
    if died_of_bus_error(report):
        # A worker killed by SIGBUS is shared memory (/dev/shm), not RAM or GPU memory running out.
        bus = next((e for e in report.related_errors if e.kind == "sigbus"), None)
        line = f" (log line {bus.line})" if bus is not None else ""
        return [support(Label.not_oom, "bus_error",
                        f"the process died of a bus error{line}: /dev/shm too small for DataLoader workers "
                        "(raise --shm-size or use fewer workers); not a memory budget problem")]
    if impossible_request(report, th):
        return impossible_request_signals(report)
    what = report.exit_signal or (report.message or "host allocation failure")
    out = [support(Label.offload_host_ram, "host_oom", f"host (CPU) memory ran out: {what}")]
    used, have = report.host_ram_used_bytes, report.host_ram_total_bytes
    if used and have and used >= th["host_ram_full_share"] * have:
        # The log's own RAM readings (DeepSpeed's "CPU Virtual Memory") show the host at its limit before the kill.
        out.append(support(Label.offload_host_ram, "host_ram_at_limit",
                           f"the log shows host RAM at {format_bytes(used)} of {format_bytes(have)} ({used / have:.0%})"))
    if report.phase in ("model_loading", "lora_merge", "checkpoint_save"):
        ranks = setup.num_gpus if setup else 1
        extra = f"; {ranks} ranks each load a copy" if ranks > 1 else ""
        out.append(support(Label.model_load_oom, "host_oom_loading",
                           f"the host ran out while {report.phase.replace('_', ' ')}{extra}"))
    if setup is not None and (setup.offload_optimizer or setup.offload_param):
        out.append(support(Label.offload_host_ram, "host_offload",
                           f"ZeRO-{setup.zero_stage} offloads the {offloaded_parts(setup)} to CPU RAM"))
        if setup.method == "full":
            out.append(support(Label.full_ft_model_states, "host_offload_full_ft",
                               "full fine-tuning: fp32 master weights, gradients and Adam states all live in the "
                               "offloaded RAM"))
    if estimate is not None and estimate.host_bytes:
        have = setup.host_ram_bytes if setup else None
        if have:
            over, close = estimate.host_bytes > have, estimate.host_bytes > th["host_ram_close_share"] * have
            verdict = "more than" if over else "close to" if close else "within"
            out.append(support(Label.offload_host_ram,
                               "host_estimate_over" if over else "host_estimate_close" if close else "host_estimate_within",
                               f"the calculator puts host RAM needs at {format_bytes(estimate.host_bytes)}, "
                               f"{verdict} the {format_bytes(have)} available"))
        elif estimate.host_fits is False:
            out.append(support(Label.offload_host_ram, "host_estimate_unfit",
                               f"the calculator puts host RAM needs at {format_bytes(estimate.host_bytes)}: "
                               "more than the host has"))
    return out


def offloaded_parts(setup: TrainingSetup) -> str:
    """What ZeRO offload keeps in host RAM, in words: "optimizer states", "parameters" or both."""
    return " and ".join(n for n, on in (("optimizer states", setup.offload_optimizer), ("parameters", setup.offload_param))
                        if on)


def offloaded_without_failure(setup: TrainingSetup | None) -> list[Signal]:
    """No failure shown, and the run keeps states in host RAM: the host's OOM killer ends a process with SIGKILL, which
    prints nothing of its own (at most the shell's "Killed"), so a paste that just stops is what it leaves behind."""
    if setup is None or not (setup.offload_optimizer or setup.offload_param):
        return []
    prov = setup.provenance.get("offload_param" if setup.offload_param and not setup.offload_optimizer else "offload_optimizer")
    where = f" ({prov.detail})" if prov is not None and prov.detail else ""
    return [support(Label.offload_host_ram, "offload_no_failure_shown",
                    f"the {offloaded_parts(setup)} are offloaded to host RAM{where}, and the paste stops without an "
                    "error: a process killed by the host for memory prints nothing itself (check `dmesg` for the "
                    "OOM killer)")]
