"""The documented PyTorch memory-snapshot format (`torch.cuda.memory._snapshot()`) as typed records.

A snapshot is `{"segments": [...], "device_traces": [[...], ...], "allocator_settings": {...}}`: each segment is one
cudaMalloc (split into blocks, each with the stack that allocated it when history was recorded); each device trace is
the ring buffer of allocator actions (alloc, free_requested, free_completed, segment_alloc, segment_free, oom, ...).
Older snapshots (torch < 2.1) keep a block's stack under `history`. Missing keys take defaults, unknown keys are
ignored, a wrong type raises InputError naming the field. Frame lists are shared in a pickle (the allocator dedups
stacks), so each distinct list is converted once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError, UnsafeInput

MAX_SEGMENTS = 1_000_000
MAX_BLOCKS = 5_000_000          # blocks over all segments
MAX_TRACE_ENTRIES = 2_000_000   # per device: the most recent ones are kept
MAX_FRAMES = 256                # frames of one stack that are read (innermost first)
MAX_TEXT = 400                  # characters of a filename or function name that are kept

BLOCK_STATES = ("active_allocated", "active_pending_free", "inactive")
_STATE_ALIASES = {"active_awaiting_free": "active_pending_free"}  # the docstring's older spelling
TRACE_ACTIONS = ("alloc", "free_requested", "free_completed", "segment_alloc", "segment_free", "segment_map",
                 "segment_unmap", "snapshot", "oom")


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame of the stack that made an allocation (innermost first in a block's list)."""

    filename: str
    line: int
    name: str

    def text(self) -> str:
        """'path/to/file.py:function', what the attribution rules match."""
        return f"{self.filename}:{self.name}"


@dataclass(frozen=True, slots=True)
class Block:
    """A piece of a segment: allocated to a tensor, waiting to be freed on another stream, or free for reuse."""

    size: int
    requested_size: int
    state: str
    address: int
    frames: tuple[Frame, ...] = ()


@dataclass(frozen=True, slots=True)
class Segment:
    """Memory the allocator got from one cudaMalloc (or an expandable segment's mapping)."""

    device: int
    address: int
    total_size: int
    allocated_size: int
    active_size: int
    requested_size: int
    segment_type: str
    stream: int
    frames: tuple[Frame, ...] = ()
    blocks: tuple[Block, ...] = ()


@dataclass(frozen=True, slots=True)
class TraceEntry:
    """One allocator action from the recorded history. `oom` carries `device_free` (and no address)."""

    action: str
    addr: int
    size: int
    stream: int
    frames: tuple[Frame, ...] = ()
    device_free: int | None = None


@dataclass(frozen=True)
class Snapshot:
    """A whole snapshot: segments of every device, the per-device action history, the allocator's settings."""

    segments: tuple[Segment, ...]
    device_traces: tuple[tuple[TraceEntry, ...], ...]
    allocator_settings: dict[str, Any] = field(default_factory=dict)
    truncated_traces: bool = False   # a trace had more than MAX_TRACE_ENTRIES entries: only the latest were read

    def devices(self) -> list[int]:
        """Devices that own a segment or have a recorded history."""
        found = {s.device for s in self.segments}
        found.update(i for i, t in enumerate(self.device_traces) if t)
        return sorted(found)

    def frames_recorded(self) -> bool:
        """Whether any block or action carries a stack (`_record_memory_history` was on)."""
        return any(b.frames for s in self.segments for b in s.blocks) or any(
            e.frames for t in self.device_traces for e in t)


class _Reader:
    """Converts one loaded snapshot; remembers converted frame lists by identity (shared in pickles)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._frames: dict[int, tuple[Frame, ...]] = {}
        self._keep: list[Any] = []   # the raw lists whose id() is cached stay alive while reading
        self.n_blocks = 0

    def fail(self, where: str, expected: str, value: Any) -> InputError:
        return InputError(f"snapshot {self.name}: {where} should be {expected}, not {type(value).__name__}")

    def mapping(self, value: Any, where: str) -> dict:
        if not isinstance(value, dict):
            raise self.fail(where, "a mapping", value)
        return value

    def sequence(self, value: Any, where: str) -> list | tuple:
        if value is None:
            return ()
        if not isinstance(value, (list, tuple)):
            raise self.fail(where, "a list", value)
        return value

    def integer(self, d: dict, key: str, where: str, default: int = 0) -> int:
        value = d.get(key, default)
        if type(value) is int:
            return value
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise self.fail(f"{where}.{key}", "an integer", value)
        return value

    def text(self, d: dict, key: str, where: str, default: str = "") -> str:
        value = d.get(key, default)
        if value is None:
            return default
        if not isinstance(value, str):
            raise self.fail(f"{where}.{key}", "a string", value)
        return value[:MAX_TEXT]

    def frames(self, value: Any, where: str) -> tuple[Frame, ...]:
        if not value:
            if value is None or isinstance(value, (list, tuple)):
                return ()
        cached = self._frames.get(id(value))
        if cached is not None:
            return cached
        raw = self.sequence(value, where)
        out = []
        for i, f in enumerate(raw[:MAX_FRAMES]):
            fd = self.mapping(f, f"{where}[{i}]")
            out.append(Frame(filename=self.text(fd, "filename", f"{where}[{i}]"),
                             line=self.integer(fd, "line", f"{where}[{i}]"),
                             name=self.text(fd, "name", f"{where}[{i}]")))
        frames = tuple(out)
        self._frames[id(value)] = frames
        self._keep.append(value)
        return frames

    def block(self, raw: Any, where: str) -> Block:
        d = self.mapping(raw, where)
        size = self.integer(d, "size", where)
        state = d.get("state", "inactive")
        if state not in BLOCK_STATES:   # the common case is one set lookup
            state = _STATE_ALIASES.get(state, state) if isinstance(state, str) else state
            if state not in BLOCK_STATES:
                raise InputError(f"snapshot {self.name}: {where}.state is '{str(state)[:40]}', not one of "
                                 f"{', '.join(BLOCK_STATES)}")
        frames_raw = d.get("frames")
        requested = self.integer(d, "requested_size", where, size)
        if frames_raw is None and "history" in d:   # torch < 2.1: [{"addr", "real_size", "frames"}, ...]
            history = self.sequence(d.get("history"), f"{where}.history")
            if history:
                first = self.mapping(history[0], f"{where}.history[0]")
                frames_raw = first.get("frames")
                requested = self.integer(first, "real_size", f"{where}.history[0]", requested)
        return Block(size=size, requested_size=requested, state=state, address=self.integer(d, "address", where),
                     frames=self.frames(frames_raw, f"{where}.frames"))

    def segment(self, raw: Any, where: str) -> Segment:
        d = self.mapping(raw, where)
        blocks_raw = self.sequence(d.get("blocks"), f"{where}.blocks")
        self.n_blocks += len(blocks_raw)
        if self.n_blocks > MAX_BLOCKS:
            raise UnsafeInput(f"snapshot {self.name}: refused: more than {MAX_BLOCKS:,} blocks")
        blocks = []
        address = self.integer(d, "address", where)
        for i, b in enumerate(blocks_raw):
            block = self.block(b, f"{where}.blocks[{i}]")
            if "address" not in b:   # older snapshots: blocks follow each other from the segment's address
                block = Block(block.size, block.requested_size, block.state, address, block.frames)
            address = block.address + block.size
            blocks.append(block)
        total = self.integer(d, "total_size", where, sum(b.size for b in blocks))
        allocated = self.integer(d, "allocated_size", where,
                                 sum(b.size for b in blocks if b.state == "active_allocated"))
        active = self.integer(d, "active_size", where, sum(b.size for b in blocks if b.state != "inactive"))
        requested = self.integer(d, "requested_size", where,
                                 sum(b.requested_size for b in blocks if b.state == "active_allocated"))
        return Segment(device=self.integer(d, "device", where), address=self.integer(d, "address", where),
                       total_size=total, allocated_size=allocated, active_size=active, requested_size=requested,
                       segment_type=self.text(d, "segment_type", where, "large"),
                       stream=self.integer(d, "stream", where), frames=self.frames(d.get("frames"), f"{where}.frames"),
                       blocks=tuple(blocks))

    def entry(self, raw: Any, where: str) -> TraceEntry:
        d = self.mapping(raw, where)
        action = self.text(d, "action", where)
        device_free = None
        if action == "oom":
            # the allocator stores device_free where other actions store addr
            device_free = self.integer(d, "device_free", where, self.integer(d, "addr", where))
        return TraceEntry(action=action, addr=self.integer(d, "addr", where), size=self.integer(d, "size", where),
                          stream=self.integer(d, "stream", where),
                          frames=self.frames(d.get("frames"), f"{where}.frames"), device_free=device_free)


def read_snapshot(obj: Any, *, name: str) -> Snapshot:
    """Typed records from a loaded snapshot (the dict `_snapshot()` returns); InputError on a wrong shape."""
    r = _Reader(name)
    if not isinstance(obj, dict):
        raise InputError(f"snapshot {name}: the top level is a {type(obj).__name__}, not the mapping "
                         "torch.cuda.memory._snapshot() returns")
    if "segments" not in obj and "device_traces" not in obj:
        raise InputError(f"snapshot {name}: no 'segments' or 'device_traces': not a PyTorch memory snapshot")
    raw_segments = r.sequence(obj.get("segments"), "segments")
    if len(raw_segments) > MAX_SEGMENTS:
        raise UnsafeInput(f"snapshot {name}: refused: more than {MAX_SEGMENTS:,} segments")
    segments = tuple(r.segment(s, f"segments[{i}]") for i, s in enumerate(raw_segments))
    traces = []
    truncated = False
    for dev, raw_trace in enumerate(r.sequence(obj.get("device_traces"), "device_traces")[:4096]):
        entries = r.sequence(raw_trace, f"device_traces[{dev}]")
        start = max(0, len(entries) - MAX_TRACE_ENTRIES)
        truncated = truncated or start > 0
        traces.append(tuple(r.entry(e, f"device_traces[{dev}][{start + i}]")
                            for i, e in enumerate(entries[start:])))
    settings = obj.get("allocator_settings") or {}
    settings = r.mapping(settings, "allocator_settings")
    flat = {str(k)[:80]: v for k, v in list(settings.items())[:64]
            if isinstance(v, (str, int, float, bool, dict)) or v is None}
    return Snapshot(segments=segments, device_traces=tuple(traces), allocator_settings=flat,
                    truncated_traces=truncated)
