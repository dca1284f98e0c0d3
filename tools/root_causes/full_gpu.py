"""A request that failed on a GPU that was already full: what filled the card matters, not the last allocation."""

from __future__ import annotations

from ..log_cues import LogCues
from ..memory.schema import MemoryEstimate
from ..report import OOMReport
from ..training_setup import TrainingSetup
from ..units import format_bytes
from .facts import observed, stand_in_model, stated_micro_batch
from .scores import Scores

TRAINING_STEP = ("forward", "backward", "optimizer_step")


def gpu_already_full(report: OOMReport, setup: TrainingSetup | None, estimate: MemoryEstimate | None, s: Scores,
                     cues: LogCues | None = None) -> None:
    """A tiny request on a full GPU: what filled it matters, not the last allocation."""
    req, total, free = report.requested_bytes, report.gpu_total_bytes, report.gpu_free_bytes
    alloc = report.torch_allocated_bytes
    if req and total and alloc and alloc >= 0.8 * total and free is not None and free > 0.05 * total:
        # PyTorch already holds most of the card: with several data-parallel GPUs, each holds a full replica.
        _replicas(setup, s, f"PyTorch held {format_bytes(alloc)} of the {format_bytes(total)} GPU")
    if not (req and total) or (free is not None and free > 0.05 * total):
        return
    if req > 0.015 * total:
        # Not a few MiB: a mid-sized chunk on a full card, activations that scale with the tokens in a step.
        b = stated_micro_batch(setup)
        held = format_bytes(report.torch_allocated_bytes)
        if b and b > 1:
            s.add("batch_too_large", 1.5, f"a {format_bytes(req)} activation-sized request on a full GPU ({held} allocated) "
                                          f"at micro-batch {b}")
            s.add("seq_len_too_long", 0.7, f"a {format_bytes(req)} activation-sized request grows with the tokens per sample")
        elif setup is None or setup.model is None or b == 1:
            s.add("seq_len_too_long", 1.0, f"a {format_bytes(req)} request on a full GPU ({held} allocated): "
                                           "activation-sized, it grows with the tokens per step")
            s.add("batch_too_large", 0.7, f"a {format_bytes(req)} activation-sized request on a full GPU")
        _replicas(setup, s, f"the GPU was full ({held} allocated)")
        return
    held = report.torch_allocated_bytes or report.process_used_bytes
    filled = f"the GPU was already full ({format_bytes(held)} allocated) when a small {format_bytes(req)} request failed" if held \
        else f"a small {format_bytes(req)} request failed on a full GPU"
    in_step = report.phase in TRAINING_STEP   # a frame of the step: loading (or a merge) was over
    adapter = _adapter_run(setup, cues)
    unsized = setup is None or setup.model is None or estimate is None or stand_in_model(setup)
    if unsized and adapter is not None:
        # Adapter training: frozen 16-bit weights and tiny optimizer states; if the weights alone filled the card the
        # run would have died loading, so what filled it during training is the activations of the step
        b = stated_micro_batch(setup)
        s.add("seq_len_too_long", 2.0 if not b or b == 1 else 1.4,
              filled + f", in an adapter run ({adapter}): frozen weights and small states leave the activations as "
                       "what filled it")
        s.add("batch_too_large", 1.2 if not b or b == 1 else 2.2,
              filled + (f": activations scale with the micro-batch ({b})" if b and b > 1 else
                        ": activations scale with the micro-batch"))
        if not in_step:
            s.add("model_load_oom", 1.1, filled + ": or a second copy of the weights, as merging the adapter into them "
                                                  "for a save makes")
        s.add("weights_exceed_gpu", 1.0, filled)
        return
    if setup is None or setup.model is None or estimate is None:
        s.add("weights_exceed_gpu", 2.5, filled + ": the model states (weights first) fill the card")
        _replicas(setup, s, filled)
        s.add("full_ft_model_states", 1.0 if not setup or setup.method == "full" else 0.2, filled)
        if not in_step:
            s.add("model_load_oom", 0.8, filled)
        return
    s.add("weights_exceed_gpu", 0.5, filled)


def _adapter_run(setup: TrainingSetup | None, cues: LogCues | None) -> str | None:
    """Where the input says this is adapter training (a log line, or a LoRA/QLoRA method the config states)."""
    if cues is not None and cues.adapters is not None:
        return f"line {cues.adapters.line}: {cues.adapters.text[:60]}"
    if setup is not None and setup.method in ("lora", "qlora") and observed(setup, "method"):
        return f"{setup.method} per {setup.provenance['method'].detail or setup.provenance['method'].origin}"
    return None


def _replicas(setup: TrainingSetup | None, s: Scores, filled: str) -> None:
    """Several GPUs without ZeRO/FSDP: each one holds a full replica of the model states."""
    if setup is None or setup.num_gpus <= 1 or not observed(setup, "num_gpus") or setup.fsdp:
        return
    if setup.zero_stage == 0 or (setup.zero_stage < 3 and observed(setup, "zero_stage")):
        s.add("zero_stage_insufficient", 1.5, f"{filled}, and each of the {setup.num_gpus} GPUs keeps a full replica "
                                              f"(ZeRO-{setup.zero_stage}, no FSDP): sharding would divide the model states")
