"""Rank the root causes of one OOM report: every evidence family adds points and reasons to one score sheet.

The families are the signals engineers read in an OOM report (../shared/oom-signals.md): the requested size
against the setup's tensors, the allocator's numbers, other processes, the multi-GPU spread, the calculator's
breakdown against the budget, the phase and operation, memory over time, related errors, the model's kind and
the similar cases' labels. Every `why` sentence carries numbers from the parser or the calculator.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..labels import RootCause
from ..log_cues import LogCues
from ..memory.schema import MemoryEstimate
from ..memory_trend import MemoryTrend
from ..report import OOMReport
from ..training_setup import TrainingSetup
from .budget import estimate_vs_budget, fully_trained_embeddings
from .comparison import comparable_model_worked
from .facts import multimodal_reason
from .fragmentation import fragmentation
from .full_gpu import gpu_already_full
from .host import host_memory
from .memory_growth import (growth_explained_by_the_budget, growth_with_images, growth_without_length_cap,
                            memory_over_time)
from .model_kind import moe_by_name, quantization, without_numbers
from .multi_gpu import mixed_gpu_models, device_map_split, multi_gpu_spread, single_process_many_gpus
from .other_processes import colocated_vllm, other_processes, raw_error_while_loading
from .phase import phase_and_operation
from .related_errors import cublas_after_assert, dtype_support, not_a_memory_error, related_errors
from .request_size import request_vs_tensors
from .scores import Scores
from .similar_cases import similar_case_votes


def rank_root_causes(
    report: OOMReport,
    setup: TrainingSetup | None = None,
    estimate: MemoryEstimate | None = None,
    hits: Sequence[Any] | None = None,
    trend: MemoryTrend | None = None,
    cues: LogCues | None = None,
) -> list[RootCause]:
    """Causes ranked by evidence, primary first. Never raises; an empty list only for an empty report.

    `hits` are retrieval hits (objects with `.case`, or cases themselves) whose labels count as weak evidence;
    `trend` is the log's memory over time (tools.memory_trend), when the agent has the raw log; `cues` the log's
    non-numeric cues (tools.log_cues: quantization, dtype errors).
    """
    s = Scores()
    if not report.is_memory_error:
        not_a_memory_error(report, s)
        related_errors(report, s, memory_error=False)
        dtype_support(report, setup, cues, s, memory_error=False)
        return s.ranked()
    if report.kind == "host_oom":
        host_memory(report, setup, estimate, s)
        if "not_oom" in s.points:
            return s.ranked()
    elif report.kind == "cublas_alloc" and any(e.kind == "device_side_assert" for e in report.related_errors):
        cublas_after_assert(report, s)
        return s.ranked()
    else:
        request_vs_tensors(report, setup, estimate, s, multimodal_reason(report, setup, cues))
        fragmentation(report, s)
        other_processes(report, s)
        raw_error_while_loading(report, setup, estimate, s)
        colocated_vllm(report, s)
        gpu_already_full(report, setup, estimate, s, cues)
        multi_gpu_spread(report, setup, s)
        single_process_many_gpus(report, setup, s)
        device_map_split(report, setup, cues, s)
        mixed_gpu_models(report, setup, cues, s)
        moe_by_name(report, setup, s)
        estimate_vs_budget(report, setup, estimate, s)
        fully_trained_embeddings(setup, s)
    phase_and_operation(report, setup, s, multimodal_reason(report, setup, cues), cues)
    if trend is not None and (report.kind != "host_oom" or trend.said):   # host RAM said to grow is growth too
        memory_over_time(trend, s)
        growth_with_images(trend, setup, multimodal_reason(report, setup, cues), s)
        growth_without_length_cap(trend, setup, s)
        growth_explained_by_the_budget(trend, estimate, s)
    related_errors(report, s, memory_error=True)
    dtype_support(report, setup, cues, s, memory_error=True)
    quantization(report, cues, s)
    without_numbers(report, setup, cues, s)
    comparable_model_worked(setup, cues, s)
    similar_case_votes(hits or [], s)
    if not s.points:
        s.add("batch_too_large", 0.5, "no specific evidence: the per-step activations (micro-batch) are the usual suspect")
        s.add("seq_len_too_long", 0.4, "no specific evidence: the sequence length drives activations and logits")
    return s.ranked()
