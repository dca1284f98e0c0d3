"""The setup and ranked causes `ask-oom fix` plans from: with a log, the parser, the setup assembler
and the root-cause ranker; without one, causes read off the calculator's breakdown (which
component is over the budget and which setting makes it so)."""

from __future__ import annotations

from ..errors import InputError
from ..labels import RootCause
from ..memory.estimator import effective_attention
from ..memory.schema import MemoryEstimate
from ..report import OOMReport
from ..training_setup import TrainingSetup
from ..units import GiB, format_bytes
from .schema import ConfigDocument


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
    if parts.get("attention_scores", 0) > 0.1 * peak and effective_attention(setup) == "eager":
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
                     margin: float = 0.9) -> tuple[TrainingSetup, list[RootCause], OOMReport | None]:
    """(setup, ranked causes, parsed report or None) for one config and an optional log.

    The same assembler and ranker as `ask-oom diagnose`; without a log, causes come from the breakdown.
    """
    from ..log_parser import parse_log
    from ..root_causes import rank_root_causes
    from ..setup_assembly import AssemblyRequest, assemble_setup, eager_attention_from_ranking

    report = parse_log(log_text) if log_text else None
    request = AssemblyRequest(gpu=gpu, gpu_memory_gib=gpu_memory_gib, num_gpus=num_gpus, model_config_json=model_config_json)
    setup = assemble_setup(report or OOMReport(), doc, request)
    if host_ram_gib is not None:
        setup = setup.with_fact("host_ram_bytes", int(host_ram_gib * GiB), "user", f"--host-ram {host_ram_gib:g}")
    est = _estimate(setup, margin)
    causes: list[RootCause] = []
    if report is not None:
        causes = [c for c in rank_root_causes(report, setup, est, []) if c.label != "not_oom"]
        refined = eager_attention_from_ranking(setup, causes)
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
    from ..memory import estimate_memory

    try:
        return estimate_memory(setup, margin=margin)
    except InputError:   # a setup the calculator cannot size: plan from the causes alone
        return None


