"""A request that failed on a GPU that was already full: what filled the card matters, not the last allocation."""

from __future__ import annotations

from ..labels import Label
from ..frameworks import KV_POOL_ENGINES
from ..log_cues import LogCues, pool_engine
from ..memory.schema import MemoryEstimate
from ..report import OOMReport
from ..training_setup import ADAPTER_METHODS, TrainingSetup
from ..units import format_bytes
from .budget import weights_in_16_bit
from .facts import observed, stand_in_model, stated_micro_batch
from .signals import Signal, support
from .weights import FULL_SHARDING, QUOTE_SHORT, THRESHOLDS, Thresholds

TRAINING_STEP = ("forward", "backward", "optimizer_step")
OUTSIDE_STEP = ("model_loading", "lora_merge", "checkpoint_save")


def _weights_cannot_load(setup: TrainingSetup | None, estimate: MemoryEstimate | None, total: int) -> bool:
    """The sized model's 16-bit weights exceed the card even split over every GPU of the run: an engine reserves its
    KV cache only after the weights are in (and a profiling run), so no cache can be what filled this card."""
    if setup is None or estimate is None or setup.model is None:
        return False
    return weights_in_16_bit(setup, estimate) > total * max(setup.num_gpus, 1)


def gpu_already_full(report: OOMReport, setup: TrainingSetup | None, estimate: MemoryEstimate | None,
                     cues: LogCues | None = None, th: Thresholds = THRESHOLDS, state_buffer: bool = False) -> list[Signal]:
    """A tiny request on a full GPU: what filled it matters, not the last allocation. `state_buffer`: the request is
    a parameter or state buffer (a ZeRO-3 gather, sub group or partition), never an activation-sized chunk."""
    out: list[Signal] = []
    req, total, free = report.requested_bytes, report.gpu_total_bytes, report.gpu_free_bytes
    alloc = report.torch_allocated_bytes
    free_share = th["full_gpu_free_share"]
    if req and total and alloc and alloc >= th["torch_holds_share"] * total and free is not None and free > free_share * total:
        # PyTorch already holds most of the card: with several data-parallel GPUs, each holds a full replica.
        out += _replicas(setup, f"PyTorch held {format_bytes(alloc)} of the {format_bytes(total)} GPU")
    if not (req and total) or (free is not None and free > free_share * total):
        return out
    if req > th["activation_chunk_share"] * total:
        return out + ([] if state_buffer else _activation_chunk(report, setup, req))
    held = report.torch_allocated_bytes or report.process_used_bytes
    filled = f"the GPU was already full ({format_bytes(held)} allocated) when a small {format_bytes(req)} request failed" if held \
        else f"a small {format_bytes(req)} request failed on a full GPU"
    in_step = report.phase in TRAINING_STEP   # a frame of the step: loading (or a merge) was over
    engine = pool_engine(report, cues)
    if engine is not None and not _weights_cannot_load(setup, estimate, total):
        # the engine filled the card on purpose: its KV cache takes the share KV_POOL_ENGINES names
        return out + [support(Label.generation_kv_cache, "full_gpu_engine_pool",
                              f"{filled}: {engine} fills the card with its KV cache by design "
                              f"({KV_POOL_ENGINES[engine]}), so what is left for the step is what ran out")]
    adapter = _adapter_run(setup, cues)
    unsized = setup is None or setup.model is None or estimate is None or stand_in_model(setup)
    if unsized and adapter is not None:
        return out + _adapter_activations(setup, filled, adapter, in_step)
    if setup is None or setup.model is None or estimate is None:
        out.append(support(Label.weights_exceed_gpu, "full_gpu_states",
                           filled + ": the model states (weights first) fill the card"))
        out += _replicas(setup, filled)
        # full fine-tuning's states are a training run's (inference keeps none): likely only when the method may be full
        full_likely = setup is None or (setup.method == "full" and setup.workload == "train")
        out.append(support(Label.full_ft_model_states,
                           "full_gpu_full_ft" if full_likely else "full_gpu_full_ft_unlikely", filled))
        if report.phase in OUTSIDE_STEP:   # a frame or the words say it was loading, merging or saving
            out.append(support(Label.model_load_oom, "full_gpu_loading", filled))
        return out
    out.append(support(Label.weights_exceed_gpu, "full_gpu_sized", filled))
    return out


def _activation_chunk(report: OOMReport, setup: TrainingSetup | None, req: int) -> list[Signal]:
    """Not a few MiB: a mid-sized chunk on a full card, activations that scale with the tokens in a step."""
    out: list[Signal] = []
    b = stated_micro_batch(setup)
    held = format_bytes(report.torch_allocated_bytes)
    if report.phase == "generation":
        # generating, what grows with the tokens is the KV cache (and the prompt's prefill), not a training step's
        # saved activations
        return [support(Label.generation_kv_cache, "full_gpu_chunk_generation",
                        f"a {format_bytes(req)} request while generating on a full GPU ({held} allocated): the KV "
                        "cache and the prompt's activations grow with the tokens")]
    if b and b > 1:
        out.append(support(Label.batch_too_large, "full_gpu_chunk_batch",
                           f"a {format_bytes(req)} activation-sized request on a full GPU ({held} allocated) "
                           f"at micro-batch {b}"))
        out.append(support(Label.seq_len_too_long, "full_gpu_chunk_tokens",
                           f"a {format_bytes(req)} activation-sized request grows with the tokens per sample"))
    elif setup is None or setup.model is None or b == 1:
        out.append(support(Label.seq_len_too_long, "full_gpu_chunk_length",
                           f"a {format_bytes(req)} request on a full GPU ({held} allocated): "
                           "activation-sized, it grows with the tokens per step"))
        out.append(support(Label.batch_too_large, "full_gpu_chunk_batch_unstated",
                           f"a {format_bytes(req)} activation-sized request on a full GPU"))
    return out + _replicas(setup, f"the GPU was full ({held} allocated)")


def _adapter_activations(setup: TrainingSetup | None, filled: str, adapter: str, in_step: bool) -> list[Signal]:
    """Adapter training: frozen 16-bit weights and tiny optimizer states; if the weights alone filled the card the
    run would have died loading, so what filled it during training is the activations of the step."""
    b = stated_micro_batch(setup)
    batched = bool(b and b > 1)
    out = [support(Label.seq_len_too_long, "full_gpu_adapter_length_batched" if batched else "full_gpu_adapter_length",
                   filled + f", in an adapter run ({adapter}): frozen weights and small states leave the activations as "
                            "what filled it"),
           support(Label.batch_too_large, "full_gpu_adapter_batch" if batched else "full_gpu_adapter_batch_unstated",
                   filled + (f": activations scale with the micro-batch ({b})" if batched else
                             ": activations scale with the micro-batch"))]
    if not in_step:
        out.append(support(Label.model_load_oom, "full_gpu_adapter_merge",
                           filled + ": or a second copy of the weights, as merging the adapter into them for a save makes"))
    out.append(support(Label.weights_exceed_gpu, "full_gpu_adapter_weights", filled))
    return out


def _adapter_run(setup: TrainingSetup | None, cues: LogCues | None) -> str | None:
    """Where the input says this is adapter training (a log line, or a LoRA/QLoRA method the config states)."""
    if cues is not None and cues.adapters is not None:
        return f"line {cues.adapters.line}: {cues.adapters.text[:QUOTE_SHORT]}"
    if setup is not None and setup.method in ADAPTER_METHODS and observed(setup, "method"):
        return f"{setup.method} per {setup.provenance['method'].detail or setup.provenance['method'].origin}"
    return None


def _replicas(setup: TrainingSetup | None, filled: str) -> list[Signal]:
    """Several GPUs without ZeRO/FSDP: each one holds a full replica of the model states."""
    if setup is None or setup.num_gpus <= 1 or not observed(setup, "num_gpus") or setup.fsdp:
        return []
    if setup.zero_stage == 0 or (setup.zero_stage < FULL_SHARDING and observed(setup, "zero_stage")):
        return [support(Label.zero_stage_insufficient, "replicas_fill_gpu",
                        f"{filled}, and each of the {setup.num_gpus} GPUs keeps a full replica "
                        f"(ZeRO-{setup.zero_stage}, no FSDP): sharding would divide the model states")]
    return []
