"""Physical lines from pasted text or a byte stream, and their normalised form.

Pastes arrive with ANSI colours, tqdm carriage-return redraws, CRLF, rank prefixes from multi-process
launchers, Markdown code fences and Slack quoting; `clean_line` undoes all of that so the detectors see
the text the program printed. Lines are capped (MAX_LINE chars) so a pathological line costs O(cap).
"""

from __future__ import annotations

import codecs
import html
import re
from collections.abc import Iterable, Iterator

MAX_LINE = 4096  # characters of a line that are examined; a longer line keeps its head (or its last tqdm redraw)

_ANSI = re.compile(r"\x1b\[[0-9;?]{0,32}[ -/]{0,4}[@-~]|\x1b\][^\x07\x1b]{0,256}(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
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


def iter_text_lines(text: str) -> Iterator[str]:
    """Physical lines of a str, split on '\\n' only (a lone '\\r' is a tqdm redraw, not a new line)."""
    start = 0
    n = len(text)
    while start < n:
        end = text.find("\n", start)
        if end == -1:
            end = n
        if end - start > 2 * MAX_LINE:
            yield _cap(text[start:start + MAX_LINE], text[end - MAX_LINE:end])
        else:
            yield text[start:end]
        start = end + 1


def _cap(head: str, tail: str) -> str:
    """A too-long line: its last tqdm redraw if it is a progress line, else its head."""
    if "\r" in tail:
        return tail[tail.rfind("\r", 0, len(tail) - 1) + 1:] if tail.rstrip("\r") else head
    return head


def iter_byte_lines(chunks: Iterable[bytes]) -> Iterator[str]:
    """Decoded physical lines from byte chunks in bounded memory (UTF-8, bad bytes replaced)."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    head: list[str] = []   # start of the current line (at most MAX_LINE chars kept)
    head_len = 0
    tail = ""              # last MAX_LINE chars of an over-long line
    overflow = False
    for chunk in chunks:
        if not chunk:
            continue
        text = decoder.decode(bytes(chunk))
        parts = text.split("\n")
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if not overflow:
                if head_len + len(part) <= 2 * MAX_LINE:
                    head.append(part)
                    head_len += len(part)
                else:
                    joined = "".join(head) + part
                    head, head_len = [joined[:MAX_LINE]], MAX_LINE
                    tail = joined[-MAX_LINE:]
                    overflow = True
            else:
                tail = (tail + part)[-MAX_LINE:]
            if not last:
                yield _cap(head[0], tail) if overflow else "".join(head)
                head, head_len, tail, overflow = [], 0, "", False
    rest = decoder.decode(b"", final=True)
    if rest:
        if overflow:
            tail = (tail + rest)[-MAX_LINE:]
        else:
            head.append(rest)
    if head or overflow:
        line = _cap(head[0], tail) if overflow else "".join(head)
        if line:
            yield line


_PROGRESS_MARKS = ("%|", "it/s", "s/it", "it]", "/s]")


def is_cr_separated(raw: str) -> bool:
    """A physical line whose carriage returns separate real lines (a CR-only file), not tqdm redraws."""
    body = raw.rstrip("\r")
    if body.count("\r") < 2:
        return False
    return not any(mark in body for mark in _PROGRESS_MARKS)


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
