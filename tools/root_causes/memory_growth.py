"""Memory over time (tools.memory_trend): growth across steps, or a failure only after many steps."""

from __future__ import annotations

from ..frameworks import UNCAPPED_LENGTH_FRAMEWORKS
from ..labels import Label
from ..memory.schema import MemoryEstimate
from ..memory_trend import MemoryTrend
from ..training_setup import TrainingSetup
from ..units import format_bytes
from .facts import observed
from .signals import Signal, support
from .weights import THRESHOLDS, Thresholds


def memory_over_time(trend: MemoryTrend, th: Thresholds = THRESHOLDS) -> list[Signal]:
    """Memory that rose across steps, or a failure after many good steps: something grows or stays alive."""
    out: list[Signal] = []
    if trend.growing and trend.readings:
        out.append(support(Label.memory_growth, "growth_measured",
                           f"{trend.describe()}: +{format_bytes(trend.growth_bytes)} while training, "
                           "so something stays alive or grows from step to step"))
    elif trend.growing:
        out.append(support(Label.memory_growth, "growth_said",
                           f"{trend.describe()}: memory that grows over time points at something kept alive "
                           "or growing shapes"))
    done = trend.steps_done
    if done is not None and done >= th["many_steps"]:
        where = f"{done} of {trend.total_steps} steps" if trend.total_steps else f"{done} steps"
        if not trend.growing:
            out.append(support(Label.memory_growth, "failed_after_many_steps",
                               f"the run trained {where} before it failed: the first steps fit, so memory grew "
                               "or a rare batch was larger"))
            out.append(support(Label.seq_len_too_long, "rare_long_sample",
                               f"after {where}, a longer-than-usual sample can push the peak over"))
        else:
            out.append(support(Label.memory_growth, "growth_after_many_steps", f"it failed only after {where}"))
    return out


def growth_with_images(trend: MemoryTrend, setup: TrainingSetup | None, multimodal: str | None) -> list[Signal]:
    """Memory said to climb in a vision-language run whose image size is not capped: the caching allocator keeps the
    peak of the largest image seen so far, so 'growth' is one big image's visual tokens arriving, not a leak."""
    if not trend.growing or trend.readings or not multimodal:
        return []   # measured readings that rise step after step are weighed as growth above
    if setup is not None and observed(setup, "image_max_pixels"):
        return []   # the user capped the pixels: the largest image is bounded
    return [support(Label.vision_tokens, "growth_uncapped_images",
                    f"{multimodal}, and memory is said to climb until it runs out: with the image size not "
                    "capped (max_pixels), each new largest image brings more visual tokens and the "
                    "allocator keeps that peak; cap the pixels before looking for a leak")]




def growth_without_length_cap(trend: MemoryTrend, setup: TrainingSetup | None) -> list[Signal]:
    """Memory said to climb in a run whose config caps no sequence length: each new longest sample allocates more
    (and the caching allocator keeps it), which reads as growth; without checkpointing every layer keeps its share."""
    if not trend.growing or trend.readings or setup is None or setup.model is None:
        return []
    from_config = any(p.origin == "config" for p in setup.provenance.values())
    # LLaMA-Factory (cutoff_len 2048), TRL and ms-swift truncate by default; a plain Trainer script keeps every token
    seq = setup.provenance.get("seq_len")
    if not from_config or seq is None or seq.origin != "default" or setup.packing or setup.framework not in UNCAPPED_LENGTH_FRAMEWORKS:
        return []
    out = [support(Label.seq_len_too_long, "growth_uncapped_length",
                   "memory is said to climb, and the config caps no sequence length: each new longest "
                   "sample allocates more and the allocator keeps that peak; set a maximum length")]
    if not setup.gradient_checkpointing:
        out.append(support(Label.no_gradient_checkpointing, "growth_uncapped_length_gc_off",
                           "gradient checkpointing is not on: every layer keeps the activations of "
                           "that longest sample for backward"))
    return out


def growth_explained_by_the_budget(trend: MemoryTrend, estimate: MemoryEstimate | None) -> list[Signal]:
    """Memory said to climb, in a run whose configured worst case (the full cutoff at its micro-batch) already does
    not fit: the climb is batches reaching that worst case, not a leak, so the prose weighs less (a negative weight)."""
    if not trend.growing or trend.readings or estimate is None or estimate.fits is not False:
        return []
    return [support(Label.memory_growth, "growth_within_worst_case", "")]
