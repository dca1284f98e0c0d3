"""Memory over time in a training log: per-step memory readings and how far the run got before it failed.

A run that trained for hundreds of steps and then ran out, with the readings climbing step after step, is a
different problem (memory kept alive, a leak, growing shapes) from one that fails on its first step. The
readings are the ones people paste: DeepSpeed's see_memory_usage ("MA 9.82 GB Max_MA ..."), memory printouts
from callbacks ("memory allocated 38.41 GiB"), nvidia-smi "12345MiB / 81920MiB"; progress from tqdm bars.
Linear time, bounded memory (a fixed number of readings kept).
"""

from __future__ import annotations

import re

from pydantic import BaseModel, Field

from .described_oom import DescribedOOM, described_oom
from .units import format_bytes, parse_size

MAX_READINGS = 512
MAX_LINE = 4096

# "memory allocated 38.41 GiB", "allocated: 38.41GB", "MA 9.82 GB", "mem_alloc=38.4G"; first number after the word.
# Horizontal whitespace only ([ \t]), so no match spans two lines.
_ALLOCATED = re.compile(
    r"(?:memory[ _]allocated|mem(?:ory)?[ _]?alloc(?:ated)?|allocated memory|\bMA)[ \t]{0,3}[:=]?[ \t]{0,3}"
    r"([0-9]{1,6}(?:\.[0-9]{1,4})?)[ \t]{0,2}(GiB|GB|G|MiB|MB|M)\b", re.IGNORECASE)
_SMI = re.compile(r"\b([0-9]{2,7})MiB[ \t]{0,2}/[ \t]{0,2}([0-9]{3,7})MiB")
_STEP = re.compile(r"\bstep[ \t]{0,2}[:=]?[ \t]{0,2}([0-9]{1,9})\b", re.IGNORECASE)
_TQDM = re.compile(r"\|[ \t]{0,3}([0-9]{1,9})/([0-9]{1,9})[ \t]{0,3}\[")


class MemoryReading(BaseModel):
    line: int
    step: int | None = None
    bytes: int
    source: str = Field(description="allocated | nvidia-smi")


class MemoryTrend(BaseModel):
    """What the log shows of memory over time."""

    readings: list[MemoryReading] = Field(default_factory=list)
    growth_bytes: int = 0
    growing: bool = False
    steps_done: int | None = Field(default=None, description="last progress step printed before the failure")
    total_steps: int | None = None
    said: str | None = Field(default=None, description="the user's own words that memory grows, when no readings show it")

    def describe(self) -> str:
        if not self.readings:
            return f"the report says: \"{self.said}\"" if self.said else ""
        first, last = self.readings[0], self.readings[-1]
        at = lambda r: f"step {r.step}" if r.step is not None else f"line {r.line}"  # noqa: E731
        return (f"memory went from {format_bytes(first.bytes)} ({at(first)}) to {format_bytes(last.bytes)} ({at(last)}) "
                f"over {len(self.readings)} readings")


def memory_trend(text: str) -> MemoryTrend:
    """Readings and progress from a log; `growing` when a series rises by ≥ 1 GiB and ≥ 10% over ≥ 3 readings.

    Each pattern scans the whole text once in C (finditer); Python only touches the matches, so a 100 MB log
    without readings costs a few regex passes.
    """
    series: dict[str, list[MemoryReading]] = {"allocated": [], "nvidia-smi": []}
    lines = _LineIndex(text)
    steps_done = total = None
    for m in _TQDM.finditer(text):
        done, tot = int(m.group(1)), int(m.group(2))
        line = lines.text_of(m.start())
        # A finished bar (dataset map, checkpoint shards) is not the training loop that failed.
        if 0 < tot and done < tot and "examples/s" not in line and "shards" not in line:
            steps_done, total = done, tot
    # Regexes with alternations are slow on 100 MB; find the few candidate lines with str.find (C speed) first.
    for start in _candidate_lines(text, ("lloc", "LLOC", "MA ", "MiB")):
        end = text.find("\n", start)
        line = text[start:end if end != -1 else len(text)][:MAX_LINE]
        m = _ALLOCATED.search(line)
        if m:
            unit = m.group(2).upper().rstrip("B").rstrip("I") or "G"
            size = parse_size(f"{m.group(1)} {unit}iB")
            if size:
                _keep(series["allocated"], MemoryReading(line=lines.number_of(start), step=_step(line), bytes=size,
                                                         source="allocated"))
            continue
        m = _SMI.search(line)
        if m:
            _keep(series["nvidia-smi"], MemoryReading(line=lines.number_of(start), step=_step(line),
                                                      bytes=int(m.group(1)) * 2**20, source="nvidia-smi"))
    best = max(series.values(), key=len)
    trend = MemoryTrend(readings=best, steps_done=steps_done, total_steps=total)
    if len(best) >= 3:
        rises = sum(1 for a, b in zip(best, best[1:]) if b.bytes >= a.bytes)
        growth = best[-1].bytes - best[0].bytes
        trend.growth_bytes = growth
        trend.growing = growth >= max(2**30, 0.10 * best[0].bytes) and rises >= 0.7 * (len(best) - 1)
    return trend


class _Unread:
    """No prose reading given: failure_trend reads the text itself."""


_UNREAD = _Unread()


def failure_trend(text: str, described: DescribedOOM | None | _Unread = _UNREAD) -> MemoryTrend:
    """The log's memory over time, `growing` also when the user only said so in words ("keeps increasing every
    step"); `described` is the prose reading of the text (described_oom, None: it describes nothing) when the caller
    already has it, so a long log is not read twice."""
    trend = memory_trend(text)
    said = described_oom(text) if isinstance(described, _Unread) else described
    if said is not None and said.growth_text and not trend.growing:
        trend = trend.model_copy(update={"growing": True, "said": said.growth_text})
    return trend


def _candidate_lines(text: str, needles: tuple[str, ...], limit: int = 200_000) -> list[int]:
    """Start offsets of the lines containing any needle, in order (at most `limit` lines)."""
    starts: set[int] = set()
    for needle in needles:
        pos = text.find(needle)
        while pos != -1 and len(starts) < limit:
            line_start = text.rfind("\n", 0, pos) + 1
            starts.add(line_start)
            end = text.find("\n", pos)
            if end == -1:
                break
            pos = text.find(needle, end)
    return sorted(starts)


def _step(line: str) -> int | None:
    m = _STEP.search(line)
    return int(m.group(1)) if m else None


class _LineIndex:
    """Line numbers and line text for positions visited in increasing order (counts newlines incrementally).

    `text_of` gives the segment around a position, bounded by "\\n" or "\\r" (a tqdm redraw is its own segment), and
    remembers it and the next newline: the many matches of one long line cost one scan of that line, not one each."""

    def __init__(self, text: str):
        self.text, self.pos, self.line = text, 0, 1
        self._seg = (0, 0)   # [start, end) of the last segment found; text[end] is its separator
        self._nl = -1        # the next newline at or after the last segment's start (len(text) when none)

    def number_of(self, pos: int) -> int:
        if pos < self.pos:  # a new pattern pass starts from the top
            self.pos, self.line = 0, 1
        self.line += self.text.count("\n", self.pos, pos)
        self.pos = pos
        return self.line

    def text_of(self, pos: int) -> str:
        text = self.text
        start, end = self._seg
        if not start <= pos < end:
            if pos < start:   # a new pass from the top
                self._nl, end = -1, 0
            lo = end + 1 if 0 < end <= pos else 0   # the segment starts after the last one
            start = max(text.rfind("\n", lo, pos), text.rfind("\r", lo, pos), lo - 1) + 1
            if self._nl < pos:
                nl = text.find("\n", pos)
                self._nl = len(text) if nl == -1 else nl
            cr = text.find("\r", pos, self._nl)
            end = self._nl if cr == -1 else cr
            self._seg = (start, end)
        return text[start:min(end, start + MAX_LINE)]


def _keep(readings: list[MemoryReading], r: MemoryReading) -> None:
    """Keep the first and the latest readings within a bound (the start and the climb both matter)."""
    if len(readings) >= MAX_READINGS:
        del readings[1]
    readings.append(r)
