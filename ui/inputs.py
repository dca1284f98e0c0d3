"""Reading what users hand us (logs, configs) with explicit size limits and clear errors: regular files only (a
symbolic link only with --allow-symlinks), so no link to /etc/shadow is read, printed or copied into a fixed config."""

from __future__ import annotations

import errno
import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

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


def open_input(path: str, what: str, *, allow_symlinks: bool = False) -> tuple[BinaryIO, int]:
    """A user's input file opened for reading, and its size. Only regular files: a symbolic link is refused unless
    `allow_symlinks` (checked on the open itself, O_NOFOLLOW, so nothing can swap the file in between), a directory,
    device, pipe or socket always (opened without blocking, then refused). UserError (exit 2) says which and why."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | (0 if allow_symlinks else getattr(os, "O_NOFOLLOW", 0))
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise UserError(f"cannot read {what}: no such file: {path}") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP and not allow_symlinks:
            raise UserError(f"{what} {path} is a symbolic link: pass the file itself, or --allow-symlinks to read "
                            "what it points to") from None
        raise UserError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise UserError(f"{what} {path} is not a regular file (a directory, device, pipe or socket): pass the file itself")
    return os.fdopen(fd, "rb"), st.st_size


def read_log_bytes(path: str | None, max_bytes: int = MAX_LOG_BYTES, *, allow_symlinks: bool = False) -> tuple[bytes, bool]:
    """The log from a file or stdin, capped at max_bytes (keeping the end, where errors are).

    Returns (data, truncated). Raises UserError for no input, empty input, binary data, or a path that is a symbolic
    link (unless `allow_symlinks`) or not a regular file.
    """
    if path and path != "-":
        fh, size = open_input(path, "log", allow_symlinks=allow_symlinks)
        with fh:
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


def read_config_text(path: str, max_bytes: int = MAX_CONFIG_BYTES, *, allow_symlinks: bool = False) -> str:
    """A config file's text (UTF-8, replacement for bad bytes); UserError if missing, too large, binary, a symbolic
    link (unless `allow_symlinks`) or not a regular file."""
    fh, size = open_input(path, "config", allow_symlinks=allow_symlinks)
    with fh:
        if size > max_bytes:
            raise UserError(f"config too large: {path} is {size / 2**20:.1f} MiB (limit {max_bytes / 2**20:.0f} MiB)")
        data = fh.read(max_bytes + 1)
    if looks_binary(data):
        raise UserError(f"config looks binary, not YAML/JSON/shell text: {path}")
    return data.decode("utf-8", errors="replace")


SNAPSHOT_SUFFIXES = (".pickle", ".pkl")   # what torch.cuda.memory._dump_snapshot files are named (its docs: snapshot.pickle)


def is_snapshot_file(path: str) -> bool:
    """A memory snapshot by its name: the doors read these as snapshots, never as text."""
    return os.path.splitext(path)[1].lower() in SNAPSHOT_SUFFIXES


def read_snapshots(paths: list[str], *, allow_symlinks: bool = False) -> list:
    """PyTorch memory snapshots (`torch.cuda.memory._dump_snapshot`), one per rank, read through the restricted
    unpickler (plain data only) and summarised; the rank comes from the file name (rank3, rank_3, rank-3), else its
    place on the command line. UserError for a missing, oversize or unsafe file."""
    import re

    from ..tools.errors import InputError
    from ..tools.snapshot import MAX_SNAPSHOT_BYTES, load_snapshot

    out = []
    for i, path in enumerate(paths):
        fh, size = open_input(path, "snapshot", allow_symlinks=allow_symlinks)
        with fh:
            if size > MAX_SNAPSHOT_BYTES:
                raise UserError(f"snapshot too large: {path} is {size / 2**20:.0f} MiB "
                                f"(limit {MAX_SNAPSHOT_BYTES / 2**20:.0f} MiB)")
            data = fh.read(MAX_SNAPSHOT_BYTES + 1)
        name = os.path.basename(path)
        m = re.search(r"rank[_-]?(\d{1,5})", name, re.IGNORECASE)
        try:
            out.append(load_snapshot(data, name=name, rank=int(m.group(1)) if m else i))
        except InputError as exc:
            raise UserError(str(exc)) from None
    return out


def debug_enabled() -> bool:
    return os.environ.get("ASK_OOM_DEBUG", "") not in ("", "0")


@dataclass
class ConfigFiles:
    """The user's config files as one bundle: the main config, the files it names (by the name it uses), and
    every path read (so nothing writes over one)."""

    main_name: str | None
    main_text: str | None
    extra: dict[str, str]
    paths_read: list[str]
    main_path: str | None = None


def read_configs(paths: list[str], *, allow_symlinks: bool = False) -> ConfigFiles:
    """The configs given with --config: the first that is not a DeepSpeed JSON is the main one. A YAML that a
    `llamafactory-cli train` script runs, an accelerate config and a DeepSpeed file the config names are read from
    beside it (or the working directory) when they were not passed; one found nowhere is left to the pipeline,
    which says so in a note."""
    from ..tools.configs.documents import deepspeed_reference, find_file, load_config

    if not paths:
        return ConfigFiles(None, None, {}, [])
    configs = [(p, read_config_text(p, allow_symlinks=allow_symlinks)) for p in paths]
    main = next(((p, t) for p, t in configs if not _is_deepspeed_file(p, t)), configs[0])
    name = Path(main[0]).name
    extra = {Path(p).name: t for p, t in configs if p != main[0]}
    read = [p for p, _ in configs]

    def beside(ref: str, *bases: str) -> str | None:
        for base in (*(Path(b).parent for b in bases), Path.cwd()):
            cand = base / ref
            if cand.is_file():
                return str(cand)
        return None

    def add(ref: str, *bases: str) -> str | None:
        if find_file(ref, extra) is not None:
            return None
        path = beside(ref, *bases)
        if path is not None:
            extra[ref] = read_config_text(path, allow_symlinks=allow_symlinks)
            read.append(path)
        return path

    try:
        lenient = load_config(main[1], name)     # no file lookups yet: only to see what it references
    except Exception:  # noqa: BLE001 - an unreadable config is the pipeline's one-line error, not this lookup's
        return ConfigFiles(name, main[1], extra, read, main[0])
    base = main[0]
    wrapped = lenient.launcher.get("config_file") if lenient.format == "shell" else None
    if wrapped and str(wrapped).endswith((".yaml", ".yml", ".json")):
        path = add(wrapped, main[0])
        found = find_file(wrapped, extra)
        if found:
            try:
                lenient = load_config(found[1], Path(found[0]).name)
            except Exception:  # noqa: BLE001 - see above
                return ConfigFiles(name, main[1], extra, read, main[0])
            base = path or base
    if lenient.format == "shell" and lenient.launcher.get("program") == "accelerate" and lenient.launcher.get("config_file"):
        add(lenient.launcher["config_file"], main[0])
    ref = deepspeed_reference(lenient)
    if isinstance(ref, str):
        add(ref, base, main[0])
    return ConfigFiles(name, main[1], extra, read, main[0])


def _is_deepspeed_file(path: str, text: str) -> bool:
    from ..tools.configs.documents import detect_format, load_config

    if detect_format(text, path) != "json":
        return False
    try:
        return load_config(text, Path(path).name).format == "deepspeed_json"
    except Exception:  # noqa: BLE001 - not a readable DeepSpeed file
        return False
