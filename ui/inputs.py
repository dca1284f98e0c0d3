"""Reading what users hand us (logs, configs) with explicit size limits and clear errors."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .errors import UserError

MAX_LOG_BYTES = 256 * 1024 * 1024   # logs beyond this are cut (the parser streams; the tail is kept)
MAX_CONFIG_BYTES = 2 * 1024 * 1024  # a training config is a few KB; 2 MiB is generous and stops 10 MB bombs


def looks_binary(sample: bytes) -> bool:
    """True for data that is not text: NUL bytes or mostly control characters in the first 8 KiB."""
    head = sample[:8192]
    if not head:
        return False
    if b"\x00" in head:
        return True
    control = sum(1 for b in head if b < 9 or 13 < b < 32)
    return control / len(head) > 0.10


def read_log_bytes(path: str | None, max_bytes: int = MAX_LOG_BYTES) -> tuple[bytes, bool]:
    """The log from a file or stdin, capped at max_bytes (keeping the end, where errors are).

    Returns (data, truncated). Raises UserError for no input, empty input or binary data.
    """
    if path and path != "-":
        p = Path(path)
        if not p.is_file():
            raise UserError(f"cannot read log: no such file: {path}")
        size = p.stat().st_size
        with p.open("rb") as fh:
            if size > max_bytes:
                fh.seek(size - max_bytes)
            data = fh.read(max_bytes)
        truncated = size > max_bytes
    else:
        if sys.stdin is None or sys.stdin.isatty():
            raise UserError("no log given: pipe one in (ask-oom < train.log) or pass a file (ask-oom diagnose train.log)")
        data, truncated = _read_capped(sys.stdin.buffer, max_bytes)
    if not data.strip():
        raise UserError("empty input: paste the error log (the traceback with 'out of memory' and the lines around it)")
    if looks_binary(data):
        raise UserError("input looks binary, not a text log: pass the training log or the traceback as text")
    return data, truncated


def _read_capped(stream, max_bytes: int) -> tuple[bytes, bool]:
    """Read a stream to the end keeping at most the last max_bytes (bounded memory)."""
    chunks: list[bytes] = []
    kept = 0
    truncated = False
    while True:
        chunk = stream.read(1 << 20)
        if not chunk:
            break
        chunks.append(chunk)
        kept += len(chunk)
        while kept - len(chunks[0]) >= max_bytes:
            kept -= len(chunks.pop(0))
            truncated = True
    data = b"".join(chunks)
    if len(data) > max_bytes:
        data, truncated = data[-max_bytes:], True
    return data, truncated


def read_config_text(path: str, max_bytes: int = MAX_CONFIG_BYTES) -> str:
    """A config file's text (UTF-8, replacement for bad bytes); UserError if missing, too large or binary."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"cannot read config: no such file: {path}")
    size = p.stat().st_size
    if size > max_bytes:
        raise UserError(f"config too large: {path} is {size / 2**20:.1f} MiB (limit {max_bytes / 2**20:.0f} MiB)")
    data = p.read_bytes()
    if looks_binary(data):
        raise UserError(f"config looks binary, not YAML/JSON/shell text: {path}")
    return data.decode("utf-8", errors="replace")


def debug_enabled() -> bool:
    return os.environ.get("ASK_OOM_DEBUG", "") not in ("", "0")
