"""Rank the root causes of one OOM report: every evidence family turns its inputs into signals, one scorer
turns all signals into ranked causes.

The families are the signals engineers read in an OOM report (../shared/oom-signals.md): the requested size
against the setup's tensors, the allocator's numbers, other processes, the multi-GPU spread, the calculator's
breakdown against the budget, the phase and operation, memory over time, related errors, the model's kind and
the similar cases' labels. No family reads another's output: facts several need (the request matches a tensor,
the run is multimodal, a bus error) are computed once, first, and passed in. Every `why` sentence carries numbers
from the parser or the calculator.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from ..labels import Label, RootCause
from ..log_cues import LogCues
from ..memory.schema import MemoryEstimate
from ..memory_trend import MemoryTrend
from ..report import OOMReport
from ..snapshot import RankTable, Reconciliation
from ..training_setup import TrainingSetup
from .breakdown import breakdown_signals
from .budget import estimate_vs_budget, fully_trained_embeddings
from .comparison import adapters_worked, comparable_model_worked, fix_said, trigger_said
from .facts import multimodal_reason
from .fragmentation import fragmentation
from .full_gpu import gpu_already_full
from .held import held_memory
from .host import died_of_bus_error, host_memory, offloaded_without_failure
from .memory_growth import (growth_explained_by_the_budget, growth_with_images, growth_without_length_cap,
                            memory_over_time)
from .model_kind import moe_by_name, quantization, without_numbers
from .multi_gpu import device_map_split, imbalance_said, mixed_gpu_models, multi_gpu_spread, single_process_many_gpus
from .other_processes import held_before_start, colocated_vllm, other_processes, raw_error_while_loading
from .phase import PHASE_PRIOR_RULES, phase_and_operation
from .related_errors import (NO_FAILURE_RULES, cublas_after_assert, dtype_support, memory_error_shown,
                             not_a_memory_error, related_errors)
from .request_size import (gathers_parameters, request_explained, request_vs_tensors, zero3_sub_group_request,
                           zero_partition_request)
from .ruled_out import ruled_out_by_settings
from .scoring import has_evidence, score_signals
from .signals import Signal, support
from .similar_cases import labelled_report_votes, labelled_report_words, similar_case_votes
from .weights import DEFAULT_WEIGHTS, Thresholds, Weights


def rank_root_causes(
    report: OOMReport | None,
    setup: TrainingSetup | None = None,
    estimate: MemoryEstimate | None = None,
    hits: Sequence[Any] | None = None,
    trend: MemoryTrend | None = None,
    cues: LogCues | None = None,
    weights: Weights | None = None,
) -> list[RootCause]:
    """Causes ranked by evidence, primary first.

    `report` None means there is no log: the causes are read off the calculator's breakdown alone (an empty list when
    the estimate fits on the GPU and the host). `hits` are retrieval hits (objects with `.case`, or cases themselves)
    whose labels count as weak evidence; `trend` is the log's memory over time (tools.memory_trend), when the agent
    has the raw log; `cues` the log's non-numeric cues (tools.log_cues: quantization, dtype errors). `weights` is the
    table of points and thresholds (weights.DEFAULT_WEIGHTS when None). A label outside the vocabulary raises.
    """
    table = weights or DEFAULT_WEIGHTS
    return score_signals(collect_signals(report, setup, estimate, hits, trend, cues, table), table)


def collect_signals(
    report: OOMReport | None,
    setup: TrainingSetup | None = None,
    estimate: MemoryEstimate | None = None,
    hits: Sequence[Any] | None = None,
    trend: MemoryTrend | None = None,
    cues: LogCues | None = None,
    weights: Weights = DEFAULT_WEIGHTS,
    held: Reconciliation | None = None,
    ranks: RankTable | None = None,
    neighbours: Sequence[Any] | None = None,
    words: Any = None,
) -> list[Signal]:
    """Every family's signals for one report, in the order they are weighed (the inputs of `score_signals`).

    `neighbours` are the labelled public reports most like the paste (kb.reports), weighed beside the rest; `words`
    the labelled reports' word model's reading of it (kb.report_words.WordReading).
    The table matters here only through its thresholds, the choice of each label's best-matching tensor, and whether
    anything spoke at all (else the no-evidence pair is added)."""
    th = weights.thresholds
    if report is None:
        return breakdown_signals(setup, estimate, th)
    if not report.is_memory_error:
        signals = [*not_a_memory_error(report, cues.failure if cues is not None else None,
                                       cues.oom_said if cues is not None else None,
                                       cues.cut_traceback if cues is not None else None),
                   *related_errors(report, memory_error=False),
                   *dtype_support(report, setup, cues, memory_error=False)]
        if any(s.name in NO_FAILURE_RULES for s in signals):
            signals = votes_beside_the_phase(signals + failure_not_shown(report, setup, estimate, hits, trend, cues, th))
        return signals + labelled_report_votes(neighbours or []) + labelled_report_words(words, th)
    multimodal = multimodal_reason(report, setup, cues)
    signals: list[Signal] = []
    if report.kind == "host_oom":
        signals += host_memory(report, setup, estimate, th)
        if died_of_bus_error(report):
            return signals
    elif report.kind == "cublas_alloc" and (any(e.kind == "device_side_assert" for e in report.related_errors)
                                            or (cues is not None and cues.index_error is not None)):
        return cublas_after_assert(report, cues.index_error if cues is not None else None)
    else:
        signals += _gpu_memory(report, setup, estimate, cues, multimodal, weights)
    signals += phase_and_operation(report, setup, multimodal, cues, th)
    if trend is not None and (report.kind != "host_oom" or trend.said):   # host RAM said to grow is growth too
        signals += [*memory_over_time(trend, th), *growth_with_images(trend, setup, multimodal),
                    *growth_without_length_cap(trend, setup), *growth_explained_by_the_budget(trend, estimate)]
    signals += [*related_errors(report, memory_error=True), *memory_error_shown(report),
                *dtype_support(report, setup, cues, memory_error=True),
                *quantization(report, cues), *without_numbers(report, setup, cues),
                *what_the_run_already_tried(report, setup, cues, th), *similar_case_votes(hits or [], th),
                *held_memory(held, ranks)]
    signals = votes_beside_the_phase(signals)
    if not has_evidence(signals, weights):
        signals += no_specific_evidence()
    # the labelled reports always speak (they are the nearest of a fixed corpus): weighed beside the evidence, never
    # in place of the no-evidence pair
    return signals + labelled_report_votes(neighbours or []) + labelled_report_words(words, th)


def failure_not_shown(report: OOMReport, setup: TrainingSetup | None, estimate: MemoryEstimate | None,
                      hits: Sequence[Any] | None, trend: MemoryTrend | None, cues: LogCues | None,
                      th: Thresholds) -> list[Signal]:
    """A paste that shows no failure at all (a description, progress bars, a traceback cut before its error) may have
    lost the error, not avoided one: what the calculator predicts for the setup, the phase and growth the user names,
    what they say worked, and the similar cases are the evidence left."""
    multimodal = multimodal_reason(report, setup, cues)
    out = [*breakdown_signals(setup, estimate, th), *phase_and_operation(report, setup, multimodal, cues, th),
           *without_numbers(report, setup, cues), *imbalance_said(cues), *what_the_run_already_tried(report, setup, cues, th),
           *similar_case_votes(hits or [], th), *offloaded_without_failure(setup)]
    if trend is not None:
        out += [*memory_over_time(trend, th), *growth_with_images(trend, setup, multimodal),
                *growth_without_length_cap(trend, setup)]
    return out


def what_the_run_already_tried(report: OOMReport, setup: TrainingSetup | None, cues: LogCues | None,
                               th: Thresholds) -> list[Signal]:
    """What the user ran besides the failing run, or already set: a comparable model that worked, adapters that
    worked, a fix said to work, a size said to bring the error on, and the settings that rule a cause out (its fix
    already applied)."""
    return [*comparable_model_worked(setup, cues, th), *adapters_worked(cues), *fix_said(cues), *trigger_said(cues, th),
            *ruled_out_by_settings(report, setup, th)]


def _gpu_memory(report: OOMReport, setup: TrainingSetup | None, estimate: MemoryEstimate | None,
                cues: LogCues | None, multimodal: str | None, weights: Weights) -> list[Signal]:
    """The families of a GPU out-of-memory error: the request, the allocator, the GPUs, the calculator's budget."""
    th = weights.thresholds
    explained = request_explained(report, setup, estimate, th)
    sub_group = zero3_sub_group_request(report, cues.zero3_sub_group if cues is not None else None, th)
    partition = zero_partition_request(report, setup, th)
    state_buffer = bool(sub_group or partition) or gathers_parameters(report, setup)   # a state buffer, not activations
    return [*request_vs_tensors(report, setup, estimate, multimodal, weights, state_buffer),
            *sub_group, *partition, *fragmentation(report, th),
            *other_processes(report, th), *held_before_start(report, th), *raw_error_while_loading(report, setup, estimate, th), *colocated_vllm(report),
            *gpu_already_full(report, setup, estimate, cues, th, state_buffer), *multi_gpu_spread(report, setup, th),
            *single_process_many_gpus(report, setup), *device_map_split(report, setup, cues),
            *mixed_gpu_models(report, setup, cues), *imbalance_said(cues), *moe_by_name(report, setup, th),
            *estimate_vs_budget(report, setup, estimate, explained, th, model_split(setup, cues)),
            *fully_trained_embeddings(setup, th)]


def votes_beside_the_phase(signals: list[Signal]) -> list[Signal]:
    """The neighbours are retrieved with the same phase words the phase prior read: a neighbour's vote for the cause
    that prior already names is its own, weaker rule (one reading, not two)."""
    phased = {s.label for s in signals if s.name in PHASE_PRIOR_RULES}
    if not phased:
        return signals
    return [replace(s, name="similar_case_phase_agrees") if s.name == "similar_case_primary" and s.label in phased else s
            for s in signals]


def model_split(setup: TrainingSetup | None, cues: LogCues | None) -> int:
    """How many GPUs one process spreads the model over: all of the run's GPUs under a device_map, else 1."""
    if setup is None or cues is None or cues.device_map is None or setup.num_gpus < 2:
        return 1
    return setup.num_gpus


def no_specific_evidence() -> list[Signal]:
    """Nothing else spoke: the per-step activations (micro-batch, then length) are the usual suspects."""
    return [support(Label.batch_too_large, "no_evidence_batch",
                    "no specific evidence: the per-step activations (micro-batch) are the usual suspect"),
            support(Label.seq_len_too_long, "no_evidence_length",
                    "no specific evidence: the sequence length drives activations and logits")]
