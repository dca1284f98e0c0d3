"""Per-rank memory from a multi-rank log: each rank's PyTorch OOM message as a row of the rank table.

The log parser's own line reader, rank prefixes and message parser are reused (tools/log_parser: lines, messages);
this only keeps one message per rank instead of one per distinct error. A message hard-wrapped over several lines is
joined per rank, so ranks' interleaved lines do not mix. Linear in the log's length; the last MAX_LOG_CHARS
characters are read (OOM messages end a log).
"""

from __future__ import annotations

from ..log_parser.lines import clean_line, iter_text_lines
from ..log_parser.messages import MemoryHit, detect, is_open, parse_torch_message
from ..report import TORCH_ALLOCATOR_KINDS
from .ranks import RankRow, RankTable, build_rank_table

MAX_LOG_CHARS = 64 * 1024 * 1024
MAX_RANKS = 1024
MAX_WRAP_LINES = 12
MAX_MESSAGE = 4096
_TORCH_KINDS = TORCH_ALLOCATOR_KINDS
_NEW_RECORD_STARTS = ("File ", "Traceback", "During handling", "The above exception", "[", "{")


def _starts_new(stripped: str) -> bool:
    """A line that begins something else (a frame, a traceback, a log record), never a wrapped message's rest."""
    if stripped.startswith(_NEW_RECORD_STARTS) or "out of memory" in stripped.lower():
        return True
    head = stripped.split(" ", 1)[0]
    return head.endswith(":") and ("Error" in head or "Exception" in head or "Warning" in head)


def _row(hit: MemoryHit, rank: int, line: str) -> RankRow | None:
    reserved = hit.torch_reserved_bytes
    if reserved is None and hit.torch_allocated_bytes is not None and hit.torch_reserved_unallocated_bytes is not None:
        reserved = hit.torch_allocated_bytes + hit.torch_reserved_unallocated_bytes
    if hit.torch_allocated_bytes is None and reserved is None and hit.requested_bytes is None:
        return None
    return RankRow(rank=rank, allocated_bytes=hit.torch_allocated_bytes, reserved_bytes=reserved,
                   requested_bytes=hit.requested_bytes, free_bytes=hit.gpu_free_bytes, total_bytes=hit.gpu_total_bytes,
                   source=line[:300])


class _Collector:
    """The first OOM message of each rank (the rank prefix, else the GPU index the message names)."""

    def __init__(self) -> None:
        self.rows: dict[int | None, RankRow] = {}
        self.pending: dict[int | None, tuple[str, str, int]] = {}   # rank -> (kind, text so far, lines)

    def record(self, kind: str, text: str, rank: int | None) -> None:
        for hit in parse_torch_message(kind, text):
            key = rank if rank is not None else hit.gpu_index
            if key in self.rows or len(self.rows) >= MAX_RANKS:
                continue
            row = _row(hit, key if key is not None else 0, text)
            if row is not None:
                self.rows[key] = row

    def feed(self, raw: str) -> None:
        line, rank = clean_line(raw)
        stripped = line.strip()
        if rank in self.pending:
            kind, text, n = self.pending[rank]
            if stripped and not _starts_new(stripped):
                text = (text + stripped)[:MAX_MESSAGE]
                if is_open(text) and n + 1 < MAX_WRAP_LINES:
                    self.pending[rank] = (kind, text, n + 1)
                    return
                del self.pending[rank]
                self.record(kind, text, rank)
                return
            del self.pending[rank]
            self.record(kind, text, rank)
        if not stripped:
            return
        low = line.lower()
        if "memory" not in low and "tried to allocate" not in low:
            return   # no PyTorch OOM message on this line (cheap check before any regex)
        hits = [h for h in detect(line, low) if h.kind in _TORCH_KINDS]
        if not hits:
            return
        if len(hits) == 1 and is_open(line) and len(self.pending) < MAX_RANKS:
            self.pending[rank] = (hits[0].kind, stripped, 1)
            return
        self.record(hits[0].kind, stripped, rank)

    def finish(self) -> list[RankRow]:
        for rank, (kind, text, _) in list(self.pending.items()):
            self.record(kind, text, rank)
        self.pending.clear()
        return list(self.rows.values())


def rank_rows(log_text: str | bytes) -> list[RankRow]:
    """One row per rank that printed a PyTorch OOM message with numbers (its first such message)."""
    if isinstance(log_text, (bytes, bytearray)):
        log_text = bytes(log_text[-4 * MAX_LOG_CHARS:]).decode("utf-8", errors="replace")
    if len(log_text) > MAX_LOG_CHARS:
        cut = log_text.find("\n", len(log_text) - MAX_LOG_CHARS)
        log_text = log_text[cut + 1 if cut != -1 else len(log_text) - MAX_LOG_CHARS:]
    collector = _Collector()
    for raw in iter_text_lines(log_text):
        collector.feed(raw)
    return collector.finish()


def ranks_from_log(log_text: str | bytes) -> RankTable | None:
    """The per-rank table of a log's OOM messages; None when fewer than two ranks printed one (a single rank's
    numbers are already in the OOMReport)."""
    return build_rank_table(rank_rows(log_text))
