"""The setup and ranked causes `ask-oom fix` plans from: with a log, the parser, the setup assembler
and the root-cause ranker; without one, causes read off the calculator's breakdown (which
component is over the budget and which setting makes it so)."""

from __future__ import annotations

from typing import Any

from ..errors import InputError
from ..gpus import GPUSpec, lookup_gpu
from ..labels import RootCause
from ..memory.schema import MemoryEstimate
from ..training_setup import TrainingSetup
from ..units import GiB, format_bytes
from .mapping import apply_config_to_setup
from .schema import ConfigDocument


def observed_peak(report: Any) -> int | None:
    """What the failing run held at the OOM: PyTorch's allocation plus the request that failed."""
    if report is None or getattr(report, "kind", None) not in ("cuda_oom", "hip_oom"):
        return None
    if not report.requested_bytes or report.torch_allocated_bytes is None:
        return None
    return report.torch_allocated_bytes + report.requested_bytes


def causes_from_estimate(setup: TrainingSetup, est: MemoryEstimate | None) -> list[RootCause]:
    """Rank causes from the breakdown alone: the components that push the peak over the budget."""
    if est is None or (est.fits and est.host_fits is not False):
        return []   # nothing ran out: there is no cause to rank
    parts = est.breakdown.as_dict()
    budget = est.budget_bytes or est.peak_bytes
    peak = max(est.peak_bytes, 1)
    scores: dict[str, tuple[float, str]] = {}

    def add(label: str, share: float, why: str) -> None:
        if share > scores.get(label, (0.0, ""))[0]:
            scores[label] = (min(share, 1.0), why)

    weights = parts.get("weights", 0)
    states = weights + parts.get("gradients", 0) + parts.get("optimizer_states", 0) + parts.get("master_weights", 0)
    acts = parts.get("activations", 0) + parts.get("attention_scores", 0) + parts.get("logits_and_loss", 0) + parts.get("vision_activations", 0)
    if weights > budget:
        add("weights_exceed_gpu", 0.95, f"weights alone are {format_bytes(weights)} against a {format_bytes(budget)} budget")
    if setup.method in ("full", "freeze") and states > 0.5 * budget:
        add("full_ft_model_states", states / peak, f"weights + gradients + optimizer states: {format_bytes(states)}")
        if setup.num_gpus > 1 and setup.zero_stage < 3:
            add("zero_stage_insufficient", 0.6 * states / peak, f"ZeRO-{setup.zero_stage} over {setup.num_gpus} GPUs leaves {format_bytes(states)} per GPU")
    if parts.get("attention_scores", 0) > 0.1 * peak and setup.attn_implementation == "eager":
        add("eager_attention", parts["attention_scores"] / peak, f"eager attention scores: {format_bytes(parts['attention_scores'])}")
    if parts.get("logits_and_loss", 0) > 0.15 * peak:
        add("logits_large_vocab", parts["logits_and_loss"] / peak, f"logits and loss: {format_bytes(parts['logits_and_loss'])}")
    if parts.get("vision_activations", 0) > 0.1 * peak:
        add("vision_tokens", parts["vision_activations"] / peak, f"vision activations: {format_bytes(parts['vision_activations'])}")
    if acts > 0.3 * peak:
        if not setup.gradient_checkpointing:
            add("no_gradient_checkpointing", 0.9 * acts / peak, f"activations {format_bytes(acts)} with gradient checkpointing off")
        if setup.seq_len >= 8192:
            add("seq_len_too_long", acts / peak, f"{setup.seq_len} tokens per sample drive {format_bytes(acts)} of activations")
        elif setup.micro_batch > 1:
            add("batch_too_large", acts / peak, f"micro-batch {setup.micro_batch} drives {format_bytes(acts)} of activations")
        else:
            add("seq_len_too_long", 0.8 * acts / peak, f"{setup.seq_len} tokens per sample drive {format_bytes(acts)} of activations")
    if est.host_fits is False:
        add("offload_host_ram", 0.9, f"host RAM needed {format_bytes(est.host_bytes)}")
    ranked = sorted(scores.items(), key=lambda kv: -kv[1][0])
    return [RootCause(label=label, score=round(score, 3), why=[why]) for label, (score, why) in ranked]


def setup_and_causes(doc: ConfigDocument, log_text: str | None, *, gpu: str | None = None,
                     gpu_memory_gib: float | None = None, num_gpus: int | None = None,
                     model_config_json: str | None = None, host_ram_gib: float | None = None,
                     margin: float = 0.9) -> tuple[TrainingSetup, list[RootCause], Any]:
    """(setup, ranked causes, parsed report or None) for one config and an optional log."""
    report = None
    setup: TrainingSetup | None = None
    if log_text:
        try:
            from ..log_parser import parse_log
        except ImportError:
            parse_log = None
        if parse_log is not None:
            report = parse_log(log_text)
        try:
            from ..setup_assembly import AssemblyRequest, assemble_setup
        except ImportError:
            assemble_setup = None
        if report is not None and assemble_setup is not None:
            req = AssemblyRequest(gpu=gpu, gpu_memory_gib=gpu_memory_gib, num_gpus=num_gpus, model_config_json=model_config_json)
            setup = assemble_setup(report, doc, req)
    if setup is None:
        setup = apply_config_to_setup(doc, TrainingSetup())
        setup = _user_facts(setup, gpu, gpu_memory_gib, num_gpus, model_config_json)
    if host_ram_gib is not None:
        setup = setup.with_fact("host_ram_bytes", int(host_ram_gib * GiB), "user", f"--host-ram {host_ram_gib:g}")
    est = _estimate(setup, margin)
    causes: list[RootCause] = []
    if report is not None:
        try:
            from ..root_causes import rank_root_causes
        except ImportError:
            rank_root_causes = None
        if rank_root_causes is not None:
            causes = [c for c in rank_root_causes(report, setup, est, []) if c.label != "not_oom"]
            refined = _eager_from_evidence(setup, causes)
            if refined is not None:   # the log shows eager attention ran: size that, then rank again
                setup = refined
                est = _estimate(setup, margin)
                causes = [c for c in rank_root_causes(report, setup, est, []) if c.label != "not_oom"]
    if not causes:
        causes = causes_from_estimate(setup, est)
    return setup, causes, report


def _estimate(setup: TrainingSetup, margin: float) -> MemoryEstimate | None:
    if setup.model is None:
        return None
    try:
        from ..memory import estimate_memory

        return estimate_memory(setup, margin=margin)
    except (ImportError, InputError):
        return None


def _eager_from_evidence(setup: TrainingSetup, causes: list[RootCause]) -> TrainingSetup | None:
    """When the ranking finds eager attention in the log (a request equal to the score matrix, a
    flash-attn fallback warning) but the setup only assumed sdpa, record eager so the calculator sizes it."""
    prov = setup.provenance.get("attn_implementation")
    if setup.attn_implementation == "eager" or (prov is not None and prov.origin != "default"):
        return None
    top = [c for c in causes[:2] if c.label == "eager_attention" and c.score >= 0.6]
    if not top:
        return None
    return setup.with_fact("attn_implementation", "eager", "derived", ("from the log: " + "; ".join(top[0].why[:1]))[:300])


def _user_facts(setup: TrainingSetup, gpu: str | None, gpu_memory_gib: float | None, num_gpus: int | None,
                model_config_json: str | None) -> TrainingSetup:
    if gpu or gpu_memory_gib:
        spec = lookup_gpu(gpu, gpu_memory_gib) if gpu else GPUSpec(name=f"GPU ({gpu_memory_gib:g} GiB)",
                                                                   memory_bytes=int(gpu_memory_gib * GiB))
        if spec is None:
            raise InputError(f"unknown GPU {gpu!r}: give its memory too (--gpu-memory GiB)")
        setup = setup.with_fact("gpu", spec, "user", f"--gpu {gpu}" if gpu else f"--gpu-memory {gpu_memory_gib:g}")
    if num_gpus is not None:
        setup = setup.with_fact("num_gpus", num_gpus, "user", f"--gpus {num_gpus}")
    if model_config_json:
        import json

        from ..memory import load_model_arch

        try:
            data = json.loads(model_config_json)
        except json.JSONDecodeError as exc:
            raise InputError(f"the model config is not valid JSON ({exc.msg} at line {exc.lineno})") from None
        if not isinstance(data, dict):
            raise InputError("the model config must be a JSON object: pass the model's config.json")
        setup = setup.with_fact("model", load_model_arch(data), "user", "--model-config")
    return setup
