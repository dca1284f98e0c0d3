"""The single pass over a log: clean each line, detect memory errors and related errors, collect run facts,
and assemble one `OOMReport`. Memory stays bounded: per-rank windows of recent lines, capped candidate and
evidence lists, no copy of the whole log."""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Iterator

from ..frameworks import ENGINE_HOSTS
from ..report import Evidence, GPUSeen, OOMReport, OtherProcess, RelatedError
from .context import find_context_phase, find_operation, find_phase
from .facts import FactCollector
from .lines import (Piece, clean_line, iter_byte_lines, iter_text_lines, join_rich_records, split_glued_bar,
                    split_physical_line)
from .messages import (FRACTION_HEADER, HOST_LIMIT_PHRASES, MemoryHit, detect, exit_signal, fraction_field, is_open,
                       parse_torch_message)
from .related import SETUP_ERROR_KINDS, detect_related
from .triggers import has_trigger

WINDOW = 80            # recent lines per rank kept for phase/operation (a deep traceback is ~60 frames)
MAX_RANK_WINDOWS = 64  # ranks tracked separately; others share one window
MAX_WRAP_LINES = 12    # continuation lines joined to a wrapped OOM message
MAX_MESSAGE = 4096     # characters of a joined message
MAX_SIGNATURES = 64    # distinct memory errors remembered
MAX_RELATED = 20
PROSE_LOOKAHEAD = 12   # lines after a prose mention of the error in which its pasted traceback may start
CONTEXT_LINES = 20     # log lines before an error that may say what the run was doing
PIECE_CONTEXT = 512    # characters of a piece of an over-long line kept as context (its detectors see all of it)
_ROUNDING_SLACK = (1 << 20) // 100  # a size printed as "%.2f MiB" is within 0.005 MiB of the exact one
_WRAP_MIN_WIDTH = 40   # a wrapped paste cuts lines at a fixed width; shorter lines are not wrapped
# lines that start something new (an exception, a log record), never the wrapped rest of a message
_NEW_RECORD = re.compile(r"[\w.]{1,80}(?:Error|Exception|Interrupt|Warning)\b|Killed\b|\w{1,30} \| "
                         r"|(?:INFO|WARNING|WARN|ERROR|DEBUG)\b|[IWE]\d{4} |\d{4}[-/]\d{2}[-/]\d{2}")
# a log record (not a traceback line): "[2025-...", "[INFO|...", "06/03/2024 ...", "{'loss': ...}", "INFO 09-14 ..."
_LOG_RECORD = re.compile(r"\s{0,3}(?:\[|\{|\d|(?:INFO|WARNING|WARN|ERROR|DEBUG)\b|[IWE]\d{4} )")
_FRAME_STARTS = ("File ", "Traceback", "During handling", "The above exception")


class _Pending:
    """A PyTorch OOM message whose wrapped continuation lines may follow."""

    def __init__(self, kind: str, lineno: int, text: str, rank: int | None, width: int, block: bool = False) -> None:
        self.kind, self.lineno, self.text, self.rank, self.width = kind, lineno, text, rank, width
        self.lines = 1
        self.last_len = width  # a hard wrap fills every line but the last to the same width
        self.block = block     # a message of one field per line (the memory-fraction one), not a hard wrap


class _Occurrence:
    """The first sighting of one memory error (by signature), the ranks that printed it, and its context."""

    def __init__(self, hit: MemoryHit, lineno: int, rank: int | None, window: list[tuple[int, str]]) -> None:
        self.hit, self.lineno, self.rank = hit, lineno, rank
        self.context = window                            # recent lines of this rank (surrounding log lines)
        window = _traceback_window(window, lineno)      # the traceback that ends at the error
        self.window = window
        self.ranks: set[int] = set() if rank is None else {rank}
        self.gpu_indices: set[int] = set() if hit.gpu_index is None else {hit.gpu_index}
        # Pastes often put the error line first and its traceback after it; with no frames before the error,
        # the traceback that follows (if one starts within 2 lines) is read instead.
        self.follow = 0 if any(t.lstrip().startswith("File ") for _, t in window) else WINDOW
        self.after: list[tuple[int, str]] = []
        # A sentence that names the error ("OOM when evaluating model") is the user's summary, not the error: the
        # traceback pasted below it, a few lines on, says where it failed.
        self.prose = _is_prose_mention(hit)
        self.lookahead = PROSE_LOOKAHEAD if self.prose else 2
        self.after_context: list[tuple[int, str]] = []  # log lines between a prose mention and its traceback

    def follow_line(self, lineno: int, line: str) -> None:
        stripped = line.lstrip()
        if not self.after:
            if "Traceback (most recent call last)" in line:
                self.after.append((lineno, line))
            elif lineno - self.lineno >= self.lookahead:
                self.follow = 0
            elif self.prose:
                self.after_context.append((lineno, line))
            return
        if stripped.startswith(("File ", "^", "~")) or line[:1].isspace():
            self.after.append((lineno, line))
            self.follow -= 1
        else:
            self.follow = 0  # the traceback ended (its exception line)


class LogParser:
    """Feed physical lines with `feed_lines` (or one at a time with `feed_line`); `report()` gives the OOMReport.
    No exceptions escape."""

    def __init__(self, *, prefilter: bool = True) -> None:
        self.prefilter = prefilter  # skip detectors on lines without a trigger word (off only to test it)
        self.lineno = 0
        self.facts = FactCollector()
        self.windows: dict[int | None, deque] = {None: deque(maxlen=WINDOW)}
        self.occurrences: dict[tuple, _Occurrence] = {}
        self.order: list[tuple] = []
        self.aliases: dict[tuple, tuple] = {}  # signature of a rounded size print → the exact one it was merged into
        self.related: list[RelatedError] = []
        self.related_seen: set[tuple[str, str]] = set()
        self.signals: list[tuple[str, int, str]] = []
        self.related_window: list[tuple[int, str]] | None = None  # traceback of the first setup error
        self.pending: _Pending | None = None
        self.following: list[_Occurrence] = []  # errors still reading a traceback printed after them
        self.eval_banner_line = -100
        self.truncated = False

    # -- per line --------------------------------------------------------------------------------------------
    def feed_line(self, raw: str) -> None:
        """One logical line; a `Piece` continues the line before it (same line number). A raw physical line with
        carriage returns is split first (progress redraws, CR-only line ends: see LineSplitter)."""
        if raw.find("\r", 0, len(raw) - 1) != -1:
            for item in split_physical_line(raw):
                self.feed_line(item if type(raw) is not Piece or type(item) is Piece else Piece(item))
            return
        if type(raw) is not Piece or self.lineno == 0:
            self.lineno += 1
        try:
            self._feed(raw)
        except Exception:  # noqa: BLE001 - a parser bug on one odd line must not lose the rest of the report
            self.pending = None

    def _feed(self, raw: str) -> None:
        lineno = self.lineno
        line, rank = clean_line(raw)
        if self.pending is not None:
            if self._continues(line, rank):
                p = self.pending
                p.text = (p.text + ("; " if p.block else "") + line.strip())[:MAX_MESSAGE]
                p.lines += 1
                p.last_len = len(line.rstrip())
                if (p.block or is_open(p.text)) and p.lines < MAX_WRAP_LINES:
                    return
                self._close_pending()
                return
            self._close_pending()
        if "%|" in line:
            bar, line = split_glued_bar(line)
            if bar is not None:
                self._window(rank).append((lineno, bar))  # context only: what ran when the next line was printed
        if not line.strip():
            return
        if "\\" in line and ("\\site-packages\\" in line or "File " in line):
            line = line.replace("\\", "/")  # Windows tracebacks: frame paths read like POSIX ones
        if self.following:
            self._follow(lineno, line, rank)
        low = line.lower()
        # a piece of a megabyte line is context by its head only: frames and log records are short lines
        self._window(rank).append((lineno, line if type(raw) is not Piece else line[:PIECE_CONTEXT]))
        if self.prefilter and not has_trigger(low):
            return  # no detector or fact extractor can fire on this line: it only serves as context
        self._detect(lineno, line, low, rank, raw)

    def feed_lines(self, lines: Iterable[str]) -> None:
        """Feed many physical lines. The common case (no pending message, no traceback being followed, no carriage
        return or progress bar) runs inline here; every other line goes through `feed_line`. Same result either way
        (tests compare it with prefilter=False, which feeds every line through `feed_line`)."""
        if not self.prefilter:
            for raw in lines:
                self.feed_line(raw)
            return
        window = self._window
        for raw in lines:
            if self.pending is not None or self.following or "\r" in raw or "%|" in raw or type(raw) is Piece:
                self.feed_line(raw)
                continue
            self.lineno += 1
            try:
                line, rank = clean_line(raw)
                if not line.strip():
                    continue
                if "\\" in line and ("\\site-packages\\" in line or "File " in line):
                    line = line.replace("\\", "/")  # Windows tracebacks: frame paths read like POSIX ones
                low = line.lower()
                window(rank).append((self.lineno, line))
                if has_trigger(low):
                    self._detect(self.lineno, line, low, rank, raw)
            except Exception:  # noqa: BLE001 - as in feed_line
                self.pending = None

    def _detect(self, lineno: int, line: str, low: str, rank: int | None, raw: str) -> None:
        """Memory errors, related errors, signals and run facts on one cleaned line."""
        hits = detect(line, low) if self._may_report_memory(low) else []
        if hits:
            first = hits[0]
            if first.wrappable and len(hits) == 1 and FRACTION_HEADER in low:
                # its fields follow, one a line
                self.pending = _Pending(first.kind, lineno, line.strip(), rank, len(line.rstrip()), block=True)
            elif first.wrappable and len(hits) == 1 and is_open(line) \
                    and len(raw.rstrip("\r\n")) >= _WRAP_MIN_WIDTH:
                self.pending = _Pending(first.kind, lineno, line.strip(), rank, len(line.rstrip()))
            else:
                for hit in hits:
                    self._record(hit, lineno, rank)
        self._related_and_signals(lineno, line, low, rank)
        if "running evaluation" in low or "running prediction" in low:
            self.eval_banner_line = lineno
        elif lineno - self.eval_banner_line <= 4 and "batch size" in low:
            self.facts.feed_eval_banner(lineno, line)
        self.facts.feed(lineno, line, low)

    @staticmethod
    def _may_report_memory(low: str) -> bool:
        return ("memory" in low or "alloc" in low or "oom" in low or "killed" in low or "alloc_failed" in low
                or "workspace" in low or "code" in low or "sig" in low or "status" in low or "pinned" in low
                or "bad_alloc" in low or "executable batch size" in low
                or any(phrase in low for phrase in HOST_LIMIT_PHRASES))

    def _continues(self, line: str, rank: int | None) -> bool:
        """Is this line the wrapped rest of the pending message (same rank, not a new log record)?"""
        p = self.pending
        stripped = line.strip()
        if p.block:
            return rank == p.rank and fraction_field(line)
        if not stripped or rank != p.rank or stripped.startswith(_FRAME_STARTS):
            return False
        if abs(p.last_len - p.width) > 2:  # the previous line was short: the message ended there
            return False
        head = stripped[:24].lower()
        if head[:1] == "[" or head[:4].isdigit() or "error" in head.split(":", 1)[0] and ":" in head:
            return False
        low = stripped.lower()
        if "out of memory" in low or "traceback" in low or "%|" in stripped or _NEW_RECORD.match(stripped):
            return False
        return True

    def _close_pending(self) -> None:
        p, self.pending = self.pending, None
        window = self._window(p.rank)
        if window and window[-1][0] == p.lineno:
            window[-1] = (p.lineno, p.text)
        for hit in parse_torch_message(p.kind, p.text):
            self._record(hit, p.lineno, p.rank)

    def _window(self, rank: int | None) -> deque:
        w = self.windows.get(rank)
        if w is None:
            if len(self.windows) > MAX_RANK_WINDOWS:
                return self.windows[None]
            w = self.windows[rank] = deque(maxlen=WINDOW)
        return w

    def _record(self, hit: MemoryHit, lineno: int, rank: int | None) -> None:
        if hit.exit_signal and len(self.signals) < 50:
            self.signals.append((hit.exit_signal, lineno, hit.text[:300]))
        last = self.occurrences.get(self.order[-1]) if self.order else None
        if (last is not None and last.hit.kind == hit.kind and last.hit.requested_bytes is None
                and hit.requested_bytes is not None and lineno - last.lineno <= 5
                and last.hit.gpu_total_bytes is None and _is_full_message(hit)):
            # a bare mention ("CUDA out of memory" in the user's question) just before the real message: the
            # message with the numbers is the error
            del self.occurrences[self.order.pop()]
            last = None
        if (last is not None and last.hit.kind == hit.kind and last.hit.requested_bytes is None
                and hit.requested_bytes is not None and lineno - last.lineno <= 5):
            # the size follows the error on its own line (NCCL's "Failed to CUDA calloc N bytes"): one error
            last.hit.requested_bytes = hit.requested_bytes
            last.hit.fragments.update(hit.fragments)
            last.hit.fragment_lines.update(dict.fromkeys(hit.fragments, lineno))
            del self.occurrences[self.order.pop()]
            self.occurrences[last.hit.signature] = last
            self.order.append(last.hit.signature)
            return
        if (last is not None and hit.exact_size and _same_ggml_error(last.hit, hit) and not last.hit.exact_size
                and last.hit.requested_bytes is not None and lineno - last.lineno <= 5
                and abs(last.hit.requested_bytes - hit.requested_bytes) <= _ROUNDING_SLACK):
            # ggml prints the size rounded ("144.00 MiB on device 4"), then exactly ("CUDA4 buffer of size
            # 150995968"): one error, with the exact size
            rounded = last.hit.signature
            del self.occurrences[self.order.pop()]
            last.hit.kind = hit.kind  # a HIP build of ggml says "cudaMalloc failed", then names the device ROCm<n>
            last.hit.requested_bytes, last.hit.exact_size = hit.requested_bytes, True
            last.hit.fragments["requested_bytes"] = hit.fragments.get("requested_bytes", "")
            last.hit.fragment_lines["requested_bytes"] = lineno
            if last.hit.gpu_index is None:
                last.hit.gpu_index = hit.gpu_index
            if len(self.aliases) < MAX_SIGNATURES:
                self.aliases[rounded] = last.hit.signature  # later rank's rounded print: the same error
            if last.hit.signature in self.occurrences:
                return
            self.occurrences[last.hit.signature] = last
            self.order.append(last.hit.signature)
            return
        key = self.aliases.get(hit.signature, hit.signature)
        occ = self.occurrences.get(key)
        if occ is not None:
            if rank is not None and len(occ.ranks) < 4096:
                occ.ranks.add(rank)
            if hit.gpu_index is not None and len(occ.gpu_indices) < 4096:
                occ.gpu_indices.add(hit.gpu_index)
            return
        if len(self.occurrences) >= MAX_SIGNATURES:
            return
        window = list(self._window(rank))
        if rank is not None and len(window) < 3:
            window = list(self.windows[None]) + window
        occ = _Occurrence(hit, lineno, rank, window)
        self.occurrences[key] = occ
        self.order.append(key)
        if occ.follow:
            self.following.append(occ)

    def _follow(self, lineno: int, line: str, rank: int | None) -> None:
        for occ in self.following:
            if occ.rank == rank and lineno > occ.lineno:
                occ.follow_line(lineno, line)
        self.following = [o for o in self.following if o.follow > 0]

    def _related_and_signals(self, lineno: int, line: str, low: str, rank: int | None) -> None:
        sig = None
        if "code" in low or "sig" in low or "status" in low:
            sig = exit_signal(line)
            if sig and sig != "SIGKILL" and len(self.signals) < 50:
                self.signals.append((sig, lineno, line[:300]))
        kind = detect_related(line, low, sig)
        if kind and len(self.related) < MAX_RELATED:
            key = (kind, line.strip()[:200])
            if key not in self.related_seen:
                self.related_seen.add(key)
                self.related.append(RelatedError(kind=kind, message=line.strip()[:500], line=lineno))
                if kind in SETUP_ERROR_KINDS and self.related_window is None:
                    self.related_window = _traceback_window(list(self._window(rank)), lineno)

    # -- result ----------------------------------------------------------------------------------------------
    def report(self) -> OOMReport:
        if self.pending is not None:
            try:
                self._close_pending()
            except Exception:  # noqa: BLE001
                self.pending = None
        try:
            return self._build()
        except Exception:  # noqa: BLE001 - never raise: an empty report still says how many lines were read
            return OOMReport(lines=self.lineno, truncated=self.truncated)

    def _primary(self) -> _Occurrence | None:
        best = None
        for key in self.order:
            occ = self.occurrences[key]
            if best is None or occ.hit.priority > best.hit.priority:
                best = occ
        return best

    def _build(self) -> OOMReport:
        r = OOMReport(lines=self.lineno, truncated=self.truncated)
        ev: list[Evidence] = []
        primary = self._primary()
        if primary is not None:
            hit = primary.hit
            r.kind = hit.kind
            r.message = hit.text.strip()[:1000]
            for name in ("requested_bytes", "gpu_index", "gpu_total_bytes", "gpu_free_bytes", "process_used_bytes",
                         "torch_allocated_bytes", "torch_reserved_bytes", "torch_reserved_unallocated_bytes"):
                setattr(r, name, getattr(hit, name))
            r.other_processes = [OtherProcess(pid=pid, bytes=size) for pid, size in hit.other_processes]
            # Without launcher prefixes, one process per GPU is the rule: the GPUs that printed the same
            # error stand for the (local) ranks.
            r.ranks = sorted(primary.ranks or (primary.gpu_indices if len(primary.gpu_indices) > 1 else ()))
            ev.append(Evidence(line=primary.lineno, text=hit.text.strip()[:500], fact="kind"))
            for name, fragment in hit.fragments.items():
                ev.append(Evidence(line=hit.fragment_lines.get(name, primary.lineno), text=fragment[:300], fact=name))
            if hit.kind == "cuda_oom" and hit.requested_bytes is None and _mentions_pinned(primary.window):
                r.kind = "host_oom"  # "CUDA error: out of memory" raised by pin_memory: host page-locked RAM ran out
            if primary.prose:  # the pasted trace and log lines outrank the words of the user's summary
                phase = (find_phase(primary.after) or find_context_phase(primary.after_context)
                         or find_phase(primary.window) or find_context_phase(primary.context[-CONTEXT_LINES:]))
            else:
                phase = (find_phase(primary.window) or find_phase(primary.after)
                         or find_context_phase(primary.context[-CONTEXT_LINES:]))
            if hit.phase_hint:   # the message itself says where it failed
                r.phase = hit.phase_hint
                ev.append(Evidence(line=primary.lineno, text=hit.text.strip()[:300], fact="phase"))
            elif phase:
                r.phase = phase[0]
                ev.append(Evidence(line=phase[1], text=phase[2][:300], fact="phase"))
            op = find_operation(primary.window) or find_operation(primary.after)
            if op:
                r.operation = op[0]
                ev.append(Evidence(line=op[1], text=op[2][:300], fact="operation"))
            if r.gpu_index is not None and r.gpu_total_bytes is not None:
                self.facts.gpus.setdefault(r.gpu_index, GPUSeen(index=r.gpu_index, memory_bytes=r.gpu_total_bytes))
                gpu = self.facts.gpus[r.gpu_index]
                if gpu.memory_bytes is None:
                    gpu.memory_bytes = r.gpu_total_bytes
        r.related_errors = list(self.related)
        if primary is None and any(e.kind in SETUP_ERROR_KINDS for e in self.related):
            r.kind = "related_error"
            first = next(e for e in self.related if e.kind in SETUP_ERROR_KINDS)
            r.message = first.message
            ev.append(Evidence(line=first.line, text=first.message[:300], fact="kind"))
            phase = find_phase(self.related_window or [])
            if phase:
                r.phase = phase[0]
                ev.append(Evidence(line=phase[1], text=phase[2][:300], fact="phase"))
        if self.signals:
            order = {"SIGKILL": 0, "SIGBUS": 1, "SIGFPE": 2}
            sig = min(self.signals, key=lambda s: (order.get(s[0], 9), s[1]))
            r.exit_signal = sig[0]
            ev.append(Evidence(line=sig[1], text=sig[2], fact="exit_signal"))
        self._facts_into(r, ev, primary)
        r.evidence = ev[:300]
        return r

    def _facts_into(self, r: OOMReport, ev: list[Evidence], primary: _Occurrence | None = None) -> None:
        f = self.facts
        fw = f.framework()
        engine = _inference_engine_frame(primary) if primary is not None else None
        if engine and (fw is None or fw[0] in ENGINE_HOSTS):
            fw = engine  # vLLM inside a trainer (TRL GRPO/online DPO): the engine's memory ran out, not the trainer's
        if fw:
            r.framework = fw[0]
            ev.append(Evidence(line=fw[1], text=fw[2][:300], fact="framework"))
        la = f.launcher()
        if la:
            r.launcher = la[0]
            ev.append(Evidence(line=la[1], text=la[2][:300], fact="launcher"))
        st = f.stage()
        if st:
            r.deepspeed_stage = st[0]
            ev.append(Evidence(line=st[1], text=st[2][:300], fact="deepspeed_stage"))
        if f.model:
            r.model = f.model[1]
            ev.append(Evidence(line=f.model[2], text=f.model[3][:300], fact="model"))
        gpus = [g for k, g in f.gpus.items() if k != "type"]
        gpus.sort(key=lambda g: (g.index is None, g.index or 0))
        if "type" in f.gpus and not any(g.name for g in gpus):
            typ = f.gpus["type"]
            if gpus:
                for g in gpus:
                    g.name = typ.name
            else:
                gpus = [typ]
        r.gpus = gpus[:64]
        if f.gpu_count:
            r.gpu_count = f.gpu_count[1]
            ev.append(Evidence(line=f.gpu_count[2], text=f.gpu_count[3][:300], fact="gpu_count"))
        elif len([g for g in gpus if g.name]) > 1:
            r.gpu_count = len([g for g in gpus if g.name])
        att = f.attn_implementation()
        if att:
            r.attn_implementation = att[0]
            ev.append(Evidence(line=att[1], text=att[2][:300], fact="attn_implementation"))
        if f.host_ram:
            _, r.host_ram_used_bytes, r.host_ram_total_bytes, line, text = f.host_ram
            ev.append(Evidence(line=line, text=text[:300], fact="host_ram_used_bytes"))
            ev.append(Evidence(line=line, text=text[:300], fact="host_ram_total_bytes"))
        if f.cpu_adam:
            r.optimizer_offloaded = True
            ev.append(Evidence(line=f.cpu_adam[0], text=f.cpu_adam[1][:300], fact="optimizer_offloaded"))
        r.versions = dict(f.versions)
        r.training_args = dict(f.training_args)
        ev.extend(f.evidence())


# an exception or runtime error line, as opposed to a sentence that mentions the error
_EXCEPTION_LINE = re.compile(r"(?:Error|Exception|error)\s*:|\b(?:RuntimeError|OutOfMemoryError|CUBLAS_STATUS|cudaMalloc)"
                             r"|^\s*(?:ERROR|E\d{4}|\[rank\d+\]|torch\.)")


def _is_prose_mention(hit: MemoryHit) -> bool:
    """A CUDA OOM named in a sentence ("CUDA out of memory when evaluating model"), without numbers or an
    exception class: the user's summary of the error rather than the error."""
    return (hit.kind == "cuda_oom" and hit.requested_bytes is None and hit.gpu_total_bytes is None
            and not _EXCEPTION_LINE.search(hit.text))


def _is_full_message(hit: MemoryHit) -> bool:
    """Does the hit carry the allocator's full account (capacity, allocated), not just a size?"""
    return hit.gpu_total_bytes is not None or hit.torch_allocated_bytes is not None


def _same_ggml_error(first: MemoryHit, then: MemoryHit) -> bool:
    """Can `then` (an exact-size buffer line) be the rest of `first`? Same kind, or ggml's CUDA wording on ROCm."""
    return first.kind == then.kind or (first.kind == "cuda_oom" and then.kind == "hip_oom"
                                       and "cudamalloc failed" in first.text.lower())


def _traceback_window(window: list[tuple[int, str]], lineno: int) -> list[tuple[int, str]]:
    """The traceback that ends at the error: from its last 'Traceback' header, or, when the paste lost the
    header, the block of frame and source lines right before the error (log records end the block)."""
    lines = [(n, t) for n, t in window if n <= lineno]
    for i in range(len(lines) - 1, -1, -1):
        if "Traceback (most recent call last)" in lines[i][1]:
            return lines[i:]
    start = len(lines)
    for i in range(len(lines) - 1, -1, -1):
        if lines[i][0] == lineno:
            start = i
            continue
        if _LOG_RECORD.match(lines[i][1]) or "%|" in lines[i][1]:
            break
        start = i
    return lines[start:]


def _inference_engine_frame(occ: _Occurrence) -> tuple[str, int, str] | None:
    """('vllm', line, text) when the error's traceback runs through vLLM's own modules."""
    for lineno, text in reversed(occ.window + occ.after):
        if "vllm/" in text and ("File " in text or "site-packages" in text):
            return "vllm", lineno, text
    return None


def _mentions_pinned(window: list[tuple[int, str]]) -> bool:
    return any("pin_memory" in t or "cudaHostAlloc" in t or "pinned" in t for _, t in window[-8:])


def parse_lines(lines: Iterable[str], *, prefilter: bool = True) -> OOMReport:
    parser = LogParser(prefilter=prefilter)
    try:
        parser.feed_lines(join_rich_records(lines))
    except Exception:  # noqa: BLE001 - a broken input iterator ends the log; what was read is still reported
        pass
    return parser.report()


def parse_log_stream(chunks: Iterable[bytes]) -> OOMReport:
    """Parse a log given as byte chunks (a file read in pieces) in bounded memory; never raises."""
    return parse_lines(iter_byte_lines(chunks))


def _byte_chunks(data: bytes, size: int = 1 << 20) -> Iterator[bytes]:
    view = memoryview(data)
    for i in range(0, len(view), size):
        yield view[i:i + size]


def parse_log(text: str | bytes) -> OOMReport:
    """Parse a pasted log (str, or bytes decoded as UTF-8 with replacement) into an OOMReport; never raises."""
    try:
        if isinstance(text, (bytes, bytearray, memoryview)):
            return parse_log_stream(_byte_chunks(bytes(text)))
        if not isinstance(text, str):
            text = str(text)
        return parse_lines(iter_text_lines(text))
    except Exception:  # noqa: BLE001
        return OOMReport()
