"""Memory over time (tools.memory_trend): growth across steps, or a failure only after many steps."""

from __future__ import annotations

from ..memory.schema import MemoryEstimate
from ..memory_trend import MemoryTrend
from ..training_setup import TrainingSetup
from .facts import observed
from ..units import format_bytes
from .scores import Scores


def memory_over_time(trend: MemoryTrend, s: Scores) -> None:
    """Memory that rose across steps, or a failure after many good steps: something grows or stays alive."""
    if trend.growing and trend.readings:
        s.add("memory_growth", 7, f"{trend.describe()}: +{format_bytes(trend.growth_bytes)} while training, "
                                  "so something stays alive or grows from step to step")
    elif trend.growing:
        s.add("memory_growth", 4, f"{trend.describe()}: memory that grows over time points at something kept alive "
                                  "or growing shapes")
    done = trend.steps_done
    if done is not None and done >= 50:
        where = f"{done} of {trend.total_steps} steps" if trend.total_steps else f"{done} steps"
        if not trend.growing:
            s.add("memory_growth", 2, f"the run trained {where} before it failed: the first steps fit, so memory grew "
                                      "or a rare batch was larger")
            s.add("seq_len_too_long", 0.8, f"after {where}, a longer-than-usual sample can push the peak over")
        else:
            s.add("memory_growth", 1, f"it failed only after {where}")


def growth_with_images(trend: MemoryTrend, setup: TrainingSetup | None, multimodal: str | None, s: Scores) -> None:
    """Memory said to climb in a vision-language run whose image size is not capped: the caching allocator keeps the
    peak of the largest image seen so far, so 'growth' is one big image's visual tokens arriving, not a leak."""
    if not trend.growing or trend.readings or not multimodal:
        return   # measured readings that rise step after step are weighed as growth above
    if setup is not None and observed(setup, "image_max_pixels"):
        return   # the user capped the pixels: the largest image is bounded
    s.add("vision_tokens", 4.5, f"{multimodal}, and memory is said to climb until it runs out: with the image size not "
                                "capped (max_pixels), each new largest image brings more visual tokens and the "
                                "allocator keeps that peak; cap the pixels before looking for a leak")


_UNCAPPED_FRAMEWORKS = frozenset({"hf_trainer", "deepspeed_script", "other"})


def growth_without_length_cap(trend: MemoryTrend, setup: TrainingSetup | None, s: Scores) -> None:
    """Memory said to climb in a run whose config caps no sequence length: each new longest sample allocates more
    (and the caching allocator keeps it), which reads as growth; without checkpointing every layer keeps its share."""
    if not trend.growing or trend.readings or setup is None or setup.model is None:
        return
    from_config = any(p.origin == "config" for p in setup.provenance.values())
    # LLaMA-Factory (cutoff_len 2048), TRL and ms-swift truncate by default; a plain Trainer script keeps every token
    seq = setup.provenance.get("seq_len")
    if not from_config or seq is None or seq.origin != "default" or setup.packing or setup.framework not in _UNCAPPED_FRAMEWORKS:
        return
    s.add("seq_len_too_long", 5.5, "memory is said to climb, and the config caps no sequence length: each new longest "
                                   "sample allocates more and the allocator keeps that peak; set a maximum length")
    if not setup.gradient_checkpointing:
        s.add("no_gradient_checkpointing", 2.5, "gradient checkpointing is not on: every layer keeps the activations of "
                                                "that longest sample for backward")


def growth_explained_by_the_budget(trend: MemoryTrend, estimate: MemoryEstimate | None, s: Scores) -> None:
    """Memory said to climb, in a run whose configured worst case (the full cutoff at its micro-batch) already does
    not fit: the climb is batches reaching that worst case, not a leak, so the prose weighs less."""
    if not trend.growing or trend.readings or estimate is None or estimate.fits is not False:
        return
    s.add("memory_growth", -2.5, "")
