"""Lines from pasted text or a byte stream, and their normalised form.

Pastes arrive with ANSI colours, tqdm carriage-return redraws, CRLF or CR-only line ends, lines of megabytes (a log
whose newlines were lost), rank prefixes from multi-process launchers, Markdown code fences and bold, and Slack quoting. The line
iterators turn carriage returns and very long lines into logical lines of at most MAX_LINE characters (LineSplitter,
linear time); `clean_line` undoes the rest so the detectors see the text the program printed.
"""

from __future__ import annotations

import codecs
import html
import re
from collections import deque
from collections.abc import Iterable, Iterator

MAX_LINE = 4096  # characters of a logical line that are examined; a longer line is cut into pieces (LineSplitter)
# What the readers of a log's words and cues examine of a long log (scan_window): its start (the command, the
# arguments and banners printed at launch, the user's words above the paste) and its end (the error and the lines
# before it, the words below the paste). The middle of a long log is the training loop's progress lines.
SCAN_HEAD = 512 * 1024
SCAN_TAIL = 512 * 1024

_ANSI = re.compile(r"\x1b\[[0-9;?]{0,32}[ -/]{0,4}[@-~]|\x1b\][^\x07\x1b]{0,256}(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
# Markdown bold (**text**), the span bounded so the scan stays linear
_BOLD = re.compile(r"\*\*(\S(?:[^*\n]{0,200}?\S)?)\*\*")
# "[rank3]:", "[default0]:", "[rank3]:[W1023 ...]" (torchrun --tee / log prefixes)
_RANK_BRACKET = re.compile(r"^\[(?:rank|default|Rank\s?)(\d{1,5})\]:\s?")
# mpirun --tag-output: "[1,3]<stdout>:" (job, rank)
_RANK_MPI = re.compile(r"^\[\d{1,4},(\d{1,5})\]<std(?:out|err)>:\s?")
# "0: " (srun/launcher line prefixes), "worker-1: " / "node3: " / "localhost: " (pdsh under the deepspeed launcher)
_RANK_NUMBER = re.compile(r"^(\d{1,4}): ")
_HOST_PREFIX = re.compile(
    r"^(?:localhost|(?:worker|node|host|gpu|compute|machine)[\w.-]{0,30}|[A-Za-z][\w.]{0,40}-\d{1,4}): (?=\S)")
# log collectors (kubectl --timestamps, cloud consoles, CI): "16:49:33.630 " / "2024-05-21T10:00:00.123456Z "
_COLLECTOR_TIME = re.compile(r"^(?:\d{4}-\d{2}-\d{2}T)?\d{2}:\d{2}:\d{2}(?:[.,]\d{1,9})?(?:Z|[+-]\d{2}:?\d{2})? ")
# Ray workers: "(RayWorkerWrapper pid=123, ip=10.0.0.1) "
_RAY_PREFIX = re.compile(r"^\([\w.-]{1,60} pid=\d{1,10}(?:, ip=[\d.]{1,40})?\)\s?")
# the end of a tqdm bar: "| 4/4 [00:10<00:00,  2.50s/it]" (what follows it was written by someone else)
# (no "[" inside the brackets, so every "[" is scanned at most once: linear on adversarial lines)
_BAR_END = re.compile(r"\|\s{0,3}[\d.]{1,12}[kMGT]?/[\d.?]{1,12}[kMGT]?\s{0,3}\[[^\][\n]{0,120}\]")
_BAR_SCAN = 400  # characters after "%|" where a tqdm bar's "| n/total [elapsed<left, rate]" ends
_TRACEBACK_HEADER = "Traceback (most recent call last)"


class Piece(str):
    """A logical line that continues the physical line before it: a cut of a very long line, or what was printed over
    a progress bar after a carriage return. The parser gives it that line's number, so line numbers stay the ones an
    editor shows for "\\n"-separated text."""

    __slots__ = ()


MAX_PROGRESS = 1000   # a tqdm redraw is a few hundred characters; a longer segment is something printed
CUT_WINDOW = 1024     # the end of a piece of a very long line where a cut looks for a record or word boundary
_CHUNK = 1 << 16      # a very long line of a str is fed to the splitter in slices of this size
# Where a piece of a very long line should end: before a record or a message starts (the latest one in the window),
# else after a space. (needle, offset of the cut from the needle's start): literal finds, C speed, no backtracking.
_CUT_NEEDLES = (("Traceback (most recent", 0), ("CUDA out of memory", 0), ("out of memory", 0), ("Killed", 0),
                ("[rank", 0), ("[INFO", 0), ("[WARNING", 0), ("[ERROR", 0), ("'--", 0), ('"--', 0), (" --", 1),
                ("\\n", 2))
_EXCEPTION_WORDS = ("Error: ", "Exception: ")
_IDENT = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.")


def is_progress(segment: str) -> bool:
    """A tqdm-style redraw (the terminal overwrites it with the next one). (The marks spelled out: this runs on every
    redraw of a long log.)"""
    return len(segment) <= MAX_PROGRESS and ("%|" in segment or "it/s" in segment or "s/it" in segment
                                             or "it]" in segment or "/s]" in segment)


def _cut(buf: str, start: int) -> int:
    """Where the piece of `buf` starting at `start` ends (at most MAX_LINE characters): before the last record or
    message start in its final CUT_WINDOW characters (pulled back to the exception class that introduces it), else
    after the last space there, else at MAX_LINE."""
    hi = start + MAX_LINE
    lo = hi - CUT_WINDOW
    best = -1
    for needle, offset in _CUT_NEEDLES:
        i = buf.rfind(needle, lo, hi)
        if i > lo:
            best = max(best, i + offset)
    if best > lo:
        for word in _EXCEPTION_WORDS:   # "torch.OutOfMemoryError: CUDA out of memory": cut before the class
            i = buf.rfind(word, max(lo, best - 160), best)
            if i > lo:
                j = i
                while j > lo and buf[j - 1] in _IDENT:
                    j -= 1
                return j
        return best
    space = max(buf.rfind(" ", lo, hi), buf.rfind("\t", lo, hi))
    return space + 1 if space > lo else hi


class LineSplitter:
    """One physical line (the text between two "\\n") as the logical lines it holds, fed in chunks with bounded memory.

    Carriage returns: a run of progress redraws is one line, its last redraw (what the terminal shows); blank
    segments are tqdm clearing the line; every other segment was printed and is read. Once one printed segment was
    read, each later segment is a line of its own (a file with CR-only line ends); before that, segments continue
    the first line. A segment longer than MAX_LINE is cut into pieces of at most MAX_LINE characters at record or
    word boundaries, so a message anywhere in a 2 MB line is read whole. Linear time in the line's length."""

    def __init__(self) -> None:
        self._seg: list[str] = []        # the current segment's text not yet emitted
        self._seg_len = 0
        self._seg_cut = False            # pieces of the current segment were already emitted
        self._progress: str | None = None  # the latest redraw of the current progress run
        self._items = 0
        self._printed = False

    def feed(self, text: str) -> Iterator[str]:
        parts = text.split("\r")
        for i, part in enumerate(parts):
            if part:
                self._seg.append(part)
                self._seg_len += len(part)
                if self._seg_len > MAX_LINE:
                    yield from self._cut_long()
            if i < len(parts) - 1:
                yield from self._end_segment()

    def finish(self) -> Iterator[str]:
        yield from self._end_segment()
        if self._progress is not None:
            yield self._emit(self._progress, printed=False)
            self._progress = None
        if self._items == 0:
            yield ""   # a line of blanks and carriage returns is still a line

    def _emit(self, text: str, *, printed: bool, continued: bool = False) -> str:
        new_line = self._items == 0 or (not continued and self._printed)
        self._items += 1
        self._printed = self._printed or printed
        return text if new_line else Piece(text)

    def _cut_long(self) -> Iterator[str]:
        buf = "".join(self._seg)
        pos = 0
        while len(buf) - pos > MAX_LINE:
            cut = _cut(buf, pos)
            if not self._seg_cut and self._progress is not None:
                yield self._emit(self._progress, printed=False)
                self._progress = None
            yield self._emit(buf[pos:cut], printed=True, continued=self._seg_cut)
            self._seg_cut = True
            pos = cut
        rest = buf[pos:]
        self._seg, self._seg_len = [rest], len(rest)

    def _end_segment(self) -> Iterator[str]:
        seg = "".join(self._seg)
        self._seg, self._seg_len = [], 0
        was_cut, self._seg_cut = self._seg_cut, False
        if not seg.strip():
            return
        if not was_cut:
            if is_progress(seg):
                self._progress = seg
                return
            if self._progress is not None:
                yield self._emit(self._progress, printed=False)
                self._progress = None
        yield self._emit(seg, printed=True, continued=was_cut)


def split_physical_line(line: str) -> list[str]:
    """The logical lines of one physical line held in memory (see LineSplitter). A line of at most MAX_LINE characters
    (most are a progress bar's redraws) needs no cutting: the same rules run in one loop, without the splitter."""
    if len(line) <= MAX_LINE:   # no piece to cut: LineSplitter's rules in one loop
        out: list[str] = []
        progress: str | None = None
        printed = False
        for seg in line.split("\r"):
            if not seg.strip():
                continue
            if is_progress(seg):
                progress = seg
                continue
            if progress is not None:
                out.append(progress if not out or printed else Piece(progress))
                progress = None
            out.append(seg if not out or printed else Piece(seg))
            printed = True
        if progress is not None:
            out.append(progress if not out or printed else Piece(progress))
        return out or [""]
    splitter = LineSplitter()
    return [*splitter.feed(line), *splitter.finish()]


def _is_simple(line: str) -> bool:
    """A line the parser reads as it is: at most MAX_LINE characters, no carriage return but a CRLF's."""
    return len(line) <= MAX_LINE and line.find("\r", 0, len(line) - 1) == -1


def iter_text_lines(text: str) -> Iterator[str]:
    """Logical lines of a str: split on "\\n"; a physical line with carriage returns or over MAX_LINE characters goes
    through LineSplitter (its continuations are `Piece`s). Linear time."""
    start = 0
    n = len(text)
    while start < n:
        end = text.find("\n", start)
        if end == -1:
            end = n
        if end - start <= MAX_LINE:
            line = text[start:end]
            if text.find("\r", start, end - 1) == -1:   # _is_simple, inlined: this runs on every line
                yield line
            else:
                yield from split_physical_line(line)
        else:
            splitter = LineSplitter()
            for i in range(start, end, _CHUNK):
                yield from splitter.feed(text[i:min(i + _CHUNK, end)])
            yield from splitter.finish()
        start = end + 1


# Rich's logging handler (rich.logging.RichHandler: khoj, infinity-emb and other servers) prints a record in columns,
# "[time] LEVEL    message ...   file.py:123", and wraps the message inside its column: each continuation line is indented
# to where the message starts. Read line by line, "ERROR: CUDA" and "out of memory. Tried to allocate ..." are two
# lines; joined, they are the one message the program printed. The head's level sits near the start (after a time
# column at most); its source location is right-aligned at the end. Both searches are bounded: linear per line.
_RICH_LEVEL = re.compile(r"^.{0,40}?(?<![A-Za-z])(?:DEBUG|INFO|WARNING|ERROR|CRITICAL)\s{1,12}(?=\S)")
_RICH_LOCATION = re.compile(r"[\w.-]{1,80}\.py:\d{1,6}")
MAX_RICH_LINES = 64   # continuation lines joined into one record at most (then the rest is read line by line)


def _rich_location(line: str) -> tuple[int, str] | None:
    """Where a Rich record's right-aligned source location starts, and the location: its last word, after a gap of
    two or more spaces (string scans, no backtracking)."""
    stripped = line.rstrip()
    cut = stripped.rfind(" ")
    if cut < 2 or stripped[cut - 1] != " " or not _RICH_LOCATION.fullmatch(stripped, cut + 1):
        return None
    return len(stripped[:cut].rstrip()), stripped[cut + 1:]


def join_rich_records(lines: Iterable[str]) -> Iterator[str]:
    """`lines` with each wrapped Rich log record joined into its head line (the source location moved to its end);
    every joined continuation line is replaced by an empty line, so the lines after it keep their numbers. A
    continuation is a line indented exactly to the message column; a traceback or a new record ends the record."""
    record: list[str] = []
    column = size = 0
    location = head_line = ""
    for line in lines:
        if record:
            if (type(line) is not Piece and len(record) <= MAX_RICH_LINES and len(line) > column
                    and line[column] not in " \t" and not line[:column].strip()
                    and not line.startswith(("Traceback", "File "), column) and size + len(line) <= MAX_LINE):
                record.append(line[column:].rstrip())
                size += len(record[-1]) + 1
                continue
            yield from _joined_record(record, location, head_line)
            record = []
        if type(line) is not Piece and line.endswith(("0", "1", "2", "3", "4", "5", "6", "7", "8", "9", " ")) \
                and ".py:" in line:
            loc = _rich_location(line)
            head = _RICH_LEVEL.match(line) if loc else None
            if head is not None and head.end() < loc[0]:
                record, column, location, head_line = [line[:loc[0]]], head.end(), loc[1], line
                size = loc[0]
                continue
        yield line
    if record:
        yield from _joined_record(record, location, head_line)


def _joined_record(record: list[str], location: str, head_line: str) -> Iterator[str]:
    if len(record) == 1:
        yield head_line   # nothing was wrapped: the line as printed
        return
    yield " ".join(record) + "   " + location
    for _ in record[1:]:
        yield ""


def numbered_lines(text: str) -> Iterator[tuple[int, str]]:
    """(line number, logical line) as the parser numbers them: what every other reader of a log's text iterates, so a
    cue's line is the parser's line and no reader goes quadratic on redraws or megabyte lines."""
    lineno = 0
    for line in join_rich_records(iter_text_lines(text)):
        if type(line) is not Piece or lineno == 0:
            lineno += 1
        yield lineno, line


_BLANK_RUN = re.compile(r"\n{2,}")


def content_lines(text: str) -> Iterator[tuple[int, str]]:
    """The non-empty lines of `numbered_lines(text)`, with the same numbers; a run of blank lines (the lines a scan
    window skips) costs one step instead of one per line. No line state crosses a blank line (a Rich record ends
    there), so the text is read in the pieces between such runs."""
    offset = pos = 0
    for run in _BLANK_RUN.finditer(text):
        last = 1   # an empty piece is one empty line, ended by the run's first newline
        for last, line in numbered_lines(text[pos:run.start()]):
            if line:
                yield offset + last, line
        offset += last + run.end() - run.start() - 1
        pos = run.end()
    for n, line in numbered_lines(text[pos:]):
        if line:
            yield offset + n, line


def scan_window(text: str, head: int = SCAN_HEAD, tail: int = SCAN_TAIL) -> str:
    """`text` as the cue and word readers see it: at most its first `head` and last `tail` characters, cut at line
    ends, with the lines between replaced by as many empty lines, so every line read keeps the number
    `numbered_lines` gives it in the whole text. A text that short is returned as it is. (A line longer than `head`
    or `tail` is cut inside: its part in the window keeps its number.)"""
    cut = window_cut(text, head, tail)
    if cut is None:
        return text
    start, end = cut
    skipped = 0
    for skipped, _ in numbered_lines(text[start:end]):   # linear, no regex: about 10 ms per MiB
        pass
    # The first empty line ends the head's last line. Cut inside a line at the head, the skipped part's first line
    # is that line's rest, counted already; cut inside one at the tail, its last line is the tail's first.
    return text[:start] + "\n" * (skipped - (text[end - 1] != "\n")) + text[end:]


def window_cut(text: str, head: int = SCAN_HEAD, tail: int = SCAN_TAIL) -> tuple[int, int] | None:
    """(start, end) of the middle of `text` that scan_window leaves out, cut at line ends; None when it keeps all of
    it (a text that short, or nothing but empty lines between its ends: a window already, as it would be again)."""
    if len(text) <= head + tail:
        return None
    start = text.rfind("\n", 0, head) + 1 or head
    end = text.find("\n", len(text) - tail) + 1 or len(text) - tail
    if end <= start or text.count("\n", start, end) == end - start:
        return None
    return start, end


def edge_lines(text: str, lines: int) -> list[tuple[int, str]]:
    """The first and the last `lines` non-empty numbered lines of the text (all of them when it has no more than
    twice as many): where a user's words sit around a pasted log. Linear; the text is read through its scan window."""
    head: list[tuple[int, str]] = []
    tail: deque[tuple[int, str]] = deque(maxlen=lines)
    for numbered in content_lines(scan_window(text)):
        if len(head) < lines:
            head.append(numbered)
        else:
            tail.append(numbered)
    return head + list(tail)


def iter_byte_lines(chunks: Iterable[bytes]) -> Iterator[str]:
    """Decoded logical lines from byte chunks in bounded memory (UTF-8, bad bytes replaced); the same lines as
    `iter_text_lines` gives for the decoded text."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    head: list[str] = []   # the start of the current physical line while it is short
    head_len = 0
    splitter: LineSplitter | None = None   # the current physical line once it is long
    for text in _decoded(chunks, decoder):
        parts = text.split("\n")
        last = len(parts) - 1
        for i, part in enumerate(parts):
            if i < last and splitter is None and not head and len(part) <= MAX_LINE and \
                    part.find("\r", 0, len(part) - 1) == -1:
                yield part   # the common case: a whole short line inside one chunk (what _is_simple says, inlined)
                continue
            if splitter is not None:
                yield from splitter.feed(part)
            else:
                head.append(part)
                head_len += len(part)
                if head_len > MAX_LINE:
                    splitter = LineSplitter()
                    yield from splitter.feed("".join(head))
                    head, head_len = [], 0
            if i < last:   # the physical line ends here
                if splitter is not None:
                    yield from splitter.finish()
                else:
                    line = "".join(head)
                    yield from ((line,) if _is_simple(line) else split_physical_line(line))
                head, head_len, splitter = [], 0, None
    if splitter is not None:
        yield from splitter.finish()
    elif any(head):
        line = "".join(head)
        yield from ((line,) if _is_simple(line) else split_physical_line(line))


def _decoded(chunks: Iterable[bytes], decoder: codecs.IncrementalDecoder) -> Iterator[str]:
    for chunk in chunks:
        if chunk:
            yield decoder.decode(bytes(chunk))
    yield decoder.decode(b"", final=True)


def clean_line(raw: str) -> tuple[str, int | None]:
    """(text as the program printed it, rank from a launcher prefix or None)."""
    line = raw
    if "\r" in line:
        line = line.rstrip("\r")
        if "\r" in line:  # tqdm redraws: the terminal shows the last non-empty segment
            segments = [s for s in line.split("\r") if s.strip()]
            line = segments[-1] if segments else ""
    if len(line) > MAX_LINE:
        line = line[:MAX_LINE]
    if "\x1b" in line:
        line = _ANSI.sub("", line)
    if "&" in line and ("&gt;" in line or "&lt;" in line or "&amp;" in line):
        line = html.unescape(line)  # Slack's API escapes <, >, &
    if "**" in line:
        line = _BOLD.sub(r"\1", line)  # Markdown bold put around a number in an issue: "Tried to allocate **10.36 GiB**"
    stripped = line.lstrip()
    first = stripped[:1]
    if first == ">":  # Slack / e-mail quoting, possibly nested
        while stripped.startswith(">"):
            stripped = stripped[1:].lstrip(" ")
        line = stripped
        stripped = line.lstrip()
        first = stripped[:1]
    if (first == "`" or first == "~") and stripped.startswith(("```", "~~~")):
        line = stripped.strip("`~ ")
        if line and " " not in line and len(line) < 20:  # "```python", "```text": the fence's language tag
            line = ""
    elif line.endswith("```"):
        line = line.rstrip("`")
    rank = None
    if line[2:3] == ":" or line[4:5] == "-" and line[10:11] == "T":
        m = _COLLECTOR_TIME.match(line)
        if m:
            line = line[m.end():]
    if line[:1] == "(" and " pid=" in line[:80]:
        line = _RAY_PREFIX.sub("", line, count=1)
    if line[:1] == "[" and line[1:2] in "rdR":
        m = _RANK_BRACKET.match(line)
        if m:
            rank = int(m.group(1))
            line = line[m.end():]
    elif line[:1] == "[" and line[1:2].isdigit() and "]<std" in line[:24]:
        m = _RANK_MPI.match(line)
        if m:
            rank = int(m.group(1))
            line = line[m.end():]
    elif line[:1].isdigit():
        m = _RANK_NUMBER.match(line)
        if m:
            rank = int(m.group(1))
            line = line[m.end():]
    elif ": " in line[:48] and line[:1].isalpha():
        m = _HOST_PREFIX.match(line)
        if m:
            line = line[m.end():]
            if line[:1] == "[" and line[1:2] in "rdR":
                m = _RANK_BRACKET.match(line)
                if m:
                    rank = int(m.group(1))
                    line = line[m.end():]
    if _TRACEBACK_HEADER in line and not line.startswith(_TRACEBACK_HEADER):
        # a header glued to what came before it on the terminal (a progress bar, a partial write): the
        # traceback starts here, and the text before it must not be read as one of its frames
        line = line[line.index(_TRACEBACK_HEADER):]
    return line, rank


def split_glued_bar(line: str) -> tuple[str | None, str]:
    """('Loading checkpoint shards: 50%|###| 2/4 [00:10<00:10, 5.0s/it]', 'Killed') from the two glued together:
    tqdm leaves its last redraw without a newline, so what the program printed next lands on the same line. The bar
    is context (what the run was doing); the rest is the line. (None, line) when nothing follows a bar."""
    start = line.rfind("%|")  # the last redraw; its end is within a bar's width (bounded scan)
    if start == -1:
        return None, line
    m = _BAR_END.search(line, start, start + _BAR_SCAN)
    if m is None or not line[m.end():].strip():
        return None, line
    rest = line[m.end():].lstrip()
    prefix = _RANK_BRACKET.match(rest)  # the rest's own launcher prefix ("...s/it][rank1]: Killed")
    if prefix:
        rest = rest[prefix.end():]
    return line[:m.end()], rest
