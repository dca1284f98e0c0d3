"""Profile a dataset's lengths: tokens per sample (text + chat template + image/video tokens), streamed.

The profile keeps per-sample totals (for exact counts over any threshold later), the distribution, a histogram
and the longest samples with what is needed to recount them under a smaller image cap. How LLaMA-Factory cuts:
the multimodal plugin expands each <image> into its tokens *before* truncation (SupervisedDatasetProcessor:
process_messages, then infer_seqlen to cutoff_len), so image tokens count inside cutoff_len; a sample whose
kept prompt is shorter than its image tokens loses some and fails with an image features/tokens mismatch
(not an OOM). With packing every sequence is cutoff_len long.
"""

from __future__ import annotations

import heapq
import time
from array import array
from pathlib import Path

from pydantic import BaseModel, Field

from ..errors import InputError
from .images import (LLAMAFACTORY_IMAGE_MAX_PIXELS, LLAMAFACTORY_IMAGE_MIN_PIXELS, LLAMAFACTORY_VIDEO_FPS,
                     LLAMAFACTORY_VIDEO_MAXLEN, LLAMAFACTORY_VIDEO_MAX_PIXELS, VisionProcessor, image_size,
                     image_tokens, processor_for, video_tokens, worst_image_side)
from .readers import ReadStats, Sample, read_samples
from .tokens import TEMPLATE_NOTE, make_counter, template_tokens

TOP_KEPT = 256                  # longest samples kept with their details (ids, image sizes)
WORST_SHOWN = 10                # of which the report shows this many
SAMPLE_CHUNK = 2_048            # samples tokenized together
MAX_SAMPLES = 20_000_000        # stop reading (noted) after this many samples
MAX_PROFILE_SECONDS = 900.0     # stop reading (noted) after this long
MAX_IMAGE_CACHE = 200_000       # image header sizes remembered (the same image is often shared by samples)
MISSING_SHOWN = 3
DEFAULT_FAMILY = "qwen2_vl"     # images counted with Qwen2-VL's rule when no model family is given (stated)


class Distribution(BaseModel):
    """Order statistics of a per-sample count."""

    count: int = 0
    min: int = 0
    p50: int = 0
    p90: int = 0
    p99: int = 0
    max: int = 0
    mean: float = 0.0


class HistogramBin(BaseModel):
    lower: int
    upper: int
    count: int


class WorstSample(BaseModel):
    """One of the longest samples, with what is needed to recount it (image sizes) and to name it (index, id)."""

    index: int
    id: str | None = None
    source: str = ""
    text_tokens: int
    template_tokens: int
    media_tokens: int
    images: int = 0
    videos: int = 0
    image_sizes: list[tuple[int, int] | None] = Field(default_factory=list, description="(width, height); None: missing")
    video_tokens: int = 0

    @property
    def total(self) -> int:
        return self.text_tokens + self.template_tokens + self.media_tokens


class DatasetProfile(BaseModel):
    """Tokens per sample across a dataset, its longest samples, and how cutoff_len / packing shape the batches."""

    path: str
    datasets: list[str] = Field(default_factory=list)
    samples: int
    bad_records: int = 0
    bad_lines: list[str] = Field(default_factory=list)
    complete: bool = True
    token_method: str
    tokens_exact: bool = False
    total: Distribution
    text: Distribution
    media: Distribution
    histogram: list[HistogramBin] = Field(default_factory=list)
    worst: list[WorstSample] = Field(default_factory=list, description=f"the longest samples (up to {TOP_KEPT}), longest first")
    samples_with_images: int = 0
    samples_with_videos: int = 0
    images_missing: int = 0
    max_media_tokens: int = 0
    family: str | None = None
    image_max_pixels: int | None = None
    image_min_pixels: int | None = None
    video_max_pixels: int | None = None
    video_maxlen: int | None = None
    cutoff_len: int | None = None
    packing: bool = False
    truncated_samples: int = Field(default=0, description="samples longer than cutoff_len (truncated by it)")
    image_cut_samples: int = Field(default=0, description="samples whose image/video tokens alone reach cutoff_len")
    longest_after_cutoff: int = 0
    seconds: float = 0.0
    notes: list[str] = Field(default_factory=list)
    totals: list[int] = Field(default_factory=list, exclude=True, repr=False,
                              description="per-sample total tokens, in dataset order (not serialized)")
    media_totals: list[int] = Field(default_factory=list, exclude=True, repr=False)
    media_items: list[int] = Field(default_factory=list, exclude=True, repr=False,
                                   description="per-sample image + video count, in dataset order (not serialized)")

    def after_cutoff(self, total: int) -> int:
        """A sample's length in its batch: cutoff_len with packing, else the total cut at cutoff_len."""
        if self.packing and self.cutoff_len:
            return self.cutoff_len
        return min(total, self.cutoff_len) if self.cutoff_len else total


def profile_dataset(path: str | Path, *, dataset_names: list[str] | str | None = None,
                    tokenizer_dir: str | Path | None = None, model_family: str | None = None,
                    cutoff_len: int | None = None, packing: bool = False, image_max_pixels: int | None = None,
                    image_min_pixels: int | None = None, video_max_pixels: int | None = None,
                    video_fps: float | None = None, video_maxlen: int | None = None,
                    media_dir: str | Path | None = None, top_n: int = TOP_KEPT,
                    time_limit_s: float = MAX_PROFILE_SECONDS) -> DatasetProfile:
    """Stream the dataset once and profile its tokens per sample (see the module docstring for the rules)."""
    started = time.perf_counter()
    counter = make_counter(tokenizer_dir)
    proc = processor_for(model_family)
    img_max = image_max_pixels or LLAMAFACTORY_IMAGE_MAX_PIXELS
    img_min = image_min_pixels or LLAMAFACTORY_IMAGE_MIN_PIXELS
    vid_max = video_max_pixels or LLAMAFACTORY_VIDEO_MAX_PIXELS
    vid_len = video_maxlen or LLAMAFACTORY_VIDEO_MAXLEN
    stats = ReadStats()
    acc = _Accumulator(top_n=top_n)
    notes: list[str] = []
    complete = True
    chunk: list[Sample] = []
    for sample in read_samples(path, stats, dataset_names=dataset_names, media_dir=media_dir):
        chunk.append(sample)
        if len(chunk) < SAMPLE_CHUNK:
            continue
        proc = _process_chunk(chunk, counter, proc, model_family, acc, img_max, img_min, vid_max, vid_len, notes)
        chunk = []
        if acc.n >= MAX_SAMPLES or time.perf_counter() - started > time_limit_s:
            complete = False
            notes.append(f"stopped after {acc.n} samples ({'sample' if acc.n >= MAX_SAMPLES else 'time'} limit): "
                         "the profile covers only them")
            break
    if chunk:
        proc = _process_chunk(chunk, counter, proc, model_family, acc, img_max, img_min, vid_max, vid_len, notes)
    if acc.n == 0:
        raise InputError(f"no samples in {path}" + (f" ({'; '.join(stats.notes)})" if stats.notes else ""))
    return _finish(path, acc, stats, counter, proc, complete, notes, started, cutoff_len=cutoff_len, packing=packing,
                   img_max=img_max, img_min=img_min, vid_max=vid_max, vid_len=vid_len,
                   video_fps=video_fps or LLAMAFACTORY_VIDEO_FPS)


class _Accumulator:
    """Per-sample arrays and the running top-N heap (owned by one profile_dataset call)."""

    def __init__(self, top_n: int) -> None:
        self.top_n = top_n
        self.totals = array("I")
        self.texts = array("I")
        self.media = array("I")
        self.items = array("I")
        self.heap: list[tuple[int, int, WorstSample]] = []
        self.n = 0
        self.with_images = 0
        self.with_videos = 0
        self.missing = 0
        self.missing_paths: list[str] = []
        self.sizes: dict[str, tuple[int, int] | None] = {}


def _process_chunk(chunk: list[Sample], counter, proc: VisionProcessor | None, family: str | None, acc: _Accumulator,
                   img_max: int, img_min: int, vid_max: int, vid_len: int, notes: list[str]) -> VisionProcessor | None:
    text_counts = counter.count([s.text for s in chunk])
    for sample, text_tok in zip(chunk, text_counts):
        media_tok = vid_tok = 0
        sizes: list[tuple[int, int] | None] = []
        if sample.images or sample.videos:
            if proc is None:
                proc = processor_for(DEFAULT_FAMILY)
                notes.append(f"no model family given: image tokens counted with {DEFAULT_FAMILY}'s rule "
                             "(pass model_family for LLaVA-style fixed grids)")
            for ref in sample.images:
                size = _cached_size(ref, sample.media_dir, acc)
                sizes.append(size)
                w, h = size or (worst_image_side(img_max),) * 2
                media_tok += image_tokens(w, h, proc, max_pixels=img_max, min_pixels=img_min)
            for video in sample.videos:
                vid_tok += _video_tokens(video, sample.media_dir, proc, acc, vid_max, vid_len)
            media_tok += vid_tok
            acc.with_images += bool(sample.images)
            acc.with_videos += bool(sample.videos)
        tmpl = template_tokens(sample.turns)
        total = text_tok + tmpl + media_tok
        acc.totals.append(total)
        acc.texts.append(text_tok)
        acc.media.append(media_tok)
        acc.items.append(len(sample.images) + len(sample.videos))
        acc.n += 1
        if len(acc.heap) < acc.top_n or total > acc.heap[0][0]:
            ws = WorstSample(index=sample.index, id=sample.id, source=sample.source, text_tokens=text_tok,
                             template_tokens=tmpl, media_tokens=media_tok, images=len(sample.images),
                             videos=len(sample.videos), image_sizes=sizes, video_tokens=vid_tok)
            item = (total, -sample.index, ws)
            if len(acc.heap) < acc.top_n:
                heapq.heappush(acc.heap, item)
            else:
                heapq.heapreplace(acc.heap, item)
    return proc


def _cached_size(ref, media_dir: str, acc: _Accumulator) -> tuple[int, int] | None:
    key = ref if isinstance(ref, str) else None
    if key is not None and key in acc.sizes:
        return acc.sizes[key]
    size = image_size(ref, media_dir)
    if size is None:
        acc.missing += 1
        if len(acc.missing_paths) < MISSING_SHOWN:
            acc.missing_paths.append(key or "<embedded image bytes>")
    if key is not None and len(acc.sizes) < MAX_IMAGE_CACHE:
        acc.sizes[key] = size
    return size


def _video_tokens(video, media_dir: str, proc: VisionProcessor, acc: _Accumulator, vid_max: int, vid_len: int) -> int:
    """A list of frame images: their count and the first frame's size; a video file: video_maxlen frames at
    video_max_pixels (the container is not opened: the stated worst case)."""
    if isinstance(video, tuple) and video:
        size = _cached_size(video[0], media_dir, acc) or (worst_image_side(vid_max),) * 2
        return video_tokens(min(len(video), vid_len), size[0], size[1], proc, max_pixels=vid_max)
    side = worst_image_side(vid_max)
    return video_tokens(vid_len, side, side, proc, max_pixels=vid_max)


def _distribution(values: list[int]) -> Distribution:
    """Nearest-rank percentiles of already sorted values."""
    n = len(values)
    if n == 0:
        return Distribution()

    def pct(p: float) -> int:
        return values[min(n - 1, max(0, int(p * n + 0.999999) - 1))]

    return Distribution(count=n, min=values[0], p50=pct(0.5), p90=pct(0.9), p99=pct(0.99), max=values[-1],
                        mean=round(sum(values) / n, 1))


def _histogram(sorted_totals: list[int]) -> list[HistogramBin]:
    """Power-of-two bins from 128 tokens up to the longest sample."""
    import bisect

    bins: list[HistogramBin] = []
    lower = 0
    upper = 128
    top = sorted_totals[-1] if sorted_totals else 0
    while lower <= top:
        count = bisect.bisect_left(sorted_totals, upper) - bisect.bisect_left(sorted_totals, lower)
        bins.append(HistogramBin(lower=lower, upper=upper, count=count))
        lower, upper = upper, upper * 2
    return bins


def _finish(path, acc: _Accumulator, stats: ReadStats, counter, proc: VisionProcessor | None, complete: bool,
            notes: list[str], started: float, *, cutoff_len: int | None, packing: bool, img_max: int, img_min: int,
            vid_max: int, vid_len: int, video_fps: float) -> DatasetProfile:
    totals = acc.totals.tolist()
    media = acc.media.tolist()
    sorted_totals = sorted(totals)
    worst = [ws for _, _, ws in sorted(acc.heap, key=lambda t: (-t[0], -t[1]))]
    notes = list(stats.notes) + notes
    if not counter.exact:
        notes.append(f"tokens are estimated ({counter.method}); pass the model directory for exact counts")
    notes.append(TEMPLATE_NOTE)
    if stats.bad_records:
        notes.append(f"{stats.bad_records} of {stats.records} records could not be used "
                     f"({'; '.join(stats.bad_lines[:3])})")
    if acc.missing:
        notes.append(f"{acc.missing} image(s) not found or not readable (e.g. {', '.join(acc.missing_paths)}): "
                     f"counted as a square image at image_max_pixels ({img_max} px), the largest the cap allows")
    if acc.with_images or acc.with_videos:
        notes.append(f"images pre-resized to image_max_pixels={img_max} (LLaMA-Factory; default 768x768) "
                     f"then by the {proc.family if proc else DEFAULT_FAMILY} processor ({proc.source if proc else ''})")
    if acc.with_videos:
        notes.append(f"video files are not opened: each counted at video_maxlen={vid_len} frames (sampled at "
                     f"{video_fps:g} fps, fewer for short videos) of video_max_pixels={vid_max}")
    truncated = image_cut = 0
    if cutoff_len:
        truncated = len(sorted_totals) - _count_le(sorted_totals, cutoff_len)
        image_cut = sum(1 for m in media if m >= cutoff_len)
        notes.append("LLaMA-Factory expands image tokens before truncating to cutoff_len: they count inside it"
                     + (f"; {image_cut} sample(s) have more image/video tokens than cutoff_len={cutoff_len}: truncation "
                        "cuts their image tokens and the run fails with an image features/tokens mismatch"
                        if image_cut else ""))
    if packing:
        notes.append("packing: samples are packed into sequences of cutoff_len tokens, so every sequence is "
                     f"{cutoff_len or '(cutoff_len not given)'} long whatever the samples")
    longest = sorted_totals[-1]
    after = cutoff_len if (packing and cutoff_len) else (min(longest, cutoff_len) if cutoff_len else longest)
    return DatasetProfile(
        path=str(path), datasets=stats.datasets, samples=acc.n, bad_records=stats.bad_records,
        bad_lines=stats.bad_lines, complete=complete, token_method=counter.method, tokens_exact=counter.exact,
        total=_distribution(sorted_totals), text=_distribution(sorted(acc.texts.tolist())),
        media=_distribution(sorted(media)), histogram=_histogram(sorted_totals), worst=worst,
        samples_with_images=acc.with_images, samples_with_videos=acc.with_videos, images_missing=acc.missing,
        max_media_tokens=max(media) if media else 0, family=proc.family if proc else None,
        image_max_pixels=img_max, image_min_pixels=img_min, video_max_pixels=vid_max, video_maxlen=vid_len,
        cutoff_len=cutoff_len, packing=packing, truncated_samples=truncated, image_cut_samples=image_cut,
        longest_after_cutoff=after, seconds=round(time.perf_counter() - started, 3), notes=notes,
        totals=totals, media_totals=media, media_items=acc.items.tolist())


def _count_le(sorted_values: list[int], x: int) -> int:
    import bisect

    return bisect.bisect_right(sorted_values, x)
