"""The dataset's worst batch against the GPU budget: which samples overflow, the longest that fits, the fix,
and why such a run dies after N steps rather than at once.

Every number comes from the real calculator (`estimate_memory`) on the setup with seq_len (and the image layout)
of the worst batch: padding makes a micro-batch as long as its longest sample, so the worst batch is
micro_batch x the longest sample after cutoff_len (with packing: micro_batch x cutoff_len).
"""

from __future__ import annotations

import bisect
import math
from typing import Literal

from pydantic import BaseModel, Field

from ..errors import InputError
from ..gpus import budget_bytes as gpu_budget_bytes
from ..memory.band import Band
from ..memory.band import verdict as band_verdict
from ..memory.estimator import expanded_image_tokens, arch_max_seq, estimate_memory, largest_that_fits
from ..training_setup import TrainingSetup
from ..units import GiB
from .images import PROCESSORS, image_tokens, worst_image_side
from .profile import DatasetProfile, WorstSample

CANDIDATES = 8                  # longest samples (and most image-heavy) sized with the calculator
SHOWN = 10                      # over-budget samples listed
CUTOFF_ROUND = 64               # a suggested cutoff_len is rounded down to a multiple of this (when >= 2x it)
FILTER_PREFERRED_FRACTION = 0.005  # dropping at most 0.5% of the samples is suggested first (nothing else changes)
NATIVE_KINDS = ("qwen2_vl", "qwen2_5_vl", "moonvit")
MEDIA_GRID_START = 64           # image-token levels of the fit limits: 0, 64, 128, ... (powers of two)
MIN_CAP_SIDE_UNITS = 2          # the smallest image cap suggested: 56x56 px (the Qwen2-VL processor's min_pixels)

SuggestionKind = Literal["cutoff_len", "image_max_pixels", "filter"]


class OverBudgetSample(BaseModel):
    index: int
    id: str | None = None
    source: str = ""
    tokens: int = Field(description="total tokens (text + template + image/video)")
    tokens_in_batch: int = Field(description="after cutoff_len (what the batch holds)")


class Suggestion(BaseModel):
    """One change that makes the worst batch fit, re-estimated by the calculator."""

    kind: SuggestionKind
    value: int
    detail: str
    peak_bytes: int
    upper_bytes: int
    fits: bool
    caveat: str | None = None


class OomTiming(BaseModel):
    """When a run meets its first over-budget batch: "OOM after N steps"."""

    samples: int
    over_budget: int
    samples_per_step: int = Field(description="micro_batch x world size x grad_accum (one optimizer step)")
    samples_per_micro_step: int
    steps_per_epoch: int
    first_index: int | None = Field(default=None, description="dataset position of the first over-budget sample")
    unshuffled_step: int | None = Field(default=None, description="0-based optimizer step holding it, in file order")
    shuffled_expected_step: int | None = None
    p_hit_first_step: float | None = None
    p_hit_epoch: float | None = None
    p_hit_steps: float | None = None
    steps: int | None = None
    lines: list[str] = Field(default_factory=list)


class DatasetVerdict(BaseModel):
    """The worst batch's peak against the budget, the samples over it, the largest length that fits, the fix."""

    budget_bytes: int | None
    margin: float
    micro_batch: int
    worst_length: int = Field(description="tokens per sequence of the worst batch (after cutoff; packing: cutoff_len)")
    worst_sample: OverBudgetSample | None = None
    worst_peak_bytes: int
    worst_upper_bytes: int = Field(description="the calculator's band upper edge: what `fits` is judged on")
    fits: bool | None
    verdict: Literal["fits", "borderline", "does_not_fit"] | None = Field(
        default=None, description="the calculator's band against the budget at the worst batch: fits (upper edge fits), "
        "borderline (the budget is inside the band), does_not_fit (even the lower edge is over)")
    max_fit_length: int | None = Field(default=None, description="largest sequence length whose batch fits, text-only "
                                       "samples (0: none)")
    fit_limits: list[tuple[int, int]] = Field(default_factory=list, description="(image tokens level, largest length "
                                              "that fits with that many image tokens)")
    over_budget: int = 0
    over_budget_fraction: float = 0.0
    over_budget_samples: list[OverBudgetSample] = Field(default_factory=list)
    suggestions: list[Suggestion] = Field(default_factory=list)
    primary: SuggestionKind | None = None
    timing: OomTiming | None = None
    arithmetic: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)


def worst_case(profile: DatasetProfile, setup: TrainingSetup, *, margin: float = 0.9, budget_bytes: int | None = None,
               steps: int | None = None) -> DatasetVerdict:
    """Size the dataset's worst micro-batch with the calculator and compare it to the budget (the GPU's
    capacity x margin - CUDA context, or `budget_bytes`); `steps` is the run's length for the hit probability."""
    if setup.model is None:
        raise InputError("no model architecture: the worst batch needs a model (pass --model)")
    if not (0 < margin <= 1):
        raise InputError("margin must be in (0, 1]")
    budget = budget_bytes if budget_bytes is not None else (
        gpu_budget_bytes(setup.gpu.memory_bytes, margin) if setup.gpu and setup.gpu.memory_bytes else None)
    prof, notes = _effective_profile(profile, setup)
    cutoff, packing = prof.cutoff_len, prof.packing

    cands = _candidates(prof)
    sized = [(ws, _judge(setup, prof.after_cutoff(ws.total), ws)) for ws in cands]
    worst_ws, (peak, upper) = max(sized, key=lambda t: t[1][1])
    length = prof.after_cutoff(worst_ws.total)
    fits = None if budget is None else upper <= budget
    verdict = DatasetVerdict(
        budget_bytes=budget, margin=margin, micro_batch=setup.micro_batch, worst_length=length,
        worst_sample=_named(worst_ws, prof), worst_peak_bytes=peak, worst_upper_bytes=upper, fits=fits, notes=notes,
        verdict=None if budget is None else _band_verdict(setup, length, worst_ws, upper, budget))
    verdict.arithmetic.append(
        f"worst batch = micro_batch {setup.micro_batch} x {length} tokens"
        + (" (packing: every sequence is cutoff_len)" if packing and cutoff else
           f" (sample {worst_ws.index}: {worst_ws.text_tokens} text + {worst_ws.template_tokens} template + "
           f"{worst_ws.media_tokens} image/video tokens = {worst_ws.total}"
           + (f", cut to cutoff_len {cutoff}" if cutoff and worst_ws.total > cutoff else "") + ")")
        + f" → peak {peak / GiB:.2f} GiB, band upper {upper / GiB:.2f} GiB"
        + (f" vs budget {budget / GiB:.2f} GiB" if budget is not None else ""))
    if budget is None:
        verdict.notes.append("no GPU or budget given: the worst batch is sized but not judged")
        return verdict

    limits = fit_limits(prof, setup, budget)
    verdict.max_fit_length = limits.get(0, 0)
    verdict.fit_limits = sorted(limits.items())
    verdict.arithmetic.append(_limits_line(limits, setup.micro_batch))
    if not any(limits.values()):
        verdict.notes.append("no sequence length fits: the model states alone (or one token per sample) exceed the "
                             "budget, so the dataset is not what makes this run OOM")
        return verdict
    over = over_budget_flags(prof, limits, fits)
    if fits:
        over = [False] * prof.samples  # the exactly-sized longest batches fit: the levels' rounding must not say otherwise
    else:
        for ws, (_, up) in sized:  # the exactly-sized candidates over the budget are over, whatever their level says
            if up > budget and not (prof.packing and prof.cutoff_len):
                over[ws.index] = True
    k = sum(over)
    verdict.over_budget = k
    verdict.over_budget_fraction = k / prof.samples if prof.samples else 0.0
    kept_over = [ws for ws in prof.worst if over[ws.index]] if len(over) == prof.samples else []
    verdict.over_budget_samples = [_named(ws, prof) for ws in kept_over][:SHOWN]
    verdict.timing = oom_timing(prof, setup, over, steps=steps)
    if not fits:
        verdict.suggestions = _suggestions(prof, setup, budget, limits, over, worst_ws)
        verdict.primary = _primary(verdict, worst_ws)
    return verdict


def _effective_profile(profile: DatasetProfile, setup: TrainingSetup) -> tuple[DatasetProfile, list[str]]:
    """The profile with the run's cutoff_len (the setup's stated seq_len when the profile has none) and packing."""
    notes: list[str] = []
    cutoff = profile.cutoff_len or (setup.seq_len if setup.stated("seq_len") else None)
    if cutoff != profile.cutoff_len:
        notes.append(f"cutoff_len {cutoff} taken from the setup's seq_len")
    packing = profile.packing or setup.packing
    prof = profile.model_copy(update={"cutoff_len": cutoff, "packing": packing})
    if prof.samples_with_images and setup.model is not None and setup.model.vision is None:
        notes.append("the dataset has images but the model has no vision tower: image tokens counted as text tokens")
    return prof, notes


# ---------------------------------------------------------------- sizing


def _candidates(prof: DatasetProfile) -> list[WorstSample]:
    """The longest samples after cutoff, plus the most image-heavy ones (the vision tower's memory grows with them)."""
    if not prof.worst:
        raise InputError("the profile holds no samples")
    by_len = sorted(prof.worst, key=lambda ws: (-prof.after_cutoff(ws.total), -ws.media_tokens))[:CANDIDATES]
    by_media = sorted(prof.worst, key=lambda ws: -ws.media_tokens)[:CANDIDATES // 2]
    seen: dict[int, WorstSample] = {}
    for ws in by_len + by_media:
        seen.setdefault(ws.index, ws)
    return list(seen.values())


def setup_for(setup: TrainingSetup, length: int, ws: WorstSample | None, media_tokens: int | None = None,
              items: int | None = None) -> TrainingSetup:
    """The setup of a batch whose sequences are `length` tokens with `ws`'s image layout (None: text only), or
    `media_tokens` in `items` images.

    Native-resolution towers (Qwen2-VL): images_per_sample = the image + video items and image_max_pixels chosen so
    the calculator's tokens per item (pixels / 28^2) match the sample's; fixed towers (LLaVA): the calculator
    splices 576 tokens per image in itself when the framework truncates before expanding. gpu is dropped (the
    budget is compared here), so the calculator skips its own searches.
    """
    v = setup.model.vision if setup.model else None
    media = media_tokens if media_tokens is not None else (ws.media_tokens if ws is not None else 0)
    n_items = items if items is not None else ((ws.images + ws.videos) if ws is not None else 0)
    if v is None or not n_items or not media:
        return setup.model_copy(update={"seq_len": max(1, length), "images_per_sample": 0, "video_frames": 0, "gpu": None})
    if v.kind in NATIVE_KINDS:
        per_item = math.ceil(media / n_items)
        px = per_item * (v.patch_size * max(1, v.spatial_merge_size)) ** 2
        return setup.model_copy(update={"seq_len": max(1, length), "images_per_sample": n_items, "video_frames": 0,
                                        "image_max_pixels": px, "gpu": None})
    variant = setup.model_copy(update={"images_per_sample": n_items, "video_frames": 0, "gpu": None})
    spliced = expanded_image_tokens(variant)
    return variant.model_copy(update={"seq_len": max(1, length - spliced)})


def _band_verdict(setup: TrainingSetup, length: int, ws: WorstSample, upper: int, budget: int) -> str:
    """The calculator's three-way verdict at the worst batch (its band's edges against the budget)."""
    if upper <= budget:
        return "fits"   # decided by the upper edge alone: no second estimate for the lower one
    est = estimate_memory(setup_for(setup, length, ws))
    return band_verdict(Band(lower=est.band_lower_bytes or est.peak_bytes, upper=upper), budget)


def _judge(setup: TrainingSetup, length: int, ws: WorstSample | None, media_tokens: int | None = None,
           items: int | None = None) -> tuple[int, int]:
    """(peak, band upper) bytes of the batch, from the calculator."""
    est = estimate_memory(setup_for(setup, length, ws, media_tokens, items))
    return est.peak_bytes, est.band_upper_bytes or est.peak_bytes


def media_grid(prof: DatasetProfile, setup: TrainingSetup) -> list[int]:
    """Image-token levels the limits are computed at: 0, then powers of two up to the largest sample's."""
    if setup.model is None or setup.model.vision is None or not prof.max_media_tokens:
        return [0]
    grid, m = [0], MEDIA_GRID_START
    while grid[-1] < prof.max_media_tokens:
        grid.append(m)
        m *= 2
    return grid


def fit_limits(prof: DatasetProfile, setup: TrainingSetup, budget: int) -> dict[int, int]:
    """For each image-token level M, the largest sequence length (>= M) whose micro-batch fits; 0: none does.

    The calculator is bisected at each level with the level's tokens in one image (native towers: the memory grows
    with the patches, i.e. with M) or in M / 576 images (fixed towers); a sample is then judged at the level at or
    above its own image tokens.
    """
    upper = max(arch_max_seq(setup), prof.longest_after_cutoff)
    v = setup.model.vision if setup.model else None
    per_image = v.tokens_per_image if (v is not None and v.kind not in NATIVE_KINDS and v.tokens_per_image) else None
    limits: dict[int, int] = {}
    for m in media_grid(prof, setup):
        items = (math.ceil(m / per_image) if per_image else 1) if m else 0  # fixed towers: tokens_per_image each
        best = largest_that_fits(lambda n: _judge(setup, n, None, m, items)[1] <= budget, max(1, m), upper)
        limits[m] = best if best >= max(1, m) else 0
    return limits


def _limits_line(limits: dict[int, int], micro_batch: int) -> str:
    text_only = limits.get(0, 0)
    line = (f"largest sequence that fits at micro_batch {micro_batch} (calculator, bisected): {text_only} tokens "
            "for text-only samples")
    with_media = [(m, n) for m, n in sorted(limits.items()) if m]
    if with_media:
        line += "; with image/video tokens M: " + ", ".join(f"M≤{m}: {n or 'none'}" for m, n in with_media)
    return line


def over_budget_flags(prof: DatasetProfile, limits: dict[int, int], fits: bool | None,
                      media: list[int] | None = None) -> list[bool]:
    """Per sample: is its micro-batch over budget (its length after cutoff above the limit of its image level)?
    `media` replaces the profile's per-sample image tokens (a recount under a smaller image cap)."""
    if prof.packing and prof.cutoff_len:
        return [not fits] * prof.samples  # every packed sequence is cutoff_len long
    grid = sorted(limits)
    media = media if media is not None else prof.media_totals
    base = prof.media_totals
    cutoff = prof.cutoff_len
    out: list[bool] = []
    for total, m, m0 in zip(prof.totals, media, base):
        length = total - m0 + m
        if cutoff and length > cutoff:
            length = cutoff
        level = grid[min(len(grid) - 1, bisect.bisect_left(grid, m))]
        out.append(length > limits[level])
    return out


def _named(ws: WorstSample, prof: DatasetProfile) -> OverBudgetSample:
    return OverBudgetSample(index=ws.index, id=ws.id, source=ws.source, tokens=ws.total,
                            tokens_in_batch=prof.after_cutoff(ws.total))


# ---------------------------------------------------------------- suggestions


def _suggestions(prof: DatasetProfile, setup: TrainingSetup, budget: int, limits: dict[int, int], over: list[bool],
                 worst_ws: WorstSample) -> list[Suggestion]:
    out: list[Suggestion] = []
    cut = _cutoff_suggestion(prof, setup, budget, limits, over, worst_ws)
    if cut is not None:
        out.append(cut)
    cap = _image_cap(prof, setup, budget, limits)
    if cap is not None:
        out.append(cap)
    if not (prof.packing and prof.cutoff_len):
        filt = _filter_suggestion(prof, setup, budget, limits, over)
        if filt is not None:
            out.append(filt)
    return out


def _levels(prof: DatasetProfile, limits: dict[int, int], flags: list[bool], want: bool) -> dict[int, int]:
    """Image level -> the longest sample (after cutoff) at that level among those with flag == want."""
    grid = sorted(limits)
    longest: dict[int, int] = {}
    for total, m, flag in zip(prof.totals, prof.media_totals, flags):
        if flag == want:
            level = grid[min(len(grid) - 1, bisect.bisect_left(grid, m))]
            longest[level] = max(longest.get(level, 0), prof.after_cutoff(total))
    return longest


def _cutoff_suggestion(prof: DatasetProfile, setup: TrainingSetup, budget: int, limits: dict[int, int],
                       over: list[bool], worst_ws: WorstSample) -> Suggestion | None:
    """The largest cutoff_len under the limit of every image level that has over-budget samples."""
    levels = _levels(prof, limits, over, True)
    if not levels:
        return None
    raw = min(limits[m] for m in levels)
    if raw <= 0:
        return None
    cutoff = raw // CUTOFF_ROUND * CUTOFF_ROUND if raw >= 2 * CUTOFF_ROUND else raw
    checks = [_judge(setup, cutoff, None, min(m, cutoff), 1 if m else 0) for m in levels]
    checks.append(_judge(setup, min(cutoff, worst_ws.total), worst_ws))
    peak, upper = max(checks, key=lambda c: c[1])
    truncated = sum(1 for t in prof.totals if t > cutoff)
    caveat = None
    n_img = sum(1 for m in prof.media_totals if m >= cutoff)
    if n_img:
        caveat = (f"{n_img} sample(s) have >= {cutoff} image/video tokens (up to {prof.max_media_tokens}): this cutoff_len "
                  "would cut their image tokens (image features/tokens mismatch); cap image_max_pixels too")
    return Suggestion(kind="cutoff_len", value=cutoff, peak_bytes=peak, upper_bytes=upper, fits=upper <= budget,
                      caveat=caveat,
                      detail=f"cutoff_len: {cutoff} truncates {truncated} of {prof.samples} samples "
                             f"({100 * truncated / prof.samples:.2f}%); worst batch {setup.micro_batch} x {cutoff} → "
                             f"{upper / GiB:.2f} GiB upper vs {budget / GiB:.2f} GiB")


def _filter_suggestion(prof: DatasetProfile, setup: TrainingSetup, budget: int, limits: dict[int, int],
                       over: list[bool]) -> Suggestion | None:
    """Drop the over-budget samples; the longest kept sample of each image level is re-estimated."""
    dropped = sum(over)
    if not dropped or dropped == prof.samples:
        return None
    kept = _levels(prof, limits, over, False)
    checks = [(_judge(setup, n, None, min(m, n), 1 if m else 0), n) for m, n in kept.items()]
    (peak, upper), longest = max(checks, key=lambda c: c[0][1])
    threshold = limits.get(0, 0)
    return Suggestion(kind="filter", value=threshold, peak_bytes=peak, upper_bytes=upper, fits=upper <= budget,
                      detail=f"drop the {dropped} sample(s) over the limit ({threshold} tokens for text-only samples; "
                             f"{100 * dropped / prof.samples:.3f}% of {prof.samples}); the heaviest kept batch is "
                             f"{setup.micro_batch} x {longest} tokens → {upper / GiB:.2f} GiB upper")


def _recount(prof: DatasetProfile, ws: WorstSample, cap: int) -> int:
    """A kept sample's image tokens under image_max_pixels=cap (video tokens unchanged)."""
    proc = PROCESSORS[prof.family or ""]
    media = ws.video_tokens
    for size in ws.image_sizes:
        w, h = size or (worst_image_side(cap),) * 2
        media += image_tokens(w, h, proc, max_pixels=cap, min_pixels=prof.image_min_pixels)
    return media


def _capped_media(prof: DatasetProfile, cap: int) -> list[int]:
    """Per-sample image tokens under a smaller cap: exact for the kept samples (their sizes are known), else bounded
    by items x the tokens of a square image at the cap (sides rounded up to 28 px)."""
    proc = PROCESSORS[prof.family or ""]
    unit = proc.patch_size * proc.merge_size
    per_item = (math.isqrt(cap) // unit + 1) ** 2
    exact = {ws.index: _recount(prof, ws, cap) for ws in prof.worst}
    return [exact.get(i, min(m, n * per_item)) for i, (m, n) in enumerate(zip(prof.media_totals, prof.media_items))]


def _image_cap(prof: DatasetProfile, setup: TrainingSetup, budget: int, limits: dict[int, int]) -> Suggestion | None:
    """The largest image_max_pixels (a 28-multiple square) under which no sample's batch is over its limit."""
    proc = PROCESSORS.get(prof.family or "")
    v = setup.model.vision if setup.model else None
    if (proc is None or proc.rule != "native" or v is None or not prof.samples_with_images or not prof.image_max_pixels
            or (prof.packing and prof.cutoff_len)):
        return None
    unit = proc.patch_size * proc.merge_size

    def fits(k: int) -> bool:
        return not any(over_budget_flags(prof, limits, None, _capped_media(prof, (k * unit) ** 2)))

    k_hi = math.isqrt(prof.image_max_pixels) // unit
    best = largest_that_fits(fits, MIN_CAP_SIDE_UNITS, k_hi - 1)
    if best < MIN_CAP_SIDE_UNITS:
        return None
    cap = (best * unit) ** 2
    recounted = sorted(((prof.after_cutoff(ws.text_tokens + ws.template_tokens + _recount(prof, ws, cap)), ws)
                        for ws in prof.worst), key=lambda t: -t[0])[:CANDIDATES]
    checks = [_judge(setup, n, ws, min(_recount(prof, ws, cap), n)) for n, ws in recounted]
    peak, upper = max(checks, key=lambda c: c[1])
    length, ws = recounted[0]
    side = best * unit
    return Suggestion(kind="image_max_pixels", value=cap, peak_bytes=peak, upper_bytes=upper, fits=upper <= budget,
                      detail=f"image_max_pixels: {cap} ({side}x{side}, was {prof.image_max_pixels}): the longest sample "
                             f"becomes {length} tokens ({_recount(prof, ws, cap)} image/video) → {upper / GiB:.2f} GiB upper")


def _primary(verdict: DatasetVerdict, worst_ws: WorstSample) -> SuggestionKind | None:
    """Few samples over: filter them (the rest train unchanged); image-dominated worst sample: cap the images;
    else cutoff_len (keeps every sample, truncates the long ones)."""
    fitting = {s.kind: s for s in verdict.suggestions if s.fits}
    if "filter" in fitting and verdict.over_budget_fraction <= FILTER_PREFERRED_FRACTION:
        return "filter"
    if "image_max_pixels" in fitting and worst_ws.media_tokens * 2 >= worst_ws.total:
        return "image_max_pixels"
    if "cutoff_len" in fitting and fitting["cutoff_len"].caveat is None:
        return "cutoff_len"
    return next(iter(fitting), None)


# ---------------------------------------------------------------- "OOM after N steps"


def hit_probability(n: int, k: int, seen: int) -> float:
    """P(at least one of k marked samples among the first `seen` of a random permutation of n):
    1 - C(n-k, seen) / C(n, seen)."""
    if k <= 0 or seen <= 0:
        return 0.0
    if seen > n - k:
        return 1.0
    log_none = (math.lgamma(n - k + 1) - math.lgamma(n - k - seen + 1)) - (math.lgamma(n + 1) - math.lgamma(n - seen + 1))
    return 1.0 - math.exp(log_none)


def oom_timing(prof: DatasetProfile, setup: TrainingSetup, over: list[bool], *, steps: int | None = None) -> OomTiming:
    """Where the first over-budget batch falls: in file order (step = i // (b*w*g)) and under shuffling."""
    b, w, g = setup.micro_batch, setup.num_gpus, setup.grad_accum
    per_step = b * w * g
    n = prof.samples
    k = sum(over)
    t = OomTiming(samples=n, over_budget=k, samples_per_step=per_step, samples_per_micro_step=b * w,
                  steps_per_epoch=max(1, math.ceil(n / per_step)), steps=steps)
    if k == 0:
        t.lines.append("no sample's batch is over the budget: the dataset does not OOM this setup")
        return t
    if prof.packing and prof.cutoff_len:
        t.first_index, t.unshuffled_step, t.shuffled_expected_step = 0, 0, 0
        t.p_hit_first_step = t.p_hit_epoch = 1.0
        t.lines.append(f"packing: every sequence is cutoff_len={prof.cutoff_len} tokens, over the budget: the first step OOMs")
        return t
    first = over.index(True)
    t.first_index = first
    t.unshuffled_step = first // per_step
    pos = (n + 1) / (k + 1)  # expected 1-based position of the first of k marked items in a random order
    t.shuffled_expected_step = int((pos - 1) // per_step)
    t.p_hit_first_step = hit_probability(n, k, per_step)
    t.p_hit_epoch = hit_probability(n, k, n)
    if steps:
        t.p_hit_steps = hit_probability(n, k, min(n, steps * per_step)) if steps * per_step <= n else 1.0
    t.lines += [
        f"{k} of {n} samples ({100 * k / n:.3f}%) make an over-budget micro-batch; one optimizer step takes "
        f"micro_batch {b} x world size {w} x grad_accum {g} = {per_step} samples ({t.steps_per_epoch} steps/epoch)",
        f"in file order (no shuffling: LLaMA-Factory disable_shuffling, a sequential sampler) the first is sample "
        f"{first}: step {first} // {per_step} = {t.unshuffled_step} (the progress bar shows {t.unshuffled_step + 1})",
        f"shuffled (HF Trainer's default RandomSampler): the first over-budget sample lands at position "
        f"≈ (n+1)/(k+1) = {pos:.0f}, i.e. around step {t.shuffled_expected_step}; P(hit in the first step) = "
        f"{t.p_hit_first_step:.3g}, P(hit within one epoch) = {t.p_hit_epoch:.3g}"
        + (f", P(hit within {steps} steps) = {t.p_hit_steps:.3g}" if steps else ""),
        "sorting the largest samples first makes an over-budget run fail at step 1 instead of hours in (unsloth#1624's "
        "advice; HF Trainer's group_by_length puts the longest batch first for this reason, transformers#13794)",
    ]
    return t
